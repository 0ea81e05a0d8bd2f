"""SQLAlchemy models: the job queue, results, the credit ledger and guild configuration.

Times are Unix seconds (float) taken from the database clock (``videobot.db.db_now``), so that
leases mean the same thing to every worker on every machine.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNDELIVERABLE = "undeliverable"
    #: A finished result the safety check flagged for where it was asked: not posted until a moderator
    #: approves it (back to succeeded) or rejects it (failed); ``videobot.jobs.review``.
    HELD = "held"


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    #: "command" (a /video) or "rerun" (a 🔁 reaction).
    kind: Mapped[str] = mapped_column(String(16), default="command")
    parent_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    model: Mapped[str] = mapped_column(String(200))
    #: GenerationParams as JSON (diffusers parameter names).
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    cost: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    progress_updated_at: Mapped[float | None] = mapped_column(Float)
    #: A message safe to show the requester (never a traceback or a path).
    error_message: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(40))
    #: The destination's upload limit in bytes; the worker never stores a bigger file.
    upload_limit_bytes: Mapped[int] = mapped_column(Integer, default=10 * 1024 * 1024)
    # Discord addressing (the bot's business; the worker ignores these).
    application_id: Mapped[int | None] = mapped_column(BigInteger)
    interaction_token: Mapped[str | None] = mapped_column(Text)
    interaction_expires_at: Mapped[float | None] = mapped_column(Float)
    status_message_id: Mapped[int | None] = mapped_column(BigInteger)
    reply_to_message_id: Mapped[int | None] = mapped_column(BigInteger)
    #: The requester's Discord client language (``interaction.locale``), for late private answers.
    locale: Mapped[str | None] = mapped_column(String(16))
    result_message_id: Mapped[int | None] = mapped_column(BigInteger)
    #: Whether Discord marked the channel age-restricted (``nsfw``) when the job was asked for; a
    #: thread carries its parent's. Decides, with the server's safety settings, whether a flagged
    #: result is posted or held (``videobot.safety.holds``).
    channel_nsfw: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    #: The moderator who approved a held result (it is then posted without another check).
    safety_approved_by: Mapped[int | None] = mapped_column(BigInteger)
    #: The prompt the video was made from when the member asked for enhancement (``params.prompt``
    #: stays their own words), written by the worker before it renders (``generator.enhance``).
    enhanced_prompt: Mapped[str | None] = mapped_column(Text)
    #: Why an asked-for enhancement was not used (English catalog text; the job then ran with the
    #: member's prompt as written).
    enhance_note: Mapped[str | None] = mapped_column(Text)
    notified_at: Mapped[float | None] = mapped_column(Float)
    generation_seconds: Mapped[float | None] = mapped_column(Float)
    #: Mean seconds per denoising step and peak GPU memory of the run that produced the result.
    seconds_per_step: Mapped[float | None] = mapped_column(Float)
    peak_gpu_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)
    queued_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    delivered_at: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("ix_jobs_status_model_queued_at", "status", "model", "queued_at"),
        Index("ix_jobs_user_status", "user_id", "status"),
        Index("ix_jobs_user_started", "user_id", "started_at"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
        Index("ix_jobs_updated_at", "updated_at"),
        # Reactions find the job behind a posted video.
        Index("ix_jobs_result_message_id", "result_message_id"),
    )


class JobResult(Base):
    """A finished video, stored in the database so it reaches the bot from any worker machine.

    A job with variations has one row per video made (``variant`` 0, 1, …; a variation that could not
    be made has no row).
    """

    __tablename__ = "job_results"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    variant: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, default=0)
    video: Mapped[bytes] = mapped_column(LargeBinary)
    poster: Mapped[bytes | None] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(40), default="video/mp4")
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    num_frames: Mapped[int] = mapped_column(Integer)
    fps: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    #: How the file was fitted under the upload limit (re-encodes, downscale), for the record.
    encode_notes: Mapped[str | None] = mapped_column(Text)
    #: The safety check's verdict (``videobot.safety``): the highest "unsafe" probability over the
    #: sampled frames (0..1), the frame it came from (index in this video), and the classifier that
    #: scored it. All None when the worker's check was off (VIDEOBOT_SAFETY_MODEL=off).
    safety_score: Mapped[float | None] = mapped_column(Float)
    safety_frame: Mapped[int | None] = mapped_column(Integer)
    safety_model: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)


class LedgerKind(enum.StrEnum):
    CHARGE = "charge"
    REFUND = "refund"
    #: The share of a job's charge for the variations it could not make (the job itself succeeded).
    PARTIAL_REFUND = "partial_refund"
    GRANT = "grant"


class LedgerEntry(Base):
    """Append-only credit ledger. Charges are negative, refunds and grants positive."""

    __tablename__ = "credit_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(Integer)
    #: Decides which rolling window the row counts in (a refund carries its charge's time).
    window_at: Mapped[float] = mapped_column(Float)
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint("job_id", "kind", name="uq_credit_ledger_job_id_kind"),
        Index("ix_credit_ledger_account_window", "guild_id", "user_id", "window_at"),
    )


class MemberQuota(Base):
    """Per-member quota state: the account row that serialises charges, plus a moderator override."""

    __tablename__ = "member_quotas"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    limit_override: Mapped[int | None] = mapped_column(Integer)
    #: Usage before this time no longer counts (``/quota reset``).
    reset_at: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class GuildConfig(Base):
    __tablename__ = "guild_configs"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    #: None = the VIDEOBOT_DEFAULT_QUOTA setting.
    default_limit: Mapped[int | None] = mapped_column(Integer)
    moderator_role_id: Mapped[int | None] = mapped_column(BigInteger)
    #: Channel ids where /video is allowed; empty = everywhere.
    allowed_channel_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    #: Blocked words or regular expressions ("re:" prefix), matched case- and look-alike-insensitively.
    blocklist: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: The last upload limit Discord reported for this guild (bytes), for posts with no interaction.
    upload_limit_bytes: Mapped[int | None] = mapped_column(Integer)
    #: The language of the bot's public messages here (a videobot.i18n catalog code, e.g. "pt_BR");
    #: None = the server's preferred locale in Discord.
    language: Mapped[str | None] = mapped_column(String(16))
    #: The safety level (``videobot.safety.SafetyLevel``) results are checked against; None: strict.
    safety_level: Mapped[str | None] = mapped_column(String(16))
    #: Check results in age-restricted channels too (by default they are posted there unchecked).
    safety_everywhere: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    #: Keep the charge of a held result (by default it is refunded when it is held).
    charge_held: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    #: Where held results wait for a moderator's decision; None: held results are rejected.
    review_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    #: Rewrite members' prompts with the worker's language model unless they say otherwise
    #: (``/videoconfig enhance``; ``/video enhance:`` overrides it).
    enhance: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    updated_at: Mapped[float] = mapped_column(Float)


class RoleLimit(Base):
    __tablename__ = "role_limits"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    role_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    limit: Mapped[int] = mapped_column(Integer)


class ModAction(Base):
    """Audit trail of moderator actions."""

    __tablename__ = "mod_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    actor_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[int | None] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_mod_actions_guild_created", "guild_id", "created_at"),)


class WorkerHeartbeat(Base):
    """One row per worker process, for /healthz and /metrics."""

    __tablename__ = "workers"

    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    models: Mapped[list[str]] = mapped_column(JSON, default=list)
    started_at: Mapped[float] = mapped_column(Float)
    seen_at: Mapped[float] = mapped_column(Float)
    current_job_id: Mapped[int | None] = mapped_column(Integer)
    gpu_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)

    # /healthz, the claim's "models some live worker has" and the clean-up read by seen_at.
    __table_args__ = (Index("ix_workers_seen_at", "seen_at"),)


class BotLock(Base):
    """The one ``videobot bot`` per database (SQLite; PostgreSQL uses an advisory lock instead)."""

    __tablename__ = "bot_lock"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: ``host:pid:started:nonce`` of the bot holding it (``videobot.botlock.default_owner``).
    owner: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[float] = mapped_column(Float)
    #: The holder renews this; a bot that stops renewing loses the lock when it passes.
    expires_at: Mapped[float] = mapped_column(Float)


class JobInput(Base):
    """What a job is made from besides its text: the first-frame image, the clip it extends.

    Stored with the job so that a worker on another machine gets it; removed with the job's result.
    """

    __tablename__ = "job_inputs"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    #: "image" / "end_image" (the first / last frame: PNG, normalised by ``videobot.images``) or "video"
    #: (the mp4 an extension continues).
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[float] = mapped_column(Float)


class JobPreview(Base):
    """The latest small picture of a running job (written by its worker, shown in its status message).

    One row per job, overwritten in place; removed by the transition that ends the job (or requeues it).
    """

    __tablename__ = "job_previews"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(40))
    #: The denoising step it shows.
    step: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[float] = mapped_column(Float)


class Intake(Base):
    """A member's request acknowledged ("thinking…") but not answered yet: what a restarted bot needs to
    answer it (queued, or refused) within its interaction token's 15 minutes.

    Written before the slow steps (fetching a picture, queueing); removed once the member is answered,
    or by the next start of the bot (answered then if the token is still valid), so the token is kept
    no longer than needed. ``reserved`` credits count against the member's balance and queue limit while
    a picture is fetched (0 once the job exists and carries the charge, or when nothing is reserved).
    """

    __tablename__ = "intakes"

    interaction_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    #: What was asked ("video"): the answer names it.
    verb: Mapped[str] = mapped_column(String(16))
    #: The member's Discord locale (the private answer is in their language).
    locale: Mapped[str] = mapped_column(String(16))
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    #: The member's roles then (their credit limit, for the answer's balance).
    role_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    application_id: Mapped[int] = mapped_column(BigInteger)
    interaction_token: Mapped[str] = mapped_column(Text)
    #: When the interaction token stops working (Discord: 15 minutes after the interaction).
    expires_at: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_intakes_member", "guild_id", "user_id"),)


class Style(Base):
    """A server's style: a LoRA from the Hugging Face Hub that members pick with ``/video style:``.

    ``name`` is stored lower case (names are unique per server whatever their case); the worker loads
    ``weight_name`` from ``repo_id`` as a named adapter (``generator.styles``)."""

    __tablename__ = "styles"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    repo_id: Mapped[str] = mapped_column(String(96))
    weight_name: Mapped[str] = mapped_column(String(200))
    scale: Mapped[float] = mapped_column(Float, default=1.0)
    #: Words the LoRA was trained with, added to the prompt the model gets (not to the member's prompt).
    trigger_words: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)
