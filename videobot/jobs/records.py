"""What goes in and out of the job queue: requests, claims, results, outcomes, limits (no SQL here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from videobot.i18n import N_, Msg, Text, msg, nmsg, recognize
from videobot.models import Job, JobStatus
from videobot.settings import Settings

ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
FINISHED = (
    JobStatus.SUCCEEDED.value,
    JobStatus.DELIVERED.value,
    JobStatus.FAILED.value,
    JobStatus.CANCELLED.value,
    JobStatus.UNDELIVERABLE.value,
    JobStatus.HELD.value,
)

# What members read about a job that ended without a video. The stored ``error_message`` is the
# English text (logs, old rows); ``job_error`` rebuilds the message from ``error_code`` and the job's
# own fields so the bot can show it in any language.
EXPIRED_MESSAGE = N_(
    "This video waited more than {waited} in the queue without a generator to make it, so it was "
    "cancelled. Your credit was refunded; please try again later."
)
#: The English text (with ``{n}``) stored until ``crash_message`` fills in the count.
CRASH_MESSAGE = (
    "This video could not be made: the generator stopped {n} times while working on it. "
    "Your credit was refunded. Try a shorter or simpler video."
)
CANCEL_MESSAGE = N_("The video was cancelled. Your credit was refunded.")
UNDELIVERABLE_MESSAGE = N_("The video was made but could not be posted in time.")
JOB_NOT_FOUND = N_("I can't find a job #{job} of yours. /queue lists your jobs.")


def waited_text(seconds: float) -> Msg:
    """'60 minutes', '24 hours': how long an expired job waited, in whole units."""
    hours = seconds / 3600.0
    if hours >= 2:
        return nmsg("{n} hour", "{n} hours", round(hours))
    return nmsg("{n} minute", "{n} minutes", round(seconds / 60.0))


def expired_message(max_wait_seconds: float) -> Msg:
    return msg(EXPIRED_MESSAGE, waited=waited_text(max_wait_seconds))


def crash_message(attempts: int) -> Msg:
    return nmsg(
        "This video could not be made: the generator stopped {n} time while working on it. "
        "Your credit was refunded. Try a shorter or simpler video.",
        "This video could not be made: the generator stopped {n} times while working on it. "
        "Your credit was refunded. Try a shorter or simpler video.",
        attempts,
    )


def job_error(job: Job) -> Text:
    """Why a job ended without a video, as a message for the reader's language.

    Messages the core wrote are rebuilt from ``error_code``; the others (the worker's, a delivery
    failure's) are stored as English text and recognised as the catalog message they were rendered
    from (``i18n.recognize``); a text no catalog knows is shown as stored.
    """
    code, stored = job.error_code, job.error_message or ""
    if code == "expired" and job.finished_at is not None and job.queued_at is not None:
        return expired_message(float(job.finished_at) - float(job.queued_at))
    if code == "crashed":
        return crash_message(int(job.attempts or 1))
    if code == "cancelled" and stored == CANCEL_MESSAGE:
        return msg(CANCEL_MESSAGE)
    if code == "undeliverable" and stored == UNDELIVERABLE_MESSAGE:
        return msg(UNDELIVERABLE_MESSAGE)
    return recognize(stored) if stored else stored


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
    #: Discord marks the channel (or a thread's parent) age-restricted: kept with the job for the
    #: safety policy (``videobot.safety.holds``), which decides after the render, maybe after restarts.
    channel_nsfw: bool = False
    #: The requester's Discord client language, for answers only they see (None: unknown).
    locale: str | None = None
    #: Stored with the job (``job_inputs``): ``{"image": png_bytes}``, ``{"video": mp4_bytes}``.
    inputs: dict[str, bytes] = field(default_factory=dict)
    #: The request's intake (its interaction id), whose reserved credits the job's charge replaces.
    intake_id: int | None = None


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
    """One finished video. ``variant`` is its place among a job's variations (seed + variant), 0-based."""

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
    variant: int = 0
    #: The safety check's verdict (None: not checked); see ``JobResult.safety_score``.
    safety_score: float | None = None
    safety_frame: int | None = None
    safety_model: str | None = None


def wanted_videos(params: dict[str, Any] | None) -> int:
    """How many videos (variations) a job's parameters ask for: ``num_videos``, 1 when absent."""
    try:
        return max(1, int((params or {}).get("num_videos") or 1))
    except (TypeError, ValueError):
        return 1


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

    @classmethod
    def from_settings(cls, settings: Settings) -> QueueConfig:
        return cls(
            max_attempts=settings.max_attempts,
            lease_seconds=settings.lease_seconds,
            max_queued_per_user=settings.max_queued_per_user,
            default_limit=settings.default_quota,
            window_seconds=settings.quota_window_seconds,
        )
