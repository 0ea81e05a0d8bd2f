"""The job queue: the one package that changes a job's status.

    queued ──claim──▶ running ──complete──▶ succeeded ──mark_delivered──▶ delivered
      │                 │  │                    └──mark_undeliverable──▶ undeliverable
      │                 │  └─fail (permanent, or retries used up)──▶ failed      (+ refund)
      │                 ├─fail (retryable) / lease expired / release──▶ queued
      └─cancel──▶ cancelled (+ refund)   └─cancel flag ▶ worker stops ▶ cancelled (+ refund)

Every transition is a conditional ``UPDATE … WHERE status = …`` whose row count is checked, and
a worker's writes are fenced by its lease: ``lease_owner`` and ``attempts`` must both match, so a
worker whose lease expired can never finish a job another worker has taken over.

``transitions`` holds every status change, ``queries`` the read-only questions (positions, the
bot's feed, what is owed), ``workers`` the worker registry, ``records`` what goes in and out.
"""

from __future__ import annotations

from videobot.db import Database
from videobot.jobs.batching import SubmitBatcher
from videobot.jobs.queries import projected_order
from videobot.jobs.records import (
    ACTIVE,
    CRASH_MESSAGE,
    FINISHED,
    Beat,
    CancelOutcome,
    Claim,
    QueueConfig,
    ResultData,
    SubmitRequest,
    Submitted,
)
from videobot.jobs.transitions import LEASE_CLEARED, Transitions
from videobot.jobs.workers import WorkerRegistry

__all__ = [
    "ACTIVE",
    "CRASH_MESSAGE",
    "FINISHED",
    "LEASE_CLEARED",
    "Beat",
    "CancelOutcome",
    "Claim",
    "JobQueue",
    "QueueConfig",
    "ResultData",
    "SubmitBatcher",
    "SubmitRequest",
    "Submitted",
    "projected_order",
]


class JobQueue(Transitions, WorkerRegistry):
    """Queue operations; each method is one transaction."""

    def __init__(self, db: Database, config: QueueConfig | None = None) -> None:
        self.db = db
        self.config = config or QueueConfig()
