"""No text a member or moderator sees is hard-coded: it goes through the catalogs (``videobot.i18n``).

The checker walks the code's syntax tree and reports English written straight into what reaches
Discord: a literal (or f-string) passed to ``send`` / ``send_message`` / ``edit_original_response`` /
``edit`` / ``followup.send`` (first argument or ``content=``), as a ``title=`` / ``label=`` /
``placeholder=`` of a modal, button or input, or as the message of a domain error
(``raise QuotaExceeded("…")``), and, in bot/, literal text assigned to the names replies are
built in (``text = f"…"``; the core's operator messages for stderr are not member-visible). Wrapped in ``t()`` / ``tn()`` / ``msg()`` / ``nmsg()`` / ``N_()`` it is fine.
Command and option descriptions in decorators are fine too: the command tree's translator
(``bot.i18n.CatalogTranslator``) localizes them, and ``tests/bot/test_i18n_bot.py`` checks it does.

Every file of bot/, videobot/ and generator/ is held to it (the worker's failure texts too: they are
stored in English and shown translated, see ``videobot.i18n.recognize``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import bot.checks  # noqa: F401 - defines NotModeratorFailure (a domain error)
import generator.encode  # noqa: F401 - defines EncodeError
import videobot.guilds  # noqa: F401 - defines InvalidConfig
import videobot.images  # noqa: F401 - defines ImageRejected
from videobot.errors import VideobotError

ROOT = Path(__file__).resolve().parents[2]
CHECKED_DIRS = ("bot", "videobot", "generator")

SENDERS = {"send", "send_message", "edit_original_response", "edit_message", "edit", "reply", "respond"}
UI_KEYWORDS = {"title", "label", "placeholder"}
#: Names a reply is assembled in before it is sent.
TEXT_NAMES = {"text", "content", "message", "notice", "reply", "answer", "whose", "where", "what", "line"}
WORDS = re.compile(r"[A-Za-z]{2,}.*\s.*[A-Za-z]{2,}|^[A-Z][a-z]+")


def _subclasses(cls: type) -> set[str]:
    out = set()
    for sub in cls.__subclasses__():
        out.add(sub.__name__)
        out |= _subclasses(sub)
    return out


#: LeaseLost fences a worker's late writes and is only ever logged.
DOMAIN_ERRORS = (_subclasses(VideobotError) | {"VideobotError"}) - {"LeaseLost"}


def is_text(node: ast.AST | None) -> bool:
    """A string literal or f-string with words in it (not a code, an emoji or a format like ``{}``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(WORDS.search(node.value))
    if isinstance(node, ast.JoinedStr):
        literal = "".join(
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        )
        return bool(WORDS.search(literal))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return is_text(node.left) or is_text(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return is_text(node.func.value)
    if isinstance(node, ast.IfExp):
        return is_text(node.body) or is_text(node.orelse)
    return False


def _name(func: ast.AST) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def findings(path: Path, rel: str | None = None) -> list[str]:
    """``file:line: what`` for each hard-coded member-visible text in one file (``rel``: its repo path)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    rel = rel or path.relative_to(ROOT).as_posix()
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{rel}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if name in SENDERS:
                if node.args and is_text(node.args[0]):
                    report(node, f"literal text sent with .{name}()")
                for kw in node.keywords:
                    if kw.arg == "content" and is_text(kw.value):
                        report(node, f"literal content= in .{name}()")
            for kw in node.keywords:
                if kw.arg in UI_KEYWORDS and is_text(kw.value):
                    report(node, f"literal {kw.arg}= in {name}()")
        elif isinstance(node, ast.ClassDef):
            for kw in node.keywords:
                if kw.arg in UI_KEYWORDS and is_text(kw.value):
                    report(node, f"literal {kw.arg}= on class {node.name}")
        elif isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            if _name(node.exc.func) in DOMAIN_ERRORS and node.exc.args and is_text(node.exc.args[0]):
                report(node, f"literal message in raise {_name(node.exc.func)}()")
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Call):
            if _name(node.value.func) in DOMAIN_ERRORS and node.value.args and is_text(node.value.args[0]):
                report(node, f"literal message in {_name(node.value.func)}()")
        elif isinstance(node, ast.Assign) and rel.startswith("bot/") and is_text(node.value):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in TEXT_NAMES:
                    report(node, f"literal text assigned to {target.id}")
    return found


def files() -> list[pytest.param]:
    return [
        pytest.param(path, id=path.relative_to(ROOT).as_posix())
        for folder in CHECKED_DIRS
        for path in sorted((ROOT / folder).rglob("*.py"))
    ]


@pytest.mark.parametrize("path", files())
def test_no_member_visible_text_is_hard_coded(path: Path) -> None:
    problems = findings(path)
    assert problems == [], "put these texts in the catalogs (videobot.i18n: t/tn/msg/nmsg/N_):\n" + "\n".join(
        problems
    )


def test_the_checker_catches_what_it_should(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    code = """
async def f(interaction, job):
    await interaction.followup.send(f"Cancelled job #{job}. The credit was refunded.", ephemeral=True)
    await interaction.edit_original_response(content="Something went wrong.")
    await interaction.followup.send(t(locale, "Cancelled job #{job}.", job=job))
    await interaction.response.send_message("🔁")
    raise QuotaExceeded("You have used your credits.")
    raise QuotaExceeded(msg("You have used your credits."))
    text = "Only moderators can do this."
    button = discord.ui.Button(label="Make it again")
class Ask(discord.ui.Modal, title="Animate this picture"):
    pass
"""
    sample.write_text(code, encoding="utf-8")
    problems = findings(sample, "bot/sample.py")
    lines = sorted(int(p.split(":")[1]) for p in problems)
    assert lines == [3, 4, 7, 9, 10, 11], problems
