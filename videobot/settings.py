"""Settings: one pydantic-settings object read from the environment and ``.env``.

Created once at the entry point (``videobot.cli``) and passed down; nothing else
reads ``os.environ``. Every field is documented in ``.env.example``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from videobot.presets import LoraSpec, parse_loras


class SettingsError(Exception):
    """A setting has an invalid value; the message names the setting."""


class Settings(BaseSettings):
    """Everything an owner can configure. Names are the environment variables."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- Discord -----------------------------------------------------------------------------
    discord_token: SecretStr | None = Field(default=None, alias="DISCORD_TOKEN")
    discord_api_base_url: str = Field(default="https://discord.com/api/v10", alias="DISCORD_API_BASE_URL")
    discord_gateway_url: str = Field(default="wss://gateway.discord.gg/", alias="DISCORD_GATEWAY_URL")
    #: Guild ids to register slash commands in directly (instant); empty = global commands.
    discord_guild_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, alias="VIDEOBOT_GUILD_IDS"
    )

    # --- Storage -----------------------------------------------------------------------------
    data_dir: Path = Field(default=Path("./data"), alias="VIDEOBOT_DATA_DIR")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    #: Hours a finished video is kept in the database after delivery (or after it became undeliverable).
    result_retention_hours: float = Field(default=24.0, gt=0, alias="VIDEOBOT_RESULT_RETENTION_HOURS")
    #: Hours a job may wait in the queue (no worker took it) before it is cancelled and refunded.
    queue_expiry_hours: float = Field(default=24.0, gt=0, alias="VIDEOBOT_QUEUE_EXPIRY_HOURS")

    # --- Model / worker ----------------------------------------------------------------------
    model: str = Field(default="auto", alias="VIDEOBOT_MODEL")
    #: How many times one clip may be extended (the Extend button); empty = the model's preset (4).
    max_extensions: int | None = Field(default=None, ge=0, le=50, alias="VIDEOBOT_MAX_EXTENSIONS")
    #: The latent upsampler HD videos use (``repo_id`` or ``repo_id:subfolder``, or a local folder); empty =
    #: the preset's own (README "HD").
    hd_upsampler: str | None = Field(default=None, alias="VIDEOBOT_HD_UPSAMPLER")
    device: str = Field(default="auto", alias="VIDEOBOT_DEVICE")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(default="auto", alias="VIDEOBOT_DTYPE")
    #: Memory options; empty (None) = not set: ``auto`` picks them by the card's memory, other models have them off.
    offload: Literal["none", "model", "sequential", "group"] | None = Field(
        default=None, alias="VIDEOBOT_OFFLOAD"
    )
    vae_tiling: bool | None = Field(default=None, alias="VIDEOBOT_VAE_TILING")
    layerwise_fp8: bool | None = Field(default=None, alias="VIDEOBOT_FP8")
    #: Speed options (generator/speed.py); an option the model does not support stops start-up.
    attention_backend: Literal["native", "flash", "sage", "auto"] = Field(
        default="native", alias="VIDEOBOT_ATTENTION_BACKEND"
    )
    step_cache: Literal["off", "first_block", "mag", "taylorseer", "pab"] = Field(
        default="off", alias="VIDEOBOT_STEP_CACHE"
    )
    compile: Literal["off", "regional"] = Field(default="off", alias="VIDEOBOT_COMPILE")
    vae_slicing: bool = Field(default=False, alias="VIDEOBOT_VAE_SLICING")
    #: LoRAs fused into the model at start: comma-separated SOURCE[:WEIGHT_NAME][@SCALE] (videobot.presets.parse_loras).
    loras: Annotated[tuple[LoraSpec, ...], NoDecode] = Field(default=(), alias="VIDEOBOT_LORAS")
    #: Server styles (LoRAs members pick with /video style:) a worker keeps loaded as adapters, most recent first.
    style_cache: int = Field(default=3, ge=1, le=32, alias="VIDEOBOT_STYLE_CACHE")
    #: GPUs of this machine one worker uses for each video (diffusers context parallelism; Wan 2.1 / 2.2).
    gpus: int = Field(default=1, ge=1, le=64, alias="VIDEOBOT_GPUS")
    #: How attention is split across those GPUs: ulysses (heads, fastest on NVLink) or ring (K/V passed around).
    context_parallel: Literal["ulysses", "ring"] = Field(default="ulysses", alias="VIDEOBOT_CONTEXT_PARALLEL")
    worker_id: str | None = Field(default=None, alias="VIDEOBOT_WORKER_ID")
    lease_seconds: float = Field(default=60.0, gt=1, alias="VIDEOBOT_LEASE_SECONDS")
    heartbeat_seconds: float = Field(default=10.0, gt=0, alias="VIDEOBOT_HEARTBEAT_SECONDS")
    max_attempts: int = Field(default=3, ge=1, le=20, alias="VIDEOBOT_MAX_ATTEMPTS")
    poll_seconds: float = Field(default=1.0, gt=0, alias="VIDEOBOT_POLL_SECONDS")
    #: Tests only: seconds slept at every denoising step, to make tiny-model jobs last long enough to cancel.
    test_step_delay: float = Field(default=0.0, ge=0, alias="VIDEOBOT_TEST_STEP_DELAY")
    shutdown_grace_seconds: float = Field(default=30.0, ge=0, alias="VIDEOBOT_SHUTDOWN_GRACE_SECONDS")
    #: A live preview of a running job at most this often (seconds); 0 turns previews off.
    preview_seconds: float = Field(default=10.0, ge=0, alias="VIDEOBOT_PREVIEW_SECONDS")

    #: Image safety classifier scoring every result and input picture: auto (the default model; tiny-safe
    #: beside a built-in tiny video model), a Hugging Face repo id, a local folder, tiny-safe,
    #: tiny-unsafe, or off (no check: the worker warns at start).
    safety_model: str = Field(default="auto", min_length=1, alias="VIDEOBOT_SAFETY_MODEL")
    #: The small instruction-tuned language model that rewrites prompts when a member asks for it
    #: (``/video enhance:``, ``/videoconfig enhance``): auto (Qwen2.5-1.5B-Instruct; a tiny built-in model
    #: beside a tiny video model), a Hugging Face repo id, a local folder, tiny, or off / empty (no
    #: enhancing: the bot refuses ``enhance:true``). Read by the bot and the workers alike. Loaded on
    #: the worker by the first job that asks, never at start.
    enhance_model: str = Field(default="auto", alias="VIDEOBOT_ENHANCE_MODEL")

    # --- Quotas ------------------------------------------------------------------------------
    default_quota: int = Field(default=5, ge=0, alias="VIDEOBOT_DEFAULT_QUOTA")
    quota_window_hours: float = Field(default=24.0, gt=0, alias="VIDEOBOT_QUOTA_WINDOW_HOURS")
    cost_mode: Literal["flat", "weighted"] = Field(default="flat", alias="VIDEOBOT_COST_MODE")
    #: Credits an HD video (the HD button) costs; empty = like one video of its source (1 credit, or the
    #: source's single video under ``weighted``).
    hd_cost: int | None = Field(default=None, ge=0, le=1000, alias="VIDEOBOT_HD_COST")
    max_queued_per_user: int = Field(default=3, ge=1, alias="VIDEOBOT_MAX_QUEUED_PER_USER")
    #: Default upload limit (bytes) for posts that carry no interaction (reaction reruns).
    upload_limit_bytes: int = Field(
        default=10 * 1024 * 1024, ge=256 * 1024, alias="VIDEOBOT_UPLOAD_LIMIT_BYTES"
    )

    # --- Input images (/video image, Animate) -----------------------------------------------
    #: Largest picture file a member may give (bytes); larger ones are refused without downloading.
    max_image_bytes: int = Field(
        default=20 * 1024 * 1024, ge=64 * 1024, le=512 * 1024 * 1024, alias="VIDEOBOT_MAX_IMAGE_BYTES"
    )
    #: Largest picture in pixels (width x height, read from the header before anything is decoded).
    max_image_pixels: int = Field(
        default=40_000_000, ge=1_000_000, le=200_000_000, alias="VIDEOBOT_MAX_IMAGE_PIXELS"
    )
    #: Memory (MiB) one picture's decode may take: PNG 4 bytes a pixel (64: 4096x4096), WebP 16 (64:
    #: 2048x2048), JPEG 4 at the reduced size it is decoded at. Larger pictures are refused from the header.
    image_decode_mb: int = Field(default=64, ge=16, le=1024, alias="VIDEOBOT_IMAGE_DECODE_MB")
    #: Pictures the bot decodes at the same time (the others wait): its memory for pictures is about
    #: twice the decode budget per decoder, however many arrive together.
    image_decoders: int = Field(default=1, ge=1, le=16, alias="VIDEOBOT_IMAGE_DECODERS")
    #: Seconds the bot waits for a picture's download from Discord before it gives up.
    image_download_seconds: float = Field(default=20.0, gt=0, le=300, alias="VIDEOBOT_IMAGE_DOWNLOAD_SECONDS")

    # --- Operations --------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", alias="VIDEOBOT_LOG_LEVEL"
    )
    #: auto: readable text lines on a terminal, JSON lines otherwise (files, journald, collectors).
    log_format: Literal["auto", "text", "json"] = Field(default="auto", alias="VIDEOBOT_LOG_FORMAT")
    health_host: str = Field(default="127.0.0.1", alias="VIDEOBOT_HEALTH_HOST")
    #: Port of /healthz and /metrics; 0 turns the HTTP endpoint off.
    health_port: int = Field(default=8080, ge=0, le=65535, alias="VIDEOBOT_HEALTH_PORT")

    @field_validator(
        "max_extensions", "offload", "vae_tiling", "layerwise_fp8", "hd_cost", "hd_upsampler", mode="before"
    )
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("loras", mode="before")
    @classmethod
    def _parse_loras(cls, value: object) -> object:
        return parse_loras(value) if isinstance(value, str) else value

    @field_validator("discord_guild_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(" ", "").split(",") if part]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user:pass@host/db"
            )
        return value

    @model_validator(mode="after")
    def _heartbeat_inside_lease(self) -> Settings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("VIDEOBOT_HEARTBEAT_SECONDS must be shorter than VIDEOBOT_LEASE_SECONDS")
        return self

    @property
    def db_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'videobot.db').resolve()}"

    @property
    def quota_window_seconds(self) -> float:
        return self.quota_window_hours * 3600.0


def load_settings(**overrides: object) -> Settings:
    """Build settings from env/.env (plus overrides), turning validation errors into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = err.get("loc") or ()
            name = str(loc[0]) if loc else "settings"
            field = Settings.model_fields.get(name)
            env_name = (field.alias if field and field.alias else name).upper()
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            lines.append(f"{env_name}: {msg}" if loc else msg)
        raise SettingsError("Invalid setting(s):\n  " + "\n  ".join(lines)) from None
