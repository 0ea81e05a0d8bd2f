"""The form Apps → Animate opens: one optional text input (``prompt``), the motion to make.

Like the Remix and Extend forms (``_modals``), nothing of it lives in this process's memory: its custom
id carries what the submission needs (``videobot:animate-form:<message id>:<attachment id>``) and the
submission is handled from the raw interaction (``GenerateCog.on_interaction``), so a form opened
before a restart is answered after it. The member and the channel are the submission's own (Discord
lets only the member it was shown to submit a form, in the channel it was opened in). The picture's
URL is not kept: CDN URLs are signed and expire, so the submission reads the message again from
Discord (a fresh URL; a deleted message is refused politely) and downloads the picture after that
interaction is acknowledged.
"""

from __future__ import annotations

import re

import discord

from videobot.presets import MAX_PROMPT_CHARS

from . import _format

PROMPT_ID = "prompt"
FORM_ID = re.compile(r"videobot:animate-form:(?P<message_id>[0-9]{1,20}):(?P<attachment_id>[0-9]{1,20})")


def form_id(message_id: int, attachment_id: int) -> str:
    """At most 22 + 20 + 1 + 20 = 63 characters (Discord allows 100)."""
    return f"videobot:animate-form:{message_id}:{attachment_id}"


def animate_form(locale: str, message_id: int, attachment_id: int) -> discord.ui.Modal:
    """ "Animate this picture": what should move (empty: natural motion), in ``locale``
    (``member_locale`` of the member who opened it)."""
    modal = discord.ui.Modal(
        title=_format.label(locale, _format.ANIMATE_TITLE, _format.MAX_TITLE),
        custom_id=form_id(message_id, attachment_id),
        timeout=None,
    )
    modal.add_item(
        discord.ui.TextInput(
            label=_format.label(locale, _format.ANIMATE_LABEL, _format.MAX_TITLE),
            custom_id=PROMPT_ID,
            style=discord.TextStyle.paragraph,
            placeholder=_format.label(locale, _format.ANIMATE_PLACEHOLDER, _format.MAX_PLACEHOLDER),
            required=False,
            max_length=MAX_PROMPT_CHARS,
        )
    )
    modal.stop()  # rendered only: the submission is handled from the raw interaction
    return modal
