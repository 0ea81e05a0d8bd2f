"""The forms behind Remix, Extend and Apps → Animate, and reading their submissions.

A form is shown to the member who clicked, in their language (``locale``: ``member_locale``).

A form's custom id carries what its submission needs: the job id (``videobot:remix-form:<job_id>``),
or for Animate the message and the attachment (``videobot:animate-form:<message id>:<attachment
id>``). Its submission is handled from the raw interaction (``bot.cogs.generate._forms``), not by a
``Modal`` object kept in memory: a form opened before a restart is still answered after it. The
``Modal`` is built only to render the form, and stopped before it is sent so discord.py never stores
it. Animate's member and channel are the submission's own (Discord lets only the member it was shown
to submit a form, in the channel it was opened in). The picture's URL is not kept: CDN URLs are signed
and expire, so the submission reads the message again from Discord (a fresh URL; a deleted message
is refused politely) and downloads the picture after that interaction is acknowledged.
"""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.ui import texts
from videobot.presets import MAX_PROMPT_CHARS

FORM_ID = re.compile(r"videobot:(?P<kind>remix|extend)-form:(?P<job_id>[0-9]{1,20})")
ANIMATE_FORM_ID = re.compile(
    r"videobot:animate-form:(?P<message_id>[0-9]{1,20}):(?P<attachment_id>[0-9]{1,20})"
)
PROMPT_ID = "prompt"
#: Discord's limit for a text input's value.
_INPUT_MAX = 4000


def form_id(kind: str, job_id: int) -> str:
    return f"videobot:{kind}-form:{job_id}"


def _prefill(value: str) -> str:
    return value[: min(MAX_PROMPT_CHARS, _INPUT_MAX)]


def _form(locale: str, kind: str, job_id: int, title: str) -> discord.ui.Modal:
    modal = discord.ui.Modal(
        title=texts.label(locale, title, texts.MAX_TITLE), custom_id=form_id(kind, job_id), timeout=None
    )
    return modal


def _label(locale: str, words: str) -> str:
    return texts.label(locale, words, texts.MAX_TITLE)


def _placeholder(locale: str, words: str) -> str:
    return texts.label(locale, words, texts.MAX_PLACEHOLDER)


def _prompt_input(locale: str, label: str, prompt: str) -> discord.ui.TextInput:
    """The required ``prompt`` input both forms open with, prefilled with the source's prompt."""
    return discord.ui.TextInput(
        label=_label(locale, label),
        custom_id=PROMPT_ID,
        style=discord.TextStyle.paragraph,
        default=_prefill(prompt),
        placeholder=_placeholder(locale, texts.PROMPT_PLACEHOLDER),
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        required=True,
    )


def remix_form(locale: str, job_id: int, prompt: str, negative_prompt: str) -> discord.ui.Modal:
    """Prompt and negative prompt, prefilled with the source's."""
    modal = _form(locale, "remix", job_id, texts.REMIX_TITLE)
    modal.add_item(_prompt_input(locale, texts.PROMPT_LABEL, prompt))
    modal.add_item(
        discord.ui.TextInput(
            label=_label(locale, texts.NEGATIVE_LABEL),
            custom_id="negative_prompt",
            style=discord.TextStyle.paragraph,
            default=_prefill(negative_prompt) or None,
            placeholder=_placeholder(locale, texts.NEGATIVE_PLACEHOLDER),
            max_length=MAX_PROMPT_CHARS,
            required=False,
        )
    )
    modal.stop()  # rendered only: the submission is handled from the raw interaction
    return modal


def extend_form(locale: str, job_id: int, prompt: str) -> discord.ui.Modal:
    """What happens next, prefilled with the source's prompt."""
    modal = _form(locale, "extend", job_id, texts.EXTEND_TITLE)
    modal.add_item(_prompt_input(locale, texts.EXTEND_PROMPT_LABEL, prompt))
    modal.stop()
    return modal


def animate_form_id(message_id: int, attachment_id: int) -> str:
    """At most 22 + 20 + 1 + 20 = 63 characters (Discord allows 100)."""
    return f"videobot:animate-form:{message_id}:{attachment_id}"


def animate_form(locale: str, message_id: int, attachment_id: int) -> discord.ui.Modal:
    """ "Animate this picture": what should move (empty: natural motion), in ``locale``
    (``member_locale`` of the member who opened it)."""
    modal = discord.ui.Modal(
        title=texts.label(locale, texts.ANIMATE_TITLE, texts.MAX_TITLE),
        custom_id=animate_form_id(message_id, attachment_id),
        timeout=None,
    )
    modal.add_item(
        discord.ui.TextInput(
            label=texts.label(locale, texts.ANIMATE_LABEL, texts.MAX_TITLE),
            custom_id=PROMPT_ID,
            style=discord.TextStyle.paragraph,
            placeholder=texts.label(locale, texts.ANIMATE_PLACEHOLDER, texts.MAX_PLACEHOLDER),
            required=False,
            max_length=MAX_PROMPT_CHARS,
        )
    )
    modal.stop()  # rendered only: the submission is handled from the raw interaction
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
