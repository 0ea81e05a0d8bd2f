"""Every text a member or moderator sees, in their language: gettext catalogs read with Babel.

The source language is English and the English text is the message id (gettext's convention), so a
message missing from a catalog falls back to the English sentence, never to a key name. Catalogs are
``videobot/locales/<lang>/LC_MESSAGES/videobot.po``, read and compiled in memory at first use (no
``.mo`` files that could go stale); ``videobot/locales/videobot.pot`` is the template extracted from
the code (``tests/core/test_i18n.py`` fails when it is out of date, or when a catalog misses a
message or changes its placeholders).

Placeholders are ``str.format`` fields: ``t(locale, "Cancelled {job}.", job=...)``. Plurals use the
catalog's CLDR plural rule: ``tn(locale, "{n} video", "{n} videos", n)``. A message that must be
rendered later, in a locale not known yet (a domain error raised in the core, shown by the bot in
the member's language), is a ``Msg``: ``msg("...", **params)`` / ``nmsg(...)``; ``str(m)`` is English.

Locales are Discord's (``it``, ``es-ES``, ``es-419``, ``pt-BR``, ``ja``, ``en-GB`` …) or plain
language tags; ``language()`` maps them onto the catalogs we ship (``es-419`` → ``es``), anything
else to English. Numbers and durations are formatted with Babel in the exact locale (``en-GB`` and
``en-US`` share a catalog but not their number formats). This module never imports Discord.
"""

from __future__ import annotations

import functools
import gettext
import io
import logging
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.lists import format_list
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.units import format_unit

log = logging.getLogger(__name__)

LOCALE_DIR = Path(__file__).parent / "locales"
DOMAIN = "videobot"
SOURCE = "en"

#: The catalogs shipped, by their gettext code, with the language's own name (for /videoconfig language).
LANGUAGES: dict[str, str] = {
    "en": "English",
    "it": "Italiano",
    "es": "Español",
    "fr": "Français",
    "de": "Deutsch",
    "pt_BR": "Português do Brasil",
    "ja": "日本語",
}

#: Discord's locale codes served by each catalog (Discord's list: discord.Locale).
DISCORD_LOCALES: dict[str, tuple[str, ...]] = {
    "en": ("en-US", "en-GB"),
    "it": ("it",),
    "es": ("es-ES", "es-419"),
    "fr": ("fr",),
    "de": ("de",),
    "pt_BR": ("pt-BR",),
    "ja": ("ja",),
}

#: Language prefixes whose only catalog is a regional one.
_PREFIX_ONLY = {"pt": "pt_BR"}


def _tag(locale: object) -> str:
    """A locale as a plain ``xx-YY`` tag (accepts ``discord.Locale``, whose ``value`` is the tag)."""
    value = getattr(locale, "value", locale)
    return str(value or "").strip().replace("_", "-")


def language(locale: object) -> str:
    """The catalog that serves ``locale``: exact (``pt-BR``), else by language (``es-419`` → ``es``), else English."""
    tag = _tag(locale)
    if not tag:
        return SOURCE
    lang, _, region = tag.partition("-")
    lang = lang.lower()
    exact = f"{lang}_{region.upper()}" if region else lang
    if exact in LANGUAGES:
        return exact
    if lang in LANGUAGES:
        return lang
    return _PREFIX_ONLY.get(lang, SOURCE)


@functools.lru_cache(maxsize=64)
def babel_locale(locale: object) -> Locale:
    """The Babel locale for formatting numbers and durations: the exact one when Babel knows it."""
    tag, lang = _tag(locale), language(locale)
    # Formats follow the messages: a Korean client reading the English fallback gets English formats.
    exact = tag if tag.lower().split("-")[0] == lang.split("_")[0] else lang
    for candidate in (exact, lang):
        try:
            return Locale.parse(candidate, sep="-" if "-" in candidate else "_")
        except (ValueError, UnknownLocaleError):
            continue
    return Locale.parse(SOURCE)


# ---------------------------------------------------------------------------------------- catalogs
def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


#: The catalog context of slash-command option names (``msgctxt "option name"``).
OPTION_NAME = "option name"


def translations(lang: str) -> gettext.NullTranslations:
    """The catalog for ``lang``, compiled in memory from its ``.po`` (English: no catalog, the ids)."""
    return _load(lang)[0]


@functools.cache
def _load(lang: str) -> tuple[gettext.NullTranslations, frozenset[str]]:
    """(the compiled catalog, the message ids it translates)."""
    if lang == SOURCE or lang not in LANGUAGES:
        return gettext.NullTranslations(), frozenset()
    path = po_path(lang)
    try:
        with path.open("rb") as f:
            catalog = read_po(f, locale=lang, domain=DOMAIN)
    except OSError as exc:  # a broken install: English is better than no answer
        log.error("cannot read the %s catalog %s (%s); answering in English", lang, path, exc)
        return gettext.NullTranslations(), frozenset()
    known = frozenset(
        _key(m)
        for m in catalog
        if m.id and not m.fuzzy and (m.string if isinstance(m.string, str) else all(m.string))
    )
    # Untranslated entries leave the compiled catalog: Babel would fill them with the English
    # singular, the wrong form for a plural in a language with one form (Japanese).
    for m in list(catalog):
        if m.id and _key(m) not in known:
            catalog.delete(m.id, context=m.context)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)  # fuzzy (unchecked) entries fall back to English
    buf.seek(0)
    log.debug("loaded the %s catalog (%d messages)", lang, len(known))
    return gettext.GNUTranslations(buf), known


def _key(message: Any) -> str:
    """How ``_load`` names a message: its id (the singular's), after its context if it has one."""
    msgid = message.id if isinstance(message.id, str) else message.id[0]
    return f"{message.context}\x04{msgid}" if message.context else msgid


def lookup(locale: object, msgid: str, context: str | None = None) -> str | None:
    """The catalog's own translation of ``msgid`` (which may read like the English), or None.

    ``context`` tells apart a message that is not a sentence, e.g. ``OPTION_NAME`` for an option's
    name (``prompt``), which Discord shows members in their language."""
    lang = language(locale)
    key = f"{context}\x04{msgid}" if context else msgid
    if lang == SOURCE or key not in _load(lang)[1]:
        return None
    if context:
        return translations(lang).pgettext(context, msgid)
    return translations(lang).gettext(msgid)


# ---------------------------------------------------------------------------------------- values
@dataclass(frozen=True)
class Number:
    """A placeholder value shown as a number in the reader's locale (``1,234`` / ``1.234``)."""

    value: float
    #: Digits after the decimal sign, always shown (``4.0 s``); None: as many as the value has.
    decimals: int | None = None

    def render(self, locale: object) -> str:
        return format_number(locale, self.value, decimals=self.decimals)


@dataclass(frozen=True)
class Duration:
    """A placeholder value shown as a duration in the reader's locale (``3 h 20 min``)."""

    seconds: float

    def render(self, locale: object) -> str:
        return format_duration(locale, self.seconds)


@dataclass(frozen=True)
class Msg:
    """A message rendered later, in the reader's locale; ``str()`` is the English text (for logs)."""

    msgid: str
    params: Mapping[str, Any] = field(default_factory=dict)
    plural: str | None = None
    n: int | None = None

    def render(self, locale: object) -> str:
        if self.plural is not None and self.n is not None:
            return tn(locale, self.msgid, self.plural, self.n, **self.params)
        return t(locale, self.msgid, **self.params)

    def __str__(self) -> str:
        return self.render(SOURCE)


@dataclass(frozen=True)
class Joined:
    """Sentences (messages or text) shown one after the other, each rendered in the reader's locale."""

    parts: tuple[Any, ...]
    sep: str = " "

    def render(self, locale: object) -> str:
        return self.sep.join(value_text(locale, p) for p in self.parts if p is not None and p != "")

    def __str__(self) -> str:
        return self.render(SOURCE)


def join(*parts: Any, sep: str = " ") -> Joined:
    """Several sentences as one message (None and empty parts are left out)."""
    return Joined(parts, sep)


def msg(msgid: str, /, **params: Any) -> Msg:
    """A translatable message with its placeholder values, rendered when the reader is known."""
    return Msg(msgid, params)


def nmsg(singular: str, plural: str, n: int, /, **params: Any) -> Msg:
    """``msg`` with a plural: ``n`` picks the form and is also the ``{n}`` placeholder."""
    return Msg(singular, params, plural, n)


def N_(msgid: str) -> str:  # noqa: N802 - gettext's name for "extract, translate later"
    """Mark a string for the catalog without translating it here (constants, tables)."""
    return msgid


def value_text(locale: object, value: Any) -> str:
    """A placeholder value as text in ``locale``: messages and wrappers render, the rest is ``str``."""
    if isinstance(value, Msg | Joined | Number | Duration | _Unstopped):
        return value.render(locale)
    return str(value)


def _format(locale: object, template: str, fallback: str, params: Mapping[str, Any]) -> str:
    values = {k: value_text(locale, v) for k, v in params.items()}
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        # A translation whose placeholders are broken (the catalog test catches these): English.
        log.error("translation of %r is broken in %s; using English", fallback, language(locale))
        return fallback.format(**values)


def t(locale: object, msgid: str, /, **params: Any) -> str:
    """``msgid`` (English) in ``locale``'s language with its placeholders filled."""
    lang = language(locale)
    text = msgid if lang == SOURCE else translations(lang).gettext(msgid)
    return _format(locale, text, msgid, params)


def tn(locale: object, singular: str, plural: str, n: int, /, **params: Any) -> str:
    """A plural message: the form for ``n`` in ``locale``'s language; ``{n}`` is ``n`` as a local number."""
    lang = language(locale)
    if lang == SOURCE:
        text = singular if n == 1 else plural
    else:
        text = translations(lang).ngettext(singular, plural, n)
    values = {"n": Number(n), **params}
    return _format(locale, text, singular if n == 1 else plural, values)


#: Anything ``render`` takes: a message to translate, sentences of them, or final text.
Text = str | Msg | Joined


def render(locale: object, text: Text) -> str:
    """A message in ``locale``, or an already-final string as it is."""
    return text if isinstance(text, str) else text.render(locale)


def placeholders(text: str) -> set[str]:
    """The ``{name}`` fields of a message (for the catalog checks)."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


# ---------------------------------------------------------------------------------------- stored texts
def recognize(text: str) -> Text:
    """The message an English text was rendered from, with its values, or the text itself if unknown.

    A worker stores why a job failed as English text (``jobs.error_message``: logs and old rows read
    it as it is); the bot shows it in the server's language by finding the catalog message it came
    from. Each message of the template is a pattern (its words exact, each placeholder any text);
    the one with the most words that matches the whole text wins. A text made of several sentences
    is recognised sentence by sentence, and a value that is itself a catalog message (a reason in
    parentheses) is translated too. Other values come back as the English text showed them (a
    grouped English number, ``1,234.5``, is a ``Number`` again).
    """
    found = _recognize(text.strip(), 2)
    return text if found is None else found


def _recognize(text: str, depth: int) -> Msg | Joined | None:
    if not text:
        return None
    whole = _whole(text, depth)
    if whole is not None:
        return whole
    # Sentences one after the other (``join(...)``): the first one, then the rest.
    for i in range(1, len(text) - 1):
        if text[i] == " " and text[i - 1] in ".!?":
            first = _whole(text[:i], depth)
            if first is None:
                continue
            rest = _recognize(text[i + 1 :], depth)
            if rest is not None:
                return Joined((first, *(rest.parts if isinstance(rest, Joined) else (rest,))))
    return None


def _whole(text: str, depth: int) -> Msg | None:
    for pattern, singular, plural in _patterns():
        match = pattern.fullmatch(text)
        if match is None:
            continue
        values: dict[str, Any] = {k: _value(v, depth) for k, v in match.groupdict().items()}
        if plural is not None and "n" in values:
            try:
                n = int(str(match.group("n")).replace(",", ""))
            except ValueError:
                continue
            values.pop("n")
            return Msg(singular, values, plural, n)
        return Msg(singular, values)
    return None


_ENGLISH_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _value(text: str, depth: int) -> Any:
    if _ENGLISH_NUMBER.fullmatch(text):
        return Number(float(text.replace(",", "")) if "." in text else int(text.replace(",", "")))
    if depth > 1 and " " in text:
        # A message inside a message: a reason, with or without the full stop it was quoted without.
        for candidate in (text, text + "."):
            inner = _whole(candidate, depth - 1)
            if inner is not None:
                return inner if candidate == text else _Unstopped(inner)
    return text


@dataclass(frozen=True)
class _Unstopped:
    """A recognised message quoted without its closing full stop (``(not enough GPU memory)``)."""

    inner: Msg

    def render(self, locale: object) -> str:
        return self.inner.render(locale).rstrip(".。")


#: A message with fewer literal characters than this is too vague to recognise a text by.
_MIN_LITERAL = 12


@functools.cache
def _patterns() -> list[tuple[re.Pattern[str], str, str | None]]:
    """(pattern, msgid, plural msgid) for every message of the template, most literal text first."""
    try:
        with (LOCALE_DIR / f"{DOMAIN}.pot").open("rb") as f:
            template = read_po(f, domain=DOMAIN)
    except OSError as exc:
        log.error("cannot read the catalog template (%s); stored texts stay in English", exc)
        return []
    found: list[tuple[int, re.Pattern[str], str, str | None]] = []
    for message in template:
        if not message.id:
            continue
        ids = (message.id,) if isinstance(message.id, str) else tuple(message.id)
        singular, plural = ids[0], (ids[1] if len(ids) > 1 else None)
        for form in ids:
            compiled = _pattern(form)
            if compiled is not None:
                found.append((compiled[1], compiled[0], singular, plural))
    found.sort(key=lambda item: -item[0])
    log.debug("loaded %d recognition patterns", len(found))
    return [(pattern, singular, plural) for _, pattern, singular, plural in found]


def _pattern(msgid: str) -> tuple[re.Pattern[str], int] | None:
    parts: list[str] = []
    seen: set[str] = set()
    literal = 0
    for text, name, _spec, _conv in string.Formatter().parse(msgid):
        parts.append(re.escape(text))
        literal += len(text.strip())
        if name is None:
            continue
        if not name.isidentifier():
            return None
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
        seen.add(name)
    if literal < _MIN_LITERAL:
        return None
    return re.compile("".join(parts), re.DOTALL), literal


def preload() -> int:
    """Load every catalog, the recognition patterns and each language's number and unit formats now
    (~0.1-0.3 s of CPU: at start-up, not inside a member's first command); returns how many
    recognition patterns there are."""
    for lang in LANGUAGES:
        _load(lang)
        format_duration(lang, 3725)  # Babel reads a locale's data at its first use
        format_number(lang, 1234.5)
    return len(_patterns())


# ---------------------------------------------------------------------------------------- formats
def format_number(locale: object, value: float, *, decimals: int | None = None) -> str:
    """``value`` with the locale's digit grouping and decimal sign (``decimals``: exactly that many)."""
    if decimals is None:
        return format_decimal(value, locale=babel_locale(locale))
    pattern = "#,##0" + ("." + "0" * decimals if decimals > 0 else "")
    return format_decimal(round(value, decimals), format=pattern, locale=babel_locale(locale))


def format_duration(locale: object, seconds: float, *, parts: int = 2) -> str:
    """A duration in the locale's short units, largest first: ``3 h 20 min``, ``2 days 4 h``, ``45 s``.

    At most ``parts`` units; the smallest one shown is rounded, never the whole thing to zero.
    """
    loc = babel_locale(locale)
    rest = max(0, round(seconds))
    units = [i for i, (_, size) in enumerate(_UNITS) if rest >= size] or [len(_UNITS) - 1]
    first = units[0]
    shown: list[str] = []
    for unit, size in _UNITS[first : first + parts]:
        last = len(shown) == parts - 1 or size == 1
        count = round(rest / size) if last else rest // size
        rest -= count * size
        if count or not shown:
            shown.append(format_unit(count, unit, length="short", locale=loc))
    return format_list(shown, style="unit-narrow", locale=loc)


_UNITS = (("duration-day", 86400), ("duration-hour", 3600), ("duration-minute", 60), ("duration-second", 1))


def discord_timestamp(unix: float, style: str = "R") -> str:
    """A Discord timestamp (``<t:…:R>``): each client shows it in its own language and time zone."""
    return f"<t:{int(unix)}:{style}>"
