"""What every request to make a video goes through, whatever started it (``/video``, Animate, a
button, a reaction): the channel rules, the request's intake record, the charge and the job, and the
private "Queued as…" answer followed by the public status message. One ``Requests`` per cog.

Acknowledgement design: ``/video`` starts at once (the guild's rules, the request's intake, then the
charge and the job in one transaction; with a picture, its credits are held with the intake and the
picture is fetched before the charge) and gives it ``INLINE_ANSWER_SECONDS``. Done by then, the
private "Queued as job #N (#k in the queue)" note, or the refusal, is the first response itself
(ephemeral: one request, no "thinking…"). Not done (a slow database, a burst), it defers
(``ephemeral=True, thinking=True``) once the intake is recorded (``RECORD_WAIT_SECONDS`` later at
most; with a picture, whose fetching nothing bounds, as soon as it is recorded), well inside
Discord's 3 s, and edits the note or the refusal in when it is ready: a bot killed
after the defer leaves the intake, which the next bot answers (``_intakes``). A deferred
response keeps the visibility chosen at defer time, so the defer is ephemeral too. The other entry
points (Animate's form, the buttons) defer before anything else:

* refused (quota, too many queued, blocked prompt, channel, bad options): the member sees only the
  reason and what to do; nobody else sees anything;
* accepted: the private note comes first, and only then is the PUBLIC status message (the
  requester, the prompt, the queue position, later the progress bar) handed to the delivery
  service, which posts it in the background (``bot.delivery.status``): a channel allows ~5 messages
  per 5 s, so under a burst the status posts lag by minutes while every member still has their
  answer within a second or two. The answer carries no link to the status message (it does not
  exist yet when the answer is sent; an extra edit per job to add it would cost an interaction
  request per member for little). The result is posted publicly later (interaction follow-up while
  the token is valid, else a channel message).

The alternative, a public defer, would show a public "thinking…" for refusals too, and the only
way to make a refusal private then is deleting the public response and sending an ephemeral
follow-up: a visible flicker for every refused request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import discord

from bot import errors as bot_errors
from bot.checks import channel_is_age_restricted, role_ids
from bot.i18n import member_locale
from bot.ports import CommandHost
from bot.ui import texts
from videobot import guilds, planning
from videobot.health import record_ack
from videobot.images import PreparedImage
from videobot.jobs import SubmitRequest, Submitted
from videobot.models import Intake

from . import _image

log = logging.getLogger(__name__)

#: A form (Remix, Extend, Animate) must be the first response, within Discord's 3 s: the checks before
#: it get this long.
FORM_DEADLINE = 2.0
#: /video answers in its first response when queueing takes less than this; else it defers then
#: (leaving Discord's 3 s for a slow event loop and the defer itself) and edits the answer in later.
INLINE_ANSWER_SECONDS = 1.0
#: Not queued by then: the defer waits at most this much longer for the request's intake to be
#: recorded, so that a bot killed after the "thinking…" leaves what the next one needs to answer it.
RECORD_WAIT_SECONDS = 0.8
#: An interaction token can edit the original response this long after the interaction (Discord).
INTERACTION_TOKEN_SECONDS = 15 * 60


def member_role_ids(member: object) -> list[int]:
    """Role ids as Discord sent them (``Member.roles`` drops roles missing from the cache)."""
    return role_ids(member) if isinstance(member, discord.Member) else []


async def _first_of(task: asyncio.Future[Any], event: asyncio.Event, timeout: float) -> None:
    """Wait until ``task`` is done or ``event`` is set, at most ``timeout`` seconds."""
    if task.done() or event.is_set():
        return
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


class Requests:
    """Checks, intakes, charges and answers shared by every verb (the cog owns one)."""

    def __init__(self, bot: CommandHost) -> None:
        self.bot = bot
        #: guild id → the upload limit this process last wrote (or is writing) for it.
        self._remembered_limits: dict[int, int] = {}
        #: Interactions whose intake this process recorded and has not closed yet.
        self._recorded: set[int] = set()

    async def check_guild(
        self, guild_id: int, channel_id: int, prompt: str, channel: object, upload_limit: int
    ) -> guilds.GuildSettingsView:
        """Channel and blocklist rules (raises the refusal), and remember the guild's upload limit;
        returns the guild's settings."""
        async with self.bot.db.sessionmaker() as s:
            view = await guilds.get_config(s, guild_id)
        parent_id = getattr(channel, "parent_id", None)
        if view.blocklist:
            # The blocklist's regular expressions may take up to the check's time budget: off the loop.
            await asyncio.to_thread(guilds.check_request, view, channel_id, prompt, parent_id=parent_id)
        else:
            guilds.check_request(view, channel_id, prompt, parent_id=parent_id)
        if (
            upload_limit > 0
            and view.upload_limit_bytes != upload_limit
            and self._remembered_limits.get(guild_id) != upload_limit
        ):
            # Once per guild and value: under a burst every request would otherwise write it again.
            self._remembered_limits[guild_id] = upload_limit
            try:
                async with self.bot.db.transaction() as s:
                    await guilds.remember_upload_limit(s, guild_id, upload_limit)
            except BaseException:
                self._remembered_limits.pop(guild_id, None)
                raise
        return view

    async def answer(
        self,
        interaction: discord.Interaction,
        queue: Coroutine[Any, Any, Submitted],
        *,
        recorded: asyncio.Event,
        eager: bool = False,
    ) -> None:
        """Run ``queue`` (checks, intake, charge and job) and answer with its "Queued as…" note or its
        refusal; ``recorded`` is set by ``queue`` once the request's intake is written.

        Within ``INLINE_ANSWER_SECONDS`` the note (or the refusal, by the error handler) is the first
        response itself: one request instead of a defer and an edit, and no "thinking…". A slower
        database (a burst, a lock) gets the deferred "thinking…" once the intake is recorded (or
        ``RECORD_WAIT_SECONDS`` later at most), well inside Discord's 3 s, and the note as an edit when
        it is ready. ``eager`` (a picture to fetch): the "thinking…" comes as soon as the intake is
        recorded. The intake is closed once the member is answered.
        """
        task = asyncio.ensure_future(queue)
        try:
            await self._answer_task(interaction, task, recorded, eager)
        finally:
            await self.close_intake(interaction)

    async def _answer_task(
        self,
        interaction: discord.Interaction,
        task: asyncio.Future[Submitted],
        recorded: asyncio.Event,
        eager: bool,
    ) -> None:
        if eager:
            await _first_of(task, recorded, INLINE_ANSWER_SECONDS + RECORD_WAIT_SECONDS)
        else:
            await asyncio.wait({task}, timeout=INLINE_ANSWER_SECONDS)
            if not task.done() and not recorded.is_set():
                await _first_of(task, recorded, RECORD_WAIT_SECONDS)
        if not task.done():
            try:
                await interaction.response.defer(ephemeral=True, thinking=True)
                record_ack(interaction.created_at)
            except Exception:
                # Too late for Discord (or it failed): queueing still ends, and a queued job's
                # public status message is owed whatever became of the answer.
                self.owe_status(await task)
                raise
            submitted = await task  # a refusal goes to the error handler, which edits the response
            await self.reply_queued(interaction, submitted)
            return
        submitted = task.result()  # a refusal goes to the error handler, as the first response
        try:
            await interaction.response.send_message(
                texts.queued_note(
                    member_locale(interaction), submitted.job, submitted.position, submitted.balance
                ),
                ephemeral=True,
            )
            record_ack(interaction.created_at)
        finally:
            # Then the public status message, also when the answer failed (it is owed either way).
            self.owe_status(submitted)

    def owe_status(self, submitted: Submitted) -> None:
        """Have the job's public status message posted (in the background), unless it exists: after
        every answer, also one that failed, and for a job queued before (idempotent)."""
        if not submitted.job.status_message_id:
            self.bot.delivery.post_status(submitted.job.id, submitted.job.channel_id)

    async def check_before_download(
        self, interaction: discord.Interaction, prompt: str, *, verb: str, cost: int
    ) -> None:
        """The channel, the blocklist and the member's credits, before a picture is fetched for nothing.

        The request's intake is written with ``cost`` credits held (checked and held in one transaction,
        so concurrent requests of one member cannot all pass): the hold counts against their balance and
        queue limit until ``submit(intake=True)`` turns it into the job's charge (which decides the
        amount: a weighted cost may be higher than ``cost``, the least the request can cost) or
        ``close_intake`` releases it. Raises the refusal with nothing held."""
        assert interaction.guild_id is not None and interaction.channel_id is not None
        # In every case, an empty prompt (Animate's default) too: the channel rule comes first.
        await self.check_guild(
            interaction.guild_id,
            interaction.channel_id,
            prompt,
            interaction.channel,
            int(interaction.filesize_limit),
        )
        await self.bot.queue.open_intake(self.intake_of(interaction, verb, reserved=cost))
        self._recorded.add(interaction.id)

    def intake_of(self, interaction: discord.Interaction, verb: str, *, reserved: int = 0) -> Intake:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        return Intake(
            interaction_id=interaction.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            verb=verb,
            locale=member_locale(interaction),
            reserved=reserved,
            role_ids=member_role_ids(interaction.user),
            application_id=interaction.application_id,
            interaction_token=interaction.token,
            expires_at=interaction.created_at.timestamp() + INTERACTION_TOKEN_SECONDS,
        )

    async def record_intake(self, interaction: discord.Interaction, verb: str) -> None:
        """Record a request that holds nothing before it is queued (batched with its neighbours)."""
        await self.bot.intakes.open(self.intake_of(interaction, verb))
        self._recorded.add(interaction.id)

    @contextlib.asynccontextmanager
    async def answered_later(self, interaction: discord.Interaction, verb: str) -> AsyncIterator[None]:
        """Acknowledge a request that is answered by an edit (a click, a form, /cancel) once its intake
        is recorded (``INLINE_ANSWER_SECONDS + RECORD_WAIT_SECONDS`` at most: a slower database gets
        the "thinking…" anyway, inside Discord's 3 s): a bot killed before the answer leaves the intake,
        which the next bot answers (``_intakes``). A refusal raised inside is answered here (the tree's
        handler), before the intake is closed."""
        record = asyncio.ensure_future(self.record_intake(interaction, verb))
        try:
            await asyncio.wait({record}, timeout=INLINE_ANSWER_SECONDS + RECORD_WAIT_SECONDS)
            try:
                await interaction.response.defer(ephemeral=True, thinking=True)
                record_ack(interaction.created_at)
                yield
            except Exception as exc:
                await bot_errors.on_app_command_error(interaction, exc)  # type: ignore[arg-type]
        finally:
            try:
                await record
            except Exception as exc:  # answered all the same; only a restart would miss it
                log.warning(
                    "interaction %s: could not record its intake (%s)", interaction.id, type(exc).__name__
                )
            await self.close_intake(interaction)

    async def close_intake(self, interaction: discord.Interaction) -> None:
        """The member was answered (or is being refused): drop the intake, its token and its hold."""
        if interaction.id not in self._recorded:
            return
        self._recorded.discard(interaction.id)
        try:
            await self.bot.intakes.close(interaction.id)
        except Exception as exc:  # the next start drops it; its hold lapses with the token
            log.warning("interaction %s: could not close its intake (%s)", interaction.id, type(exc).__name__)

    async def read_image(self, attachment: discord.Attachment) -> PreparedImage:
        assert self.bot.http_session is not None
        return await _image.read_image(
            self.bot.http_session, attachment, self.bot.settings, self.bot.image_decoder
        )

    async def submit(
        self,
        interaction: discord.Interaction,
        target: planning.QueueTarget,
        params: dict[str, Any],
        *,
        kind: str,
        picture: PreparedImage | None = None,
        reply_to_message_id: int | None = None,
        intake: bool = False,
        end_picture: PreparedImage | None = None,
    ) -> Submitted:
        """Channel rules, then charge and queue in one transaction (the refusal raised, nothing written);
        ``intake``: the request has one whose hold the charge replaces (``check_before_download``)."""
        assert interaction.guild_id is not None and interaction.channel_id is not None
        guild_id, channel_id = interaction.guild_id, interaction.channel_id
        limit = int(interaction.filesize_limit)
        view = await self.check_guild(guild_id, channel_id, params["prompt"], interaction.channel, limit)
        # A request that did not say whether to enhance its prompt takes the server's default.
        params = planning.with_server_enhance(self.bot.settings, params, view.enhance)
        submitted = await self.bot.submitter.submit(
            SubmitRequest(
                idempotency_key=f"interaction:{interaction.id}",
                guild_id=guild_id,
                channel_id=channel_id,
                user_id=interaction.user.id,
                model=target.name,
                params=params,
                cost=planning.job_cost(self.bot.settings, target, params),
                role_ids=member_role_ids(interaction.user),
                kind=kind,
                upload_limit_bytes=limit,
                application_id=interaction.application_id,
                interaction_token=interaction.token,
                locale=member_locale(interaction)[:16],
                channel_nsfw=channel_is_age_restricted(interaction),
                reply_to_message_id=reply_to_message_id,
                inputs=({planning.IMAGE_INPUT: picture.png} if picture is not None else {})
                | ({planning.END_IMAGE_INPUT: end_picture.png} if end_picture is not None else {}),
                intake_id=interaction.id if intake else None,
            )
        )
        for which, stored in (("first", picture), ("last", end_picture)):
            if stored is not None and submitted.created:
                log.info(
                    "job %s: %s frame from a %s picture, stored as %dx%d PNG (%d bytes)",
                    submitted.job.id,
                    which,
                    stored.source_format,
                    stored.width,
                    stored.height,
                    len(stored.png),
                )
        self.bot.delivery.wake()
        return submitted

    async def reply_queued(
        self, interaction: discord.Interaction, submitted: Submitted, *, first_of: int = 0
    ) -> None:
        """Edit the deferred response into the "Queued as…" note, then have the status message posted
        (``first_of``: see ``texts.queued_note``)."""
        try:
            # Answer first: the member's "Queued as…" never waits for the channel's message budget.
            await interaction.edit_original_response(
                content=texts.queued_note(
                    member_locale(interaction),
                    submitted.job,
                    submitted.position,
                    submitted.balance,
                    first_of=first_of,
                )
            )
        finally:
            # Then the public status message, also when the answer failed (it is owed either way).
            self.owe_status(submitted)
