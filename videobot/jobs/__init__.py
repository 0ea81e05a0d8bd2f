"""The job queue: the one package that changes a job's status.

    queued ──claim──▶ running ──complete──▶ succeeded ──mark_delivered──▶ delivered
      │                 │  │                    ├──mark_undeliverable──▶ undeliverable (+ refund)
      │                 │  │                    └──hold_if_flagged──▶ held (+ refund unless kept; ``review``)
      │                 │  │                          held ──approve──▶ succeeded · held ──reject──▶ failed (+ refund)
      │                 │  └─fail (permanent, or retries used up)──▶ failed      (+ refund)
      │                 ├─fail (retryable) / lease expired / release──▶ queued
      │                 └─cancel sets the flag; then whichever comes first: the worker stops at a
      │                   step, complete, fail, release, or the lease expires ──▶ cancelled (+ refund)
      └─cancel──▶ cancelled (+ refund)

A job with variations stores one result per video made; ``complete`` refunds the share of those
that could not be made once (``partial_refund``), and a later full refund gives back only the
rest. A cancel always ends a job: a job whose cancel flag is set is never queued again nor claimed, and
ends ``cancelled`` (refunded once) at whichever transition comes next, including ``complete``
(the render is discarded). On PostgreSQL the transitions the bot cares about ``NOTIFY
videobot_jobs`` with the job ids, at commit.

Every transition is a conditional ``UPDATE … WHERE status = …`` whose row count is checked, and
a worker's writes are fenced by its lease: ``lease_owner`` and ``attempts`` must both match, so a
worker whose lease expired can never finish a job another worker has taken over.

``transitions`` gathers every status change, one module per responsibility: ``submit`` (queue and
charge, intakes), ``claim`` (the lease: claim, heartbeat, preview, release), ``complete`` (complete,
fail), ``cancel``, ``delivered`` (the bot's marks), ``review`` (held results), ``maintenance`` (recover, expire, purge), on
``changes`` (the fence and the NOTIFY they share) and ``statements`` (their SQL). ``queries`` holds the
read-only questions (positions, the bot's feed, what is owed), ``workers`` the worker registry,
``records`` what goes in and out.
"""

from __future__ import annotations

from videobot.db import Database
from videobot.jobs.batching import IntakeBatcher, SubmitBatcher
from videobot.jobs.queries import projected_order
from videobot.jobs.records import (
    ACTIVE,
    CRASH_MESSAGE,
    FINISHED,
    Beat,
    CancelOutcome,
    Claim,
    ModelSpeed,
    QueueConfig,
    ResultData,
    SubmitRequest,
    Submitted,
    job_error,
    wanted_videos,
)
from videobot.jobs.transitions import CANCEL_MESSAGE, LEASE_CLEARED, NOTIFY_CHANNEL, Transitions
from videobot.jobs.workers import WorkerRegistry

__all__ = [
    "ACTIVE",
    "CANCEL_MESSAGE",
    "CRASH_MESSAGE",
    "FINISHED",
    "LEASE_CLEARED",
    "NOTIFY_CHANNEL",
    "Beat",
    "CancelOutcome",
    "Claim",
    "IntakeBatcher",
    "JobQueue",
    "ModelSpeed",
    "QueueConfig",
    "ResultData",
    "SubmitBatcher",
    "SubmitRequest",
    "Submitted",
    "job_error",
    "projected_order",
    "wanted_videos",
]


class JobQueue(Transitions, WorkerRegistry):
    """Queue operations; each method is one transaction."""

    def __init__(self, db: Database, config: QueueConfig | None = None) -> None:
        self.db = db
        self.config = config or QueueConfig()
        self._next_id_cache = {}
        self._idle = set()
