"""Guild configuration: where ``/video`` may be used, which prompts are refused, who moderates.

Services take ids and an ``AsyncSession`` inside a write transaction (the caller commits) and
never import Discord. Every moderator change writes a ``mod_actions`` row through the quota
module's audit helper.

The blocklist holds plain words, matched as whole words, and regular expressions written
``re:<pattern>``. Both are matched against a *folded* prompt (see ``fold``): NFKC, format
characters and combining marks removed, Cyrillic/Greek look-alikes mapped to Latin, casefolded;
and against a leetspeak reading of it (``4ss`` → ``ass``). Not caught, on purpose: letters split
by spaces or punctuation (``a s s``), which would also turn "has sand" into a match.

Catastrophic backtracking: Python's ``re`` has no timeout, and measured here even innocent-looking
patterns are polynomial bombs on a long prompt (``[a-z]+[a-z]+[a-z]+!`` took 321 s on 1,000
characters; ``.*a.*b`` 6 s on 2,000). So patterns run on the ``regex`` module (re-compatible
syntax, already installed with transformers) with a ``timeout``: one prompt check gets
``CHECK_BUDGET_SECONDS`` in all, and a check that runs out refuses the prompt (fail closed) and logs
which entry was slow. A pattern is also test-run against adversarial strings when it is added and
refused if it is slow, and patterns (``MAX_PATTERN_CHARS``), prompts (``MAX_PROMPT_CHARS``) and the
list (``MAX_BLOCKLIST_ENTRIES``) are capped, so the worst case costs the event loop a quarter of a
second, not a hang. (``re2`` would guarantee linear time, at the cost of a compiled dependency and
no look-arounds.)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
import unicodedata
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import regex
from sqlalchemy import BigInteger, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from videobot.audit import audit
from videobot.db import db_now, dialect_insert
from videobot.errors import ChannelNotAllowed, PromptRejected, VideobotError
from videobot.i18n import LANGUAGES, N_, Number, msg
from videobot.models import GuildConfig, RoleLimit
from videobot.safety import SafetyLevel

log = logging.getLogger(__name__)

MAX_PATTERN_CHARS = 200
MAX_PROMPT_CHARS = 2000
MAX_BLOCKLIST_ENTRIES = 200
MAX_ALLOWED_CHANNELS = 100
#: Time one prompt check may spend in the blocklist's patterns, in all.
CHECK_BUDGET_SECONDS = 0.25
#: Time a new pattern may take on each adversarial probe string when it is added.
PROBE_SECONDS = 0.05
REGEX_PREFIX = "re:"

PROMPT_REJECTED_MESSAGE = N_("Your prompt contains a word this server does not allow. Please rephrase it.")


class InvalidConfig(VideobotError):
    """A moderator's configuration change cannot be applied; the message says why."""

    code = "invalid_config"


@dataclass(frozen=True)
class GuildSettingsView:
    """A guild's configuration as the bot reads it (defaults when the guild has no row)."""

    guild_id: int
    #: None: the ``VIDEOBOT_DEFAULT_QUOTA`` setting applies.
    default_limit: int | None = None
    moderator_role_id: int | None = None
    #: Empty: /video is allowed in every channel.
    allowed_channel_ids: tuple[int, ...] = ()
    blocklist: tuple[str, ...] = ()
    #: The last upload limit Discord reported for this guild; None: not seen yet (use the setting).
    upload_limit_bytes: int | None = None
    #: The language of the bot's public messages (a ``videobot.i18n.LANGUAGES`` code); None: the
    #: server's preferred locale in Discord.
    language: str | None = None
    #: The safety level results are checked against (``videobot.safety``); None: the default (strict).
    safety_level: str | None = None
    #: Check results in age-restricted channels too.
    safety_everywhere: bool = False
    #: A held result keeps its charge (default: refunded when held).
    charge_held: bool = False
    #: Where held results wait for a moderator; None: held results are rejected.
    review_channel_id: int | None = None
    #: Enhance members' prompts unless they say otherwise (``/video enhance:``).
    enhance: bool = False


# ---------------------------------------------------------------------------------------- reading
def _view(guild_id: int, row: Any) -> GuildSettingsView:
    """``row``: a ``guild_configs`` row (or ``GuildConfig``), or None."""
    if row is None:
        return GuildSettingsView(guild_id=guild_id)
    return GuildSettingsView(
        guild_id=guild_id,
        default_limit=row.default_limit,
        moderator_role_id=row.moderator_role_id,
        allowed_channel_ids=tuple(int(c) for c in row.allowed_channel_ids or ()),
        blocklist=tuple(row.blocklist or ()),
        upload_limit_bytes=row.upload_limit_bytes,
        language=row.language,
        safety_level=row.safety_level,
        safety_everywhere=bool(row.safety_everywhere),
        charge_held=bool(row.charge_held),
        review_channel_id=row.review_channel_id,
        enhance=bool(row.enhance),
    )


async def get_config(session: AsyncSession, guild_id: int) -> GuildSettingsView:
    """The guild's configuration, or the defaults when nothing was configured."""
    # Every /video reads it: a statement built once, and a plain row rather than an ORM object.
    row = (await session.execute(_CONFIG_BY_GUILD, {"g_guild": guild_id})).first()
    return _view(guild_id, row)


_CONFIG_BY_GUILD = select(GuildConfig.__table__).where(
    GuildConfig.__table__.c.guild_id == bindparam("g_guild", type_=BigInteger)
)


async def role_limits(session: AsyncSession, guild_id: int) -> list[tuple[int, int]]:
    """The guild's role limits as ``(role_id, limit)``, highest limit first."""
    rows = await session.execute(
        select(RoleLimit.role_id, RoleLimit.limit)
        .where(RoleLimit.guild_id == guild_id)
        .order_by(RoleLimit.limit.desc(), RoleLimit.role_id)
    )
    return [(int(r), int(limit)) for r, limit in rows.all()]


# ---------------------------------------------------------------------------------------- checking
def check_request(
    view: GuildSettingsView, channel_id: int, prompt: str, *, parent_id: int | None = None
) -> None:
    """Refuse a /video in a channel that is not allowed or with a blocked prompt.

    ``parent_id`` is the parent channel of a thread: a thread of an allowed channel is allowed.
    Raises ``ChannelNotAllowed`` or ``PromptRejected`` with a message safe to show the member.
    """
    allowed = view.allowed_channel_ids
    if allowed and channel_id not in allowed and (parent_id is None or parent_id not in allowed):
        where = ", ".join(f"<#{c}>" for c in allowed)
        raise ChannelNotAllowed(
            msg("Videos can't be made in this channel. Please use {channels}.", channels=where)
        )
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptRejected(
            msg(
                "Your prompt is too long (at most {limit} characters). Please shorten it.",
                limit=Number(MAX_PROMPT_CHARS),
            )
        )
    # The matched entry is not echoed back: repeating a slur helps nobody, and showing what the
    # filter saw (after folding) or a moderator's regex would teach people how to get around it.
    index = blocked_entry(view.blocklist, prompt)
    if index is not None:
        log.info("prompt refused in guild %s by blocklist entry #%s", view.guild_id, index + 1)
        raise PromptRejected(msg(PROMPT_REJECTED_MESSAGE))


def blocked_entry(
    blocklist: Sequence[str], prompt: str, *, budget: float = CHECK_BUDGET_SECONDS
) -> int | None:
    """The index of the first blocklist entry that matches ``prompt``, or None.

    An entry that runs out of the time budget counts as a match (fail closed).
    """
    if not blocklist:
        return None
    matchers = _compile_blocklist(tuple(blocklist))
    texts = _readings(prompt)
    deadline = time.monotonic() + budget
    for index, pattern in matchers:
        for text in texts:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                if pattern.search(text, timeout=left):
                    return index
            except TimeoutError:
                log.warning("blocklist check ran out of time at entry #%s; prompt refused", index + 1)
                return index
    return None


# Look-alikes that NFKC leaves alone, mapped to the Latin letter they imitate. Case-sensitive and
# applied before casefolding, because an uppercase letter can imitate a different Latin letter
# than its lowercase form (Greek Ν looks like N, ν like v; Cyrillic В like B).
_CONFUSABLES = {
    # Cyrillic lowercase
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j", "к": "k",
    "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s",
    "ԁ": "d", "ԛ": "q", "ԝ": "w", "ү": "y",
    # Cyrillic uppercase
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "Н": "H", "І": "I", "Ї": "I", "Ј": "J", "К": "K",
    "М": "M", "О": "O", "Р": "P", "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "Ԁ": "D",
    "Ү": "Y", "Ԛ": "Q", "Ԝ": "W",
    # Greek lowercase
    "α": "a", "β": "b", "γ": "y", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ω": "w",
    # Greek uppercase
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Latin letters that look like others
    "ı": "i", "ɡ": "g", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŀ": "l",
}  # fmt: skip
_CONFUSABLE_TABLE = str.maketrans(_CONFUSABLES)
# Only inside a word that also has a letter: "4ss" reads "ass", but "455 tails" stays a number.
_LEET_TABLE = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_LEET_WORD = re.compile(r"[\w@$]+")


def fold(text: str) -> str:
    """The text as the blocklist sees it: NFKC, no format characters or accents, look-alikes mapped, casefolded."""
    text = unicodedata.normalize("NFKC", text)
    # NFD splits accented letters so the marks can go; Cf removes zero-width and bidi characters.
    text = unicodedata.normalize("NFD", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Mn", "Me", "Cf"))
    text = text.translate(_CONFUSABLE_TABLE).casefold()
    return unicodedata.normalize("NFC", text)


def _leet(folded: str) -> str:
    def word(m: re.Match[str]) -> str:
        w = m.group(0)
        if any(ch.isalpha() for ch in w):
            return w.translate(_LEET_TABLE)
        return w

    return _LEET_WORD.sub(word, folded)


def _readings(prompt: str) -> tuple[str, ...]:
    """The versions of a prompt the blocklist is matched against."""
    light = unicodedata.normalize("NFKC", prompt).casefold()
    light = "".join(ch for ch in light if unicodedata.category(ch) != "Cf")
    folded = fold(prompt)
    readings = [folded]
    leet = _leet(folded)
    if leet != folded:
        readings.append(leet)
    if light != folded:
        # For regexes written in the script the prompt uses (a Cyrillic word stays Cyrillic here).
        readings.append(light)
    return tuple(readings)


def _word_regex(word: str) -> str:
    parts = [re.escape(p) for p in fold(word).split()]
    return r"(?<!\w)" + r"\s+".join(parts) + r"(?!\w)"


def _compile(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)


@functools.lru_cache(maxsize=256)
def _compile_blocklist(blocklist: tuple[str, ...]) -> tuple[tuple[int, regex.Pattern[str]], ...]:
    compiled: list[tuple[int, regex.Pattern[str]]] = []
    for index, entry in enumerate(blocklist):
        try:
            if entry.startswith(REGEX_PREFIX):
                compiled.append((index, _compile(entry[len(REGEX_PREFIX) :])))
            elif entry.strip():
                compiled.append((index, _compile(_word_regex(entry))))
        except regex.error:
            # Validated when added; an entry stored some other way is skipped, not fatal.
            log.warning("blocklist entry #%s does not compile; skipped", index + 1)
    return tuple(compiled)


#: Where ``check_pattern`` runs ``validate_pattern`` (up to ~0.5 s of probing each): off the event loop,
#: and at most two at once, so moderators adding patterns never take the default thread pool.
_PATTERN_CHECKS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pattern-check")


async def check_pattern(pattern: str) -> str:
    """``validate_pattern`` in its own small thread pool (the event loop keeps serving meanwhile)."""
    return await asyncio.get_running_loop().run_in_executor(_PATTERN_CHECKS, validate_pattern, pattern)


def validate_pattern(pattern: str) -> str:
    """The blocklist entry as it will be stored; raises ``InvalidConfig`` with a polite reason.
    Blocking (probes a regular expression for up to ~0.5 s): async code calls ``check_pattern``."""
    entry = pattern.strip()
    if not entry or entry == REGEX_PREFIX:
        raise InvalidConfig(msg("The blocked word or pattern is empty."))
    if len(entry) > MAX_PATTERN_CHARS:
        raise InvalidConfig(
            msg("That entry is too long: at most {limit} characters.", limit=Number(MAX_PATTERN_CHARS))
        )
    if not entry.startswith(REGEX_PREFIX):
        if not fold(entry).strip():
            raise InvalidConfig(msg("That word has no letters left once invisible characters are removed."))
        return entry
    source = entry[len(REGEX_PREFIX) :]
    try:
        compiled = _compile(source)
    except regex.error as exc:
        raise InvalidConfig(
            msg(
                "That regular expression is not valid ({error}). Check it, or add a plain word instead.",
                error=exc.msg,
            )
        ) from None
    if compiled.search(""):
        raise InvalidConfig(
            msg("That regular expression matches an empty prompt, so it would block every prompt.")
        )
    for probe in _probes(source):
        try:
            # ``concurrent``: the GIL is released while it searches (it runs in a thread).
            compiled.search(probe, timeout=PROBE_SECONDS, concurrent=True)
        except TimeoutError:
            raise InvalidConfig(
                msg(
                    "That regular expression is too slow to check on long prompts (it backtracks a lot; "
                    "nested or back-to-back repeats like `(a+)+` or `\\w+\\w+` usually cause this). "
                    "Please simplify it."
                )
            ) from None
    return entry


def _probes(source: str) -> list[str]:
    """Long strings that make a backtracking pattern show how slow it can be."""
    n = MAX_PROMPT_CHARS
    chars = list(dict.fromkeys(ch for ch in source.casefold() if ch.isalnum()))[:8] or ["a"]
    probes = ["a" * n, "a " * (n // 2), "".join(chars) * (n // len(chars))]
    probes += [ch * n for ch in chars]
    # The same strings with a character no pattern expects at the end: failing late is the slow case.
    return [p[: n - 1] + "\x00" for p in probes]


def _same_entry(a: str, b: str) -> bool:
    if a.startswith(REGEX_PREFIX) or b.startswith(REGEX_PREFIX):
        return a == b
    return fold(a).split() == fold(b).split()


# ---------------------------------------------------------------------------------------- changing
async def config_for_update(session: AsyncSession, guild_id: int) -> GuildConfig:
    """The guild's row, created if needed and locked (PostgreSQL) for the rest of the transaction.

    Every write of a guild's configuration (channels, blocklist, moderator role, quotas) takes this
    lock first, so two moderators' changes take turns instead of overwriting each other.
    """
    ins = dialect_insert(session)(GuildConfig).values(
        guild_id=guild_id, allowed_channel_ids=[], blocklist=[], updated_at=db_now()
    )
    await session.execute(ins.on_conflict_do_nothing(index_elements=["guild_id"]))
    stmt = select(GuildConfig).where(GuildConfig.guild_id == guild_id)
    if session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one()


def _touch(row: GuildConfig) -> None:
    row.updated_at = db_now()  # type: ignore[assignment]


async def set_allowed_channels(
    session: AsyncSession,
    guild_id: int,
    channel_ids: Iterable[int],
    *,
    actor_id: int,
    reason: str | None = None,
) -> tuple[int, ...]:
    """Replace the channels where /video is allowed (empty: everywhere); returns the new list."""
    new = list(dict.fromkeys(int(c) for c in channel_ids))
    if len(new) > MAX_ALLOWED_CHANNELS:
        raise InvalidConfig(
            msg("At most {limit} channels can be allowed.", limit=Number(MAX_ALLOWED_CHANNELS))
        )
    row = await config_for_update(session, guild_id)
    old = list(row.allowed_channel_ids or [])
    row.allowed_channel_ids = new
    _touch(row)
    await audit(session, guild_id, actor_id, "config.channels", None, {"old": old, "new": new}, reason)
    return tuple(new)


async def add_allowed_channel(
    session: AsyncSession, guild_id: int, channel_id: int, *, actor_id: int, reason: str | None = None
) -> bool:
    """Allow /video in a channel; False (and no change) if it was already allowed."""
    row = await config_for_update(session, guild_id)
    current = [int(c) for c in row.allowed_channel_ids or []]
    if channel_id in current:
        return False
    if len(current) >= MAX_ALLOWED_CHANNELS:
        raise InvalidConfig(
            msg("At most {limit} channels can be allowed.", limit=Number(MAX_ALLOWED_CHANNELS))
        )
    row.allowed_channel_ids = [*current, int(channel_id)]
    _touch(row)
    await audit(session, guild_id, actor_id, "config.channel_allow", channel_id, {}, reason)
    return True


async def remove_allowed_channel(
    session: AsyncSession, guild_id: int, channel_id: int, *, actor_id: int, reason: str | None = None
) -> bool:
    """Stop allowing /video in a channel; False if it was not in the list."""
    row = await config_for_update(session, guild_id)
    current = [int(c) for c in row.allowed_channel_ids or []]
    if channel_id not in current:
        return False
    row.allowed_channel_ids = [c for c in current if c != channel_id]
    _touch(row)
    await audit(session, guild_id, actor_id, "config.channel_remove", channel_id, {}, reason)
    return True


async def add_block(
    session: AsyncSession, guild_id: int, pattern: str, *, actor_id: int, reason: str | None = None
) -> bool:
    """Add a blocked word or ``re:`` pattern; False if an equivalent entry exists. Raises ``InvalidConfig``."""
    entry = await check_pattern(pattern)  # before the row's lock: checking takes up to ~0.5 s
    row = await config_for_update(session, guild_id)
    current = list(row.blocklist or [])
    if any(_same_entry(entry, e) for e in current):
        return False
    if len(current) >= MAX_BLOCKLIST_ENTRIES:
        raise InvalidConfig(
            msg(
                "The blocklist is full ({limit} entries). Remove one first.",
                limit=Number(MAX_BLOCKLIST_ENTRIES),
            )
        )
    row.blocklist = [*current, entry]
    _touch(row)
    await audit(session, guild_id, actor_id, "config.block_add", None, {"pattern": entry}, reason)
    return True


async def remove_block(
    session: AsyncSession, guild_id: int, pattern: str, *, actor_id: int, reason: str | None = None
) -> bool:
    """Remove a blocklist entry (a word matches its look-alike spellings too); False if none matched."""
    entry = pattern.strip()
    row = await config_for_update(session, guild_id)
    current = list(row.blocklist or [])
    kept = [e for e in current if not _same_entry(entry, e)]
    if len(kept) == len(current):
        return False
    removed = [e for e in current if _same_entry(entry, e)]
    row.blocklist = kept
    _touch(row)
    await audit(session, guild_id, actor_id, "config.block_remove", None, {"patterns": removed}, reason)
    return True


async def set_moderator_role(
    session: AsyncSession,
    guild_id: int,
    role_id: int | None,
    *,
    actor_id: int,
    reason: str | None = None,
) -> None:
    """Set (or with None clear) the role whose members may use the moderator commands."""
    row = await config_for_update(session, guild_id)
    old = row.moderator_role_id
    row.moderator_role_id = role_id
    _touch(row)
    await audit(
        session, guild_id, actor_id, "config.moderator_role", role_id, {"old": old, "new": role_id}, reason
    )


async def set_language(
    session: AsyncSession,
    guild_id: int,
    language: str | None,
    *,
    actor_id: int,
    reason: str | None = None,
) -> None:
    """Set (or with None clear: Discord's preferred locale) the language of the bot's public messages."""
    if language is not None and language not in LANGUAGES:
        raise InvalidConfig(msg("Unknown language {language}.", language=language))
    row = await config_for_update(session, guild_id)
    old = row.language
    row.language = language
    _touch(row)
    await audit(session, guild_id, actor_id, "config.language", None, {"old": old, "new": language}, reason)


async def set_safety(
    session: AsyncSession,
    guild_id: int,
    level: str,
    *,
    everywhere: bool,
    charge_held: bool,
    actor_id: int,
    reason: str | None = None,
) -> None:
    """Set the safety level results are checked against, whether age-restricted channels are checked
    too, and whether a held result keeps its charge (``videobot.safety``)."""
    if level not in {lv.value for lv in SafetyLevel}:
        raise InvalidConfig(msg("Unknown safety level {level}.", level=level))
    row = await config_for_update(session, guild_id)
    old = {"level": row.safety_level, "everywhere": row.safety_everywhere, "charge_held": row.charge_held}
    row.safety_level, row.safety_everywhere, row.charge_held = level, everywhere, charge_held
    _touch(row)
    new = {"level": level, "everywhere": everywhere, "charge_held": charge_held}
    await audit(session, guild_id, actor_id, "config.safety", None, {"old": old, "new": new}, reason)


async def set_review_channel(
    session: AsyncSession,
    guild_id: int,
    channel_id: int | None,
    *,
    actor_id: int,
    reason: str | None = None,
) -> None:
    """Set (or with None clear) the channel where held results wait for a moderator's decision."""
    row = await config_for_update(session, guild_id)
    old = row.review_channel_id
    row.review_channel_id = channel_id
    _touch(row)
    await audit(
        session,
        guild_id,
        actor_id,
        "config.review_channel",
        channel_id,
        {"old": old, "new": channel_id},
        reason,
    )


async def set_enhance(
    session: AsyncSession,
    guild_id: int,
    enhance: bool,
    *,
    actor_id: int,
    reason: str | None = None,
) -> None:
    """Set whether members' prompts are enhanced by default (a member's ``/video enhance:`` wins)."""
    row = await config_for_update(session, guild_id)
    old = bool(row.enhance)
    row.enhance = enhance
    _touch(row)
    await audit(session, guild_id, actor_id, "config.enhance", None, {"old": old, "new": enhance}, reason)


async def remember_upload_limit(session: AsyncSession, guild_id: int, limit_bytes: int) -> None:
    """Record the upload limit Discord reported in an interaction (for posts with no interaction)."""
    if limit_bytes <= 0:
        return
    current = (
        await session.execute(select(GuildConfig.upload_limit_bytes).where(GuildConfig.guild_id == guild_id))
    ).first()
    if current is not None and current[0] == limit_bytes:
        return  # the usual case: nothing to write
    row = await config_for_update(session, guild_id)
    row.upload_limit_bytes = int(limit_bytes)
    _touch(row)
