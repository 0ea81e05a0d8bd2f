"""The forms behind Remix and Extend, and reading their submissions.

A form is shown to the member who clicked, in their language (``locale``: ``member_locale``).

A form's custom id carries the job id (``videobot:remix-form:<job_id>``), and its submission is
handled from the raw interaction (``GenerateCog.on_interaction``), not by a ``Modal`` object kept in
memory: a form opened before a restart is still answered after it. The ``Modal`` is built only to
render the form, and stopped before it is sent so discord.py never stores it.
"""

from __future__ import annotations

import re
from typing import Any

import discord

from videobot.presets import MAX_PROMPT_CHARS

from . import _format

FORM_ID = re.compile(r"videobot:(?P<kind>remix|extend)-form:(?P<job_id>[0-9]{1,20})")
#: Discord's limit for a text input's value.
_INPUT_MAX = 4000


def form_id(kind: str, job_id: int) -> str:
    return f"videobot:{kind}-form:{job_id}"


def _prefill(text: str) -> str:
    return text[: min(MAX_PROMPT_CHARS, _INPUT_MAX)]


def _form(locale: str, kind: str, job_id: int, title: str) -> discord.ui.Modal:
    modal = discord.ui.Modal(
        title=_format.label(locale, title, _format.MAX_TITLE), custom_id=form_id(kind, job_id), timeout=None
    )
    return modal


def _label(locale: str, text: str) -> str:
    return _format.label(locale, text, _format.MAX_TITLE)


def _placeholder(locale: str, text: str) -> str:
    return _format.label(locale, text, _format.MAX_PLACEHOLDER)


def _prompt_input(locale: str, label: str, prompt: str) -> discord.ui.TextInput:
    """The required ``prompt`` input both forms open with, prefilled with the source's prompt."""
    return discord.ui.TextInput(
        label=_label(locale, label),
        custom_id="prompt",
        style=discord.TextStyle.paragraph,
        default=_prefill(prompt),
        placeholder=_placeholder(locale, _format.PROMPT_PLACEHOLDER),
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        required=True,
    )


def remix_form(locale: str, job_id: int, prompt: str, negative_prompt: str) -> discord.ui.Modal:
    """Prompt and negative prompt, prefilled with the source's."""
    modal = _form(locale, "remix", job_id, _format.REMIX_TITLE)
    modal.add_item(_prompt_input(locale, _format.PROMPT_LABEL, prompt))
    modal.add_item(
        discord.ui.TextInput(
            label=_label(locale, _format.NEGATIVE_LABEL),
            custom_id="negative_prompt",
            style=discord.TextStyle.paragraph,
            default=_prefill(negative_prompt) or None,
            placeholder=_placeholder(locale, _format.NEGATIVE_PLACEHOLDER),
            max_length=MAX_PROMPT_CHARS,
            required=False,
        )
    )
    modal.stop()  # rendered only: the submission is handled from the raw interaction
    return modal


def extend_form(locale: str, job_id: int, prompt: str) -> discord.ui.Modal:
    """What happens next, prefilled with the source's prompt."""
    modal = _form(locale, "extend", job_id, _format.EXTEND_TITLE)
    modal.add_item(_prompt_input(locale, _format.EXTEND_PROMPT_LABEL, prompt))
    modal.stop()
    return modal


def submitted_values(data: dict[str, Any] | None) -> dict[str, str]:
    """Text input values of a modal submission by custom id (action rows, or labels since 2025)."""
    values: dict[str, str] = {}

    def take(component: dict[str, Any]) -> None:
        if component.get("type") == 4 and "custom_id" in component:
            values[str(component["custom_id"])] = str(component.get("value") or "")

    for top in (data or {}).get("components") or []:
        if top.get("type") == 18 and isinstance(top.get("component"), dict):
            take(top["component"])
        for child in top.get("components") or []:
            take(child)
    return values
