"""Catalog upkeep: find every translatable text in the code and bring the ``.po`` files up to date.

``.venv/bin/python -m bot.catalogs`` rewrites ``videobot/locales/videobot.pot`` and merges it into each
language's ``.po`` (new messages arrive untranslated, changed ones fuzzy: both show in English until
a translator fills them in). ``tests/core/test_i18n.py`` fails while the template is out of date or a
catalog lacks a message, so run this after adding or changing a text, then translate.

Texts come from two places:

* calls in the code, found by Babel's extractor: ``t(locale, "…")``, ``tn(locale, "…", "…", n)``,
  ``msg("…")``, ``nmsg("…", "…", n)`` and ``N_("…")`` (a constant translated later);
* the slash commands' descriptions, option descriptions and choice names, read from the command
  tree the cogs declare (what ``bot.i18n.CatalogTranslator`` will be asked for), and the options'
  names, with the context ``option name`` (lower case, no spaces, at most 32 characters: Discord's
  rule for names).
"""

from __future__ import annotations

import importlib
import inspect
import io
import sys
from collections.abc import Iterator
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po
from discord import app_commands
from discord.ext import commands

from videobot import i18n

ROOT = Path(__file__).resolve().parent.parent
#: Where messages are looked for. generator/'s failure texts are stored in English and shown
#: translated (``videobot.i18n.recognize`` finds them in the template).
SOURCE_DIRS = ("bot", "videobot", "generator")
KEYWORDS = {"t": (2,), "tn": (2, 3), "msg": (1,), "nmsg": (1, 2), "N_": (1,)}
POT_PATH = i18n.LOCALE_DIR / f"{i18n.DOMAIN}.pot"
#: discord.py's stand-in for an option without a description (not ours to translate).
NO_DESCRIPTION = "…"


def _code_messages() -> Iterator[tuple[str | tuple[str, str], str]]:
    """(message, "file:line") for every keyword call in the code."""
    for folder in SOURCE_DIRS:
        base = ROOT / folder
        for filename, lineno, message, _comments, _context in extract_from_dir(
            base,
            method_map=[("**.py", "python")],
            keywords=KEYWORDS,
            comment_tags=(),
            strip_comment_tags=True,
        ):
            yield message, f"{folder}/{filename}:{lineno}"


def cog_classes() -> list[type[commands.Cog]]:
    """The cogs of every extension the bot loads."""
    from bot.app import CORE_EXTENSIONS

    found: list[type[commands.Cog]] = []
    for name in CORE_EXTENSIONS:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, commands.Cog) and obj not in found:
                found.append(obj)
    return found


def command_strings() -> Iterator[tuple[str, str]]:
    """(text, where) for each description and choice name the command tree declares."""
    for text, where, context in command_texts():
        if context is None:
            yield text, where


def command_texts() -> Iterator[tuple[str, str, str | None]]:
    """(text, where, context) for each description, choice name and option name of the command tree."""

    def walk(
        cmd: app_commands.Command | app_commands.Group, path: str
    ) -> Iterator[tuple[str, str, str | None]]:
        here = f"/{path}{cmd.name}"
        yield cmd.description, f"{here} (description)", None
        if isinstance(cmd, app_commands.Group):
            for sub in cmd.commands:
                yield from walk(sub, f"{path}{cmd.name} ")
            return
        for param in cmd.parameters:
            yield param.name, f"{here} {param.name} (option name)", i18n.OPTION_NAME
            if param.description and param.description != NO_DESCRIPTION:
                yield param.description, f"{here} {param.name} (option)", None
            for choice in param.choices:
                yield choice.name, f"{here} {param.name} (choice)", None

    for cls in cog_classes():
        for cmd in cls.__cog_app_commands__:
            if isinstance(cmd, app_commands.Command | app_commands.Group):
                yield from walk(cmd, "")


def template() -> Catalog:
    """The catalog template: every message the code and the commands use, English only."""
    pot = Catalog(project="videobot", domain=i18n.DOMAIN, fuzzy=False)
    for message, where in _code_messages():
        msgid = message if isinstance(message, str) else tuple(message)
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        file, _, line = where.rpartition(":")
        existing = pot.get(key)
        if existing is not None:
            existing.locations.append((file, int(line)))
        else:
            pot.add(msgid, locations=[(file, int(line))], flags=("python-brace-format",))
    for text, where, context in command_texts():
        existing = pot.get(text, context=context)
        if existing is not None:
            if where not in existing.auto_comments:
                existing.auto_comments.append(where)
        else:
            pot.add(text, auto_comments=[where], context=context)
    return pot


def _write(catalog: Catalog, path: Path) -> bool:
    """Write a catalog if its text changed; True if it did."""
    buf = io.BytesIO()
    write_po(buf, catalog, width=100, omit_header=False, sort_output=False, no_location=False)
    new = _strip_dates(buf.getvalue())
    old = _strip_dates(path.read_bytes()) if path.exists() else None
    if new == old:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return True


def _strip_dates(data: bytes) -> bytes:
    """The file without its creation/revision dates (which change on every write)."""
    lines = data.splitlines()
    return b"\n".join(li for li in lines if not li.startswith((b'"POT-Creation-Date', b'"PO-Revision-Date')))


def update() -> list[str]:
    """Rewrite the template and merge it into every language's catalog; returns the files changed."""
    pot = template()
    changed = [str(POT_PATH.relative_to(ROOT))] if _write(pot, POT_PATH) else []
    for lang in i18n.LANGUAGES:
        if lang == i18n.SOURCE:
            continue
        path = i18n.po_path(lang)
        if path.exists():
            with path.open("rb") as f:
                catalog = read_po(f, locale=lang, domain=i18n.DOMAIN)
        else:
            catalog = Catalog(locale=lang, domain=i18n.DOMAIN, project="videobot")
        catalog.update(pot, no_fuzzy_matching=True)
        catalog.obsolete.clear()  # removed texts leave the catalog (git keeps their history)
        if _write(catalog, path):
            changed.append(str(path.relative_to(ROOT)))
    return changed


def main() -> int:
    for path in update():
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
