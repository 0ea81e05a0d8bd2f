"""What goes in and out of the job queue: requests, claims, results, outcomes, limits (no SQL here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from videobot.models import Job, JobStatus
from videobot.settings import Settings

ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
FINISHED = (
    JobStatus.SUCCEEDED.value,
    JobStatus.DELIVERED.value,
    JobStatus.FAILED.value,
    JobStatus.CANCELLED.value,
    JobStatus.UNDELIVERABLE.value,
)

EXPIRED_MESSAGE = (
    "This video waited more than {waited} in the queue without a generator to make it, so it was "
    "cancelled. Your credit was refunded; please try again later."
)

CRASH_MESSAGE = (
    "This video could not be made: the generator stopped {n} times while working on it. "
    "Your credit was refunded. Try a shorter or simpler video."
)


@dataclass
class SubmitRequest:
    """Everything needed to queue a job (and charge for it)."""

    idempotency_key: str
    guild_id: int
    channel_id: int
    user_id: int
    model: str
    params: dict[str, Any]
    cost: int = 1
    role_ids: Sequence[int] = ()
    kind: str = "command"
    parent_job_id: int | None = None
    upload_limit_bytes: int = 10 * 1024 * 1024
    application_id: int | None = None
    interaction_token: str | None = None
    #: Seconds the interaction token stays valid (Discord: 15 minutes).
    interaction_ttl: float = 15 * 60
    reply_to_message_id: int | None = None
    #: Stored with the job (``job_inputs``): ``{"image": png_bytes}``, ``{"video": mp4_bytes}``.
    inputs: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Submitted:
    job: Job
    #: False when the idempotency key had been seen: the existing job, no new charge.
    created: bool
    position: int
    balance: int


@dataclass(frozen=True)
class Claim:
    """A running job as its worker sees it; (owner, attempt) is the fence token."""

    job_id: int
    owner: str
    attempt: int
    model: str
    params: dict[str, Any]
    upload_limit_bytes: int
    lease_expires_at: float


@dataclass(frozen=True)
class Beat:
    cancel_requested: bool
    lease_expires_at: float


@dataclass
class ResultData:
    video: bytes
    width: int
    height: int
    num_frames: int
    fps: float
    duration_s: float
    poster: bytes | None = None
    content_type: str = "video/mp4"
    encode_notes: str | None = None
    generation_seconds: float | None = None
    seconds_per_step: float | None = None
    peak_gpu_bytes: int | None = None


@dataclass(frozen=True)
class ModelSpeed:
    """A model's measured speed: mean seconds per denoising step and per job (recent finished jobs)."""

    seconds_per_step: float
    seconds_per_job: float
    jobs: int


@dataclass(frozen=True)
class CancelOutcome:
    #: "cancelled" (was queued: done and refunded), "requested" (running: the worker will stop),
    #: or "finished" (too late: it already ended).
    state: str
    job: Job


@dataclass
class QueueConfig:
    max_attempts: int = 3
    lease_seconds: float = 60.0
    max_queued_per_user: int = 3
    default_limit: int = 5
    window_seconds: float = 24 * 3600.0
    models: list[str] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings) -> QueueConfig:
        return cls(
            max_attempts=settings.max_attempts,
            lease_seconds=settings.lease_seconds,
            max_queued_per_user=settings.max_queued_per_user,
            default_limit=settings.default_quota,
            window_seconds=settings.quota_window_seconds,
        )
