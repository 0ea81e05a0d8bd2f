"""After a restart: answer the requests the last bot acknowledged ("thinking…") and never answered
(it died between the defer and the answer), while their interaction tokens still work (15 minutes):
"Queued as…" when the job exists, else ``texts.RESTARTED`` (a Cancel or a Delete:
``texts.RESTARTED_UNSURE``). Each request's intake is written before its
slow steps (``_requests``), so every one of them is found here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import discord

from bot.discord_http import TRANSIENT, http_reason
from bot.ports import CommandHost
from bot.ui import texts
from videobot.i18n import t
from videobot.models import Intake

from ._requests import Requests

log = logging.getLogger(__name__)

#: Seconds between tries to answer an open intake after a restart when Discord fails for a while.
INTAKE_RETRIES = (2.0, 10.0, 30.0)
#: Verbs answered by whether their job exists (the others, Cancel and Delete, get ``RESTARTED_UNSURE``).
QUEUEING_VERBS = frozenset({"video", "animate", "rerun", "remix", "extend", "hd"})


class OpenIntakes:
    """Answers the open intakes once, at start (the cog runs it as a task it owns)."""

    def __init__(self, bot: CommandHost, requests: Requests) -> None:
        self.bot = bot
        self.requests = requests

    async def run(self) -> None:
        """At start: answer the requests the last bot acknowledged and never answered (it died), while
        their tokens still work: "queued" when the job exists, else the refusal ``texts.RESTARTED``."""
        try:
            intakes = await self.bot.queue.open_intakes()
        except Exception:
            log.exception("could not read the open intakes")
            return
        for intake in intakes:
            for delay in (*INTAKE_RETRIES, None):
                if intake.expires_at <= time.time() + 5:
                    log.info(
                        "interaction %s: its token expired before it was answered", intake.interaction_id
                    )
                    break
                try:
                    await self._answer_intake(intake)
                    break
                except TRANSIENT as exc:  # Discord or the network: try again while the token works
                    reason = type(exc).__name__
                except discord.HTTPException as exc:  # e.g. never acknowledged, or the answer was deleted
                    reason, delay = http_reason(exc), None
                except Exception as exc:
                    reason, delay = type(exc).__name__, None
                log.warning(
                    "interaction %s: could not answer it after the restart (%s)",
                    intake.interaction_id,
                    reason,
                )
                if delay is None:
                    break
                await asyncio.sleep(delay)
            with contextlib.suppress(Exception):
                await self.bot.queue.close_intake(intake.interaction_id)

    async def _answer_intake(self, intake: Intake) -> None:
        key = f"interaction:{intake.interaction_id}"
        submitted = None
        if intake.verb in QUEUEING_VERBS:
            submitted = await self.bot.queue.job_for_key(key, role_ids=intake.role_ids)
        if submitted is not None:
            answer = texts.queued_note(intake.locale, submitted.job, submitted.position, submitted.balance)
        elif intake.verb in QUEUEING_VERBS:
            answer = t(intake.locale, texts.RESTARTED)
        else:  # a Cancel or a Delete: it may have been done before the bot died
            answer = t(intake.locale, texts.RESTARTED_UNSURE)
        webhook = discord.Webhook.partial(intake.application_id, intake.interaction_token, client=self.bot)  # type: ignore[arg-type]
        await webhook.edit_message(  # type: ignore[arg-type]
            "@original", content=answer, allowed_mentions=discord.AllowedMentions.none()
        )
        if submitted is not None:
            self.requests.owe_status(submitted)
        log.info(
            "interaction %s: answered after the restart (%s)",
            intake.interaction_id,
            f"job {submitted.job.id}" if submitted else "not queued",
        )
