"""Server styles: LoRAs from the Hugging Face Hub that moderators name (``/videoconfig style add``) and
members pick (``/video style:``). No Discord, no torch here: the bot validates and stores them, a job
carries a snapshot (``job_fields``), and the worker loads it as a named adapter (``generator.styles``).

A style's source is exactly ``owner/repo:weight_file.safetensors``: a Hub repo id and a weight file in
it. Nothing else (no URL, no local path), so a moderator can only make a worker download a
``.safetensors`` file from the Hub, which holds tensors, never code.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from videobot.audit import audit
from videobot.db import db_now
from videobot.errors import InvalidParameters
from videobot.guilds import InvalidConfig
from videobot.i18n import Number, msg
from videobot.models import Style
from videobot.presets import MAX_LORA_SCALE

#: Styles one server may have (Discord's autocomplete shows 25 choices).
MAX_STYLES = 25
MAX_NAME_CHARS = 32
MAX_TRIGGER_CHARS = 200
#: A style's name: lower case letters, digits, ``-`` and ``_``, starting with a letter or digit.
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
#: A Hub repo id (``huggingface_hub.utils.validate_repo_id``): owner/name, each of letters, digits,
#: ``-``, ``_``, ``.``, at most 96 characters, no ``--`` or ``..``.
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
#: A weight file inside the repo: a relative path of plain parts ending ``.safetensors``.
WEIGHT_NAME = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*/)*[A-Za-z0-9_][A-Za-z0-9_.-]*\.safetensors$")
SOURCE_EXAMPLE = "owner/repo:style.safetensors"


@dataclass(frozen=True)
class StyleInfo:
    """One server style as the bot shows it and a job snapshots it."""

    name: str
    repo_id: str
    weight_name: str
    scale: float = 1.0
    trigger_words: str | None = None

    @property
    def source(self) -> str:
        """``owner/repo:weight.safetensors``: what the worker loads (and the adapter's identity)."""
        return f"{self.repo_id}:{self.weight_name}"


def check_name(name: str) -> str:
    """The style name lower-cased, or ``InvalidConfig`` saying how to write one."""
    clean = (name or "").strip().lower()
    if not NAME.match(clean):
        raise InvalidConfig(
            msg(
                "`{name}` cannot be a style name: use up to {n} lower case letters, digits, `-` or `_` "
                "(no spaces), e.g. `watercolor`.",
                name=(name or "").strip()[:40].replace("`", "'"),
                n=MAX_NAME_CHARS,
            )
        )
    return clean


def parse_source(text: str) -> tuple[str, str]:
    """``owner/repo:weight_file.safetensors`` -> (repo id, weight name); anything else (a URL, a local
    path, a missing weight file) is refused with ``InvalidConfig`` saying what to write."""
    source = (text or "").strip()
    repo_id, sep, weight_name = source.partition(":")
    ok = (
        sep == ":"
        and REPO_ID.match(repo_id) is not None
        and "--" not in repo_id
        and ".." not in repo_id
        and not repo_id.endswith(".git")
        and WEIGHT_NAME.match(weight_name) is not None
        and ".." not in weight_name.split("/")
        and len(weight_name) <= 200
    )
    if not ok:
        raise InvalidConfig(
            msg(
                "`{source}` is not a style source. Write a Hugging Face repo id and the LoRA's weight "
                "file in it, e.g. `{example}` (no links or file paths).",
                source=source[:120].replace("`", "'"),
                example=SOURCE_EXAMPLE,
            )
        )
    return repo_id, weight_name


def check_scale(scale: float) -> float:
    if (
        isinstance(scale, bool)
        or not isinstance(scale, (int, float))
        or not math.isfinite(scale)
        or not 0 < abs(scale) <= MAX_LORA_SCALE
    ):
        raise InvalidConfig(
            msg(
                "The scale must be a number between -{max} and {max}, not 0 (1 is the LoRA as trained).",
                max=Number(MAX_LORA_SCALE),
            )
        )
    return float(scale)


def clean_trigger(text: str | None) -> str | None:
    """Trigger words on one line (control characters and extra spaces dropped), or None."""
    if text is None:
        return None
    words = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(words) > MAX_TRIGGER_CHARS:
        raise InvalidConfig(
            msg("Trigger words may be at most {n} characters long.", n=Number(MAX_TRIGGER_CHARS))
        )
    return words or None


def _info(row: Style) -> StyleInfo:
    return StyleInfo(row.name, row.repo_id, row.weight_name, row.scale, row.trigger_words)


async def add_style(
    session: AsyncSession,
    guild_id: int,
    name: str,
    source: str,
    *,
    scale: float = 1.0,
    trigger_words: str | None = None,
    actor_id: int,
    reason: str | None = None,
) -> StyleInfo:
    """Add a style to the server (audited); ``InvalidConfig`` for a bad name, source or scale, a name
    already taken (any case) or a full list."""
    clean = check_name(name)
    repo_id, weight_name = parse_source(source)
    info = StyleInfo(clean, repo_id, weight_name, check_scale(scale), clean_trigger(trigger_words))
    if await session.get(Style, (guild_id, clean)) is not None:
        raise InvalidConfig(
            msg(
                "This server already has a style `{name}`. Remove it first (`/videoconfig style remove`) "
                "or pick another name.",
                name=clean,
            )
        )
    count = await session.scalar(select(func.count()).select_from(Style).where(Style.guild_id == guild_id))
    if (count or 0) >= MAX_STYLES:
        raise InvalidConfig(
            msg("This server has {n} styles, the most it may have. Remove one first.", n=Number(MAX_STYLES))
        )
    session.add(
        Style(
            guild_id=guild_id,
            name=clean,
            repo_id=repo_id,
            weight_name=weight_name,
            scale=info.scale,
            trigger_words=info.trigger_words,
            created_by=actor_id,
            created_at=db_now(),
        )
    )
    await audit(
        session,
        guild_id,
        actor_id,
        "config.style_add",
        None,
        {"name": clean, "source": info.source, "scale": info.scale, "trigger_words": info.trigger_words},
        reason,
    )
    return info


async def remove_style(
    session: AsyncSession, guild_id: int, name: str, *, actor_id: int, reason: str | None = None
) -> StyleInfo | None:
    """Remove a style (audited); None if the server has none of that name. Queued jobs keep theirs."""
    row = await session.get(Style, (guild_id, (name or "").strip().lower()))
    if row is None:
        return None
    info = _info(row)
    await session.execute(delete(Style).where(Style.guild_id == guild_id, Style.name == row.name))
    await audit(
        session,
        guild_id,
        actor_id,
        "config.style_remove",
        None,
        {"name": info.name, "source": info.source},
        reason,
    )
    return info


async def list_styles(session: AsyncSession, guild_id: int) -> list[StyleInfo]:
    """The server's styles by name."""
    rows = await session.scalars(select(Style).where(Style.guild_id == guild_id).order_by(Style.name))
    return [_info(r) for r in rows]


async def style_names(session: AsyncSession, guild_id: int, typed: str = "") -> list[str]:
    """Up to 25 of the server's style names containing ``typed`` (any case), for autocomplete."""
    q = select(Style.name).where(Style.guild_id == guild_id)
    typed = typed.strip().lower()
    if typed:
        q = q.where(Style.name.contains(typed, autoescape=True))
    return list(await session.scalars(q.order_by(Style.name).limit(MAX_STYLES)))


async def find_style(session: AsyncSession, guild_id: int, name: str) -> StyleInfo:
    """The style a member picked, or ``InvalidParameters`` saying how to see the server's styles."""
    row = await session.get(Style, (guild_id, (name or "").strip().lower()))
    if row is None:
        raise InvalidParameters(
            msg(
                "This server has no style `{name}`. Pick one from the list the `style` option shows "
                "(moderators: `/videoconfig style list`).",
                name=(name or "").strip()[:40].replace("`", "'"),
            )
        )
    return _info(row)


def job_fields(style: StyleInfo) -> dict[str, Any]:
    """The style's snapshot in a job's parameters (``GenerationParams.style*``): a style removed or
    changed later does not change a job already queued."""
    return {
        "style": style.name,
        "style_source": style.source,
        "style_scale": style.scale,
        "style_trigger": style.trigger_words,
    }


#: The keys ``job_fields`` writes (a bare request planned on the worker keeps them).
JOB_KEYS = ("style", "style_source", "style_scale", "style_trigger")


def model_prompt(prompt: str, trigger: str | None) -> str:
    """The prompt the model gets: the style's trigger words first (the member's prompt is kept as
    they wrote it everywhere they see it)."""
    return f"{trigger}, {prompt}" if trigger else prompt
