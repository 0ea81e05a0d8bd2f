"""``/video``, Apps → Animate, the buttons on results (Rerun, Remix, Extend, Delete) and the 🔁 / ❌
reactions: parse, call the services, format the answer.

A picture (``/video image:``, or the message Animate is used on) is downloaded only after the
interaction is acknowledged, and checked and normalised by ``videobot.images`` (``_image.py``); the
image decision (verb, aspect ratio) is ``planning.build_params(..., image=...)``. Animate's first
response must be its form (``_animate.py``), so only quick checks run before it (a supported picture
on the message, its declared size, the channel rule within ``FORM_DEADLINE``); the form's submission
(handled by its custom id, so it survives a restart) is acknowledged like ``/video``, checks the
channel again, reads the message again from Discord for a fresh picture URL, and queues a job of
kind ``animate`` whose status and result reply under the picture.

Buttons (``_buttons.py``, ``_actions.py``, ``_modals.py``): Rerun and Delete defer (ephemeral) at once
like ``/video``. Remix and Extend must answer with their form, and a form can only be the first response, so they read the source job (and check
the member's credits) first, within ``FORM_DEADLINE`` of Discord's 3 s; a database too slow for that
gets a "busy, click again" note instead of a late, failed answer. The form's submission is a new
interaction, handled in ``on_interaction`` by its custom id (so it survives a restart too).

Acknowledgement design: ``/video`` starts at once (the guild's rules, the request's intake, then the
charge and the job in one transaction; with a picture, its credits are held with the intake and the
picture is fetched before the charge) and gives it ``INLINE_ANSWER_SECONDS``. Done by then, the
private "Queued as job #N (#k in the queue)" note, or the refusal, is the first response itself
(ephemeral: one request, no "thinking…"). Not done (a slow database, a burst), it defers
(``ephemeral=True, thinking=True``) once the intake is recorded (``RECORD_WAIT_SECONDS`` later at
most; with a picture, whose fetching nothing bounds, as soon as it is recorded), well inside
Discord's 3 s, and edits the note or the refusal in when it is ready: a bot killed
after the defer leaves the intake, which the next bot answers (``answer_open_intakes``). A deferred
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
import dataclasses
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot import errors as bot_errors
from bot.checks import is_moderator, role_ids
from bot.delivery._http import TRANSIENT, http_reason
from bot.i18n import member_locale
from videobot import guilds, planning
from videobot.errors import NotModerator, VideobotError
from videobot.health import record_ack
from videobot.i18n import N_, msg, t
from videobot.images import ImageRejected, PreparedImage
from videobot.jobs import SubmitRequest, Submitted
from videobot.models import Intake, Job
from videobot.presets import MAX_VIDEOS

from . import _animate, _format, _image, _modals
from ._actions import Asker, CannotDelete, NotThisResult, Posted, ResultActions, asker_from
from ._buttons import DYNAMIC_ITEMS

if TYPE_CHECKING:
    from bot.app import VideoBot

log = logging.getLogger(__name__)

#: The message command (Apps → Animate) that makes a video from a message's picture.
ANIMATE = "Animate"
RERUN_EMOJI = "🔁"
DELETE_EMOJI = "❌"
#: A member reruns a result at most once per this many seconds (counted from their last rerun of it).
RERUN_COOLDOWN_SECONDS = 30
FEEDBACK_SECONDS = 15
#: Remix / Extend must answer with their form within Discord's 3 s: the database gets this long.
FORM_DEADLINE = 2.0
#: /video answers in its first response when queueing takes less than this; else it defers then
#: (leaving Discord's 3 s for a slow event loop and the defer itself) and edits the answer in later.
INLINE_ANSWER_SECONDS = 1.0
#: Not queued by then: the defer waits at most this much longer for the request's intake to be
#: recorded, so that a bot killed after the "thinking…" leaves what the next one needs to answer it.
RECORD_WAIT_SECONDS = 0.8
#: An interaction token can edit the original response this long after the interaction (Discord).
INTERACTION_TOKEN_SECONDS = 15 * 60
#: Seconds between tries to answer an open intake after a restart when Discord fails for a while.
INTAKE_RETRIES = (2.0, 10.0, 30.0)
#: The answer, after a restart, to a request the last bot acknowledged but never queued.
RESTARTED = N_(
    "The bot restarted before your request could be queued. Nothing was charged; please try again."
)


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


class GenerateCog(commands.Cog):
    """/video, and reactions on posted videos."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        #: guild id → the upload limit this process last wrote (or is writing) for it.
        self._remembered_limits: dict[int, int] = {}
        # Context menus cannot be declared inside a cog class: made here, added to the tree on load.
        self.animate_menu = app_commands.ContextMenu(name=ANIMATE, callback=self.animate)
        self.animate_menu.guild_only = True
        self.actions = ResultActions(self)
        # Only the aspect ratios the configured model was trained at are offered. The choices are declared
        # on the class; this cog's own copy of the command gets its own, narrowed parameter.
        ratios = planning.offered_ratios(bot.settings)
        param = self.video._params["aspect_ratio"]
        self.video._params = self.video._params | {
            "aspect_ratio": dataclasses.replace(
                param, choices=[c for c in param.choices if c.value in ratios]
            )
        }
        #: Interactions whose intake this process recorded and has not closed yet.
        self._recorded: set[int] = set()

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.animate_menu)
        # Registered once: every result's buttons ever posted are answered, after any restart.
        self.bot.add_dynamic_items(*DYNAMIC_ITEMS)
        self._intakes_task = asyncio.create_task(self.answer_open_intakes(), name="open-intakes")

    async def cog_unload(self) -> None:
        self._intakes_task.cancel()
        self.bot.tree.remove_command(self.animate_menu.name, type=self.animate_menu.type)
        self.bot.remove_dynamic_items(*DYNAMIC_ITEMS)

    # ------------------------------------------------------------------ /video
    @app_commands.command(name="video", description="Make a short video from a text prompt (and a picture)")
    @app_commands.describe(
        prompt="What the video shows, e.g. a red fox running through fresh snow",
        negative_prompt="What to avoid, e.g. blurry, text, watermark",
        seed="A whole number from 0 to 4294967295 to repeat a result (empty: random)",
        duration="Length in seconds (empty: the model's default)",
        aspect_ratio="Landscape, portrait or square",
        model="The model to use (empty: the server's default)",
        audio="Sound with the video (empty: on when the model makes sound)",
        image="A picture to start from (PNG, JPEG or WebP); the prompt then describes the motion",
        variations="How many takes, each with the next seed, posted together; each costs one video (1-4)",
    )
    @app_commands.choices(
        aspect_ratio=[
            app_commands.Choice(name="16:9 landscape", value="16:9"),
            app_commands.Choice(name="9:16 portrait", value="9:16"),
            app_commands.Choice(name="1:1 square", value="1:1"),
        ]
    )
    @app_commands.guild_only()
    async def video(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 1000],
        negative_prompt: app_commands.Range[str, 1, 1000] | None = None,
        seed: int | None = None,
        duration: float | None = None,
        aspect_ratio: app_commands.Choice[str] | None = None,
        model: str | None = None,
        audio: bool | None = None,
        image: discord.Attachment | None = None,
        variations: app_commands.Range[int, 1, MAX_VIDEOS] | None = None,
    ) -> None:
        settings = self.bot.settings

        def plan(picture: PreparedImage | None) -> tuple[planning.QueueTarget, dict[str, Any]]:
            target = planning.check_model(settings, model)
            planning.check_audio(settings, audio)
            return target, planning.build_params(
                target,
                prompt,
                negative_prompt=negative_prompt,
                seed=seed,
                duration=duration,
                aspect_ratio=aspect_ratio.value if aspect_ratio else None,
                audio=audio,
                image=picture,
                num_videos=variations or 1,
            )

        if image is None:
            # Answered in the first response when the database is quick, else deferred (``_answer``).
            recorded = asyncio.Event()

            async def queue() -> Submitted:
                target, params = plan(None)
                await self._record_intake(interaction, "video")
                recorded.set()
                return await self._submit(interaction, target, params, kind="command")

            await self._answer(interaction, queue(), recorded=recorded)
            return
        # A picture: its request is recorded (its credits held) before the download, whose time nothing
        # bounds; the "thinking…" comes as soon as it is recorded (a refusal before: the first response).
        recorded = asyncio.Event()

        async def queue_picture() -> Submitted:
            planning.check_model(settings, model)
            planning.check_audio(settings, audio)
            planning.check_image(settings)  # before downloading anything
            await self._check_before_download(interaction, prompt, verb="video", cost=variations or 1)
            recorded.set()
            picture = await self._read_image(image)
            target, params = plan(picture)
            return await self._submit(
                interaction, target, params, kind="command", picture=picture, intake=True
            )

        await self._answer(interaction, queue_picture(), recorded=recorded, eager=True)

    async def _answer(
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
            await self._close_intake(interaction)

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
                self._owe_status(await task)
                raise
            submitted = await task  # a refusal goes to the error handler, which edits the response
            await self._reply_queued(interaction, submitted)
            return
        submitted = task.result()  # a refusal goes to the error handler, as the first response
        try:
            await interaction.response.send_message(
                _format.queued_note(
                    member_locale(interaction), submitted.job, submitted.position, submitted.balance
                ),
                ephemeral=True,
            )
            record_ack(interaction.created_at)
        finally:
            # Then the public status message, also when the answer failed (it is owed either way).
            self._owe_status(submitted)

    def _owe_status(self, submitted: Submitted) -> None:
        """Have the job's public status message posted (in the background), unless it exists."""
        if not submitted.job.status_message_id:
            self.bot.delivery.post_status(submitted.job.id, submitted.job.channel_id)

    async def _check_before_download(
        self, interaction: discord.Interaction, prompt: str, *, verb: str, cost: int
    ) -> None:
        """The channel, the blocklist and the member's credits, before a picture is fetched for nothing.

        The request's intake is written with ``cost`` credits held (checked and held in one transaction,
        so concurrent requests of one member cannot all pass): the hold counts against their balance and
        queue limit until ``_submit(intake=True)`` turns it into the job's charge (which decides the
        amount: a weighted cost may be higher than ``cost``, the least the request can cost) or
        ``_close_intake`` releases it. Raises the refusal with nothing held."""
        assert interaction.guild_id is not None and interaction.channel_id is not None
        # In every case, an empty prompt (Animate's default) too: the channel rule comes first.
        await self.check_guild(
            interaction.guild_id,
            interaction.channel_id,
            prompt,
            interaction.channel,
            int(interaction.filesize_limit),
        )
        await self.bot.queue.open_intake(self._intake_of(interaction, verb, reserved=cost))
        self._recorded.add(interaction.id)

    def _intake_of(self, interaction: discord.Interaction, verb: str, *, reserved: int = 0) -> Intake:
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

    async def _record_intake(self, interaction: discord.Interaction, verb: str) -> None:
        """Record a request that holds nothing before it is queued (batched with its neighbours)."""
        await self.bot.intakes.open(self._intake_of(interaction, verb))
        self._recorded.add(interaction.id)

    async def _close_intake(self, interaction: discord.Interaction) -> None:
        """The member was answered (or is being refused): drop the intake, its token and its hold."""
        if interaction.id not in self._recorded:
            return
        self._recorded.discard(interaction.id)
        try:
            await self.bot.intakes.close(interaction.id)
        except Exception as exc:  # the next start drops it; its hold lapses with the token
            log.warning("interaction %s: could not close its intake (%s)", interaction.id, type(exc).__name__)

    async def answer_open_intakes(self) -> None:
        """At start: answer the requests the last bot acknowledged and never answered (it died), while
        their tokens still work: "queued" when the job exists, else the refusal ``RESTARTED``."""
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
        submitted = await self.bot.queue.job_for_key(key, role_ids=intake.role_ids)
        if submitted is not None:
            text = _format.queued_note(intake.locale, submitted.job, submitted.position, submitted.balance)
        else:
            text = t(intake.locale, RESTARTED)
        webhook = discord.Webhook.partial(intake.application_id, intake.interaction_token, client=self.bot)
        await webhook.edit_message(  # type: ignore[arg-type]
            "@original", content=text, allowed_mentions=discord.AllowedMentions.none()
        )
        if submitted is not None:
            self._owe_status(submitted)
        log.info(
            "interaction %s: answered after the restart (%s)",
            intake.interaction_id,
            f"job {submitted.job.id}" if submitted else "not queued",
        )

    async def _read_image(self, attachment: discord.Attachment) -> PreparedImage:
        assert self.bot.http_session is not None
        return await _image.read_image(
            self.bot.http_session, attachment, self.bot.settings, self.bot.image_decoder
        )

    async def _submit(
        self,
        interaction: discord.Interaction,
        target: planning.QueueTarget,
        params: dict[str, Any],
        *,
        kind: str,
        picture: PreparedImage | None = None,
        reply_to_message_id: int | None = None,
        intake: bool = False,
    ) -> Submitted:
        """Channel rules, then charge and queue in one transaction (the refusal raised, nothing written);
        ``intake``: the request has one whose hold the charge replaces (``_check_before_download``)."""
        assert interaction.guild_id is not None and interaction.channel_id is not None
        guild_id, channel_id = interaction.guild_id, interaction.channel_id
        limit = int(interaction.filesize_limit)
        await self.check_guild(guild_id, channel_id, params["prompt"], interaction.channel, limit)
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
                reply_to_message_id=reply_to_message_id,
                inputs={planning.IMAGE_INPUT: picture.png} if picture is not None else {},
                intake_id=interaction.id if intake else None,
            )
        )
        if picture is not None and submitted.created:
            log.info(
                "job %s: first frame from a %s picture, stored as %dx%d PNG (%d bytes)",
                submitted.job.id,
                picture.source_format,
                picture.width,
                picture.height,
                len(picture.png),
            )
        self.bot.delivery.wake()
        return submitted

    async def _reply_queued(self, interaction: discord.Interaction, submitted: Submitted) -> None:
        """Edit the deferred response into the "Queued as…" note, then have the status message posted."""
        try:
            # Answer first: the member's "Queued as…" never waits for the channel's message budget.
            await interaction.edit_original_response(
                content=_format.queued_note(
                    member_locale(interaction), submitted.job, submitted.position, submitted.balance
                )
            )
        finally:
            # Then the public status message, also when the answer failed (it is owed either way).
            self._owe_status(submitted)

    # ------------------------------------------------------------------ Apps → Animate
    async def animate(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Message command: ask for the motion in a form (which must be the first response, so only
        quick checks run before it), then queue from its submission (``animate_submitted``)."""
        settings = self.bot.settings
        planning.check_image(settings)
        attachment = _image.pick_image(message)
        _image.check_declared_size(attachment, settings)
        assert interaction.guild_id is not None and interaction.channel_id is not None
        try:
            # The channel rule before the form, when the database answers in time (the submission
            # checks it again in every case).
            await asyncio.wait_for(
                self.check_guild(
                    interaction.guild_id,
                    interaction.channel_id,
                    "",
                    interaction.channel,
                    int(interaction.filesize_limit),
                ),
                FORM_DEADLINE,
            )
        except TimeoutError:
            log.info(
                "Animate by %s: channel not checked before the form (slow database)", interaction.user.id
            )
        await interaction.response.send_modal(
            _animate.animate_form(member_locale(interaction), message.id, attachment.id)
        )
        record_ack(interaction.created_at)

    async def animate_submitted(
        self, interaction: discord.Interaction, message_id: int, attachment_id: int, prompt: str
    ) -> None:
        """The form's submission (also of a form opened before a restart): a new interaction,
        acknowledged first like ``/video``; the channel rule before anything is downloaded."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        record_ack(interaction.created_at)
        settings = self.bot.settings
        target = planning.check_model(settings, None)
        planning.check_image(settings)
        await self._check_before_download(interaction, prompt, verb="animate", cost=1)
        try:
            attachment = await self._form_picture(interaction, message_id, attachment_id)
            picture = await self._read_image(attachment)
            params = planning.build_params(target, prompt, image=picture)
            submitted = await self._submit(
                interaction,
                target,
                params,
                kind="animate",
                picture=picture,
                reply_to_message_id=message_id,
                intake=True,
            )
            await self._reply_queued(interaction, submitted)
        finally:
            await self._close_intake(interaction)

    async def _form_picture(
        self, interaction: discord.Interaction, message_id: int, attachment_id: int
    ) -> discord.Attachment:
        """The picture the Animate form was opened on, read again from Discord (a fresh CDN URL)."""
        assert interaction.channel_id is not None
        channel = self.bot.get_partial_messageable(interaction.channel_id, guild_id=interaction.guild_id)
        try:
            message = await channel.fetch_message(message_id)
        except discord.HTTPException as exc:
            log.info(
                "Animate by %s: message %s could not be read (%s/%s)",
                interaction.user.id,
                message_id,
                exc.status,
                exc.code,
            )
            raise ImageRejected(msg(_image.NOT_DOWNLOADED)) from None
        for attachment in message.attachments:
            if attachment.id == attachment_id:
                return attachment
        raise ImageRejected(msg(_image.NOT_DOWNLOADED))  # removed from the message meanwhile

    @video.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        cur = current.lower().strip()
        return [
            app_commands.Choice(name=name, value=name)
            for name in planning.offered_models(self.bot.settings)
            if cur in name.lower()
        ][:25]

    async def check_guild(
        self, guild_id: int, channel_id: int, prompt: str, channel: object, upload_limit: int
    ) -> None:
        """Channel and blocklist rules (raises the refusal), and remember the guild's upload limit."""
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

    # ------------------------------------------------------------------ reactions
    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        emoji = str(payload.emoji)
        if emoji not in (RERUN_EMOJI, DELETE_EMOJI) or payload.guild_id is None:
            return
        me = self.bot.user
        if me is None or payload.user_id == me.id or (payload.member is not None and payload.member.bot):
            return
        if payload.message_author_id is not None and payload.message_author_id != me.id:
            return
        try:
            job = await self.bot.queue.by_result_message(payload.message_id)
            posted = None
            if job is None:
                if payload.message_author_id != me.id:
                    return  # not known to be the bot's message: not worth asking Discord
                posted, job = await self._posted_unmarked(payload)
                if job is None:
                    return
            if emoji == RERUN_EMOJI:
                await self._rerun(payload, job, posted)
            else:
                await self._delete(payload, job)
        except Exception:
            log.exception(
                "reaction %s on message %s by %s failed", emoji, payload.message_id, payload.user_id
            )

    async def _posted_unmarked(
        self, payload: discord.RawReactionActionEvent
    ) -> tuple[Posted | None, Job | None]:
        """A reaction on a result posted but not yet marked delivered (the database write still on its
        way): the message itself, read from Discord, says which job it shows."""
        try:
            posted = Posted.from_data(await self.bot.http.get_message(payload.channel_id, payload.message_id))
        except (discord.HTTPException, aiohttp.ClientError, OSError):
            return None, None
        job_id = posted.job_id()
        job = await self.bot.queue.get(job_id) if job_id is not None else None
        me = self.bot.user
        if job is None or job.guild_id != payload.guild_id or not posted.shows(job, me.id if me else None):
            return None, None
        return posted, job

    async def _rerun(
        self, payload: discord.RawReactionActionEvent, parent: Job, posted: Posted | None = None
    ) -> None:
        assert payload.guild_id is not None
        since = await self.bot.queue.seconds_since_child(parent.id, payload.user_id, "rerun")
        if since is not None and since < RERUN_COOLDOWN_SECONDS:
            log.info(
                "job %s: rerun reaction by %s inside the cooldown (%.0f s after the last); not queued again",
                parent.id,
                payload.user_id,
                since,
            )
            return
        # Reactions that arrive together share a key (one job); the look above is the cooldown itself.
        bucket = int(time.time() // RERUN_COOLDOWN_SECONDS)
        async with self.bot.db.sessionmaker() as s:
            view = await guilds.get_config(s, payload.guild_id)
        asker = Asker(
            guild_id=payload.guild_id,
            channel_id=payload.channel_id,
            user_id=payload.user_id,
            role_ids=member_role_ids(payload.member),
            message_id=payload.message_id,
            upload_limit=view.upload_limit_bytes or self.bot.settings.upload_limit_bytes,
            # The channel rules and blocklist may have changed since the original was made.
            channel=self.bot.get_channel(payload.channel_id),
            posted=posted,
        )
        try:
            submitted, _ = await self.actions.submit(
                asker,
                parent.id,
                "rerun",
                idempotency_key=f"rerun:{payload.message_id}:{payload.user_id}:{bucket}",
            )
        except VideobotError as exc:
            # A public note (a reaction has no member locale): in the server's language.
            await self._feedback(payload, exc.render(await self.bot.languages.locale(payload.guild_id)))
            return
        if not submitted.created:
            log.info(
                "job %s: rerun reaction by %s inside the cooldown; not queued again",
                submitted.job.id,
                payload.user_id,
            )
            return
        # The status message replies to the reacted-to result (``reply_to_message_id``).
        self.actions.post_status(submitted)

    # ------------------------------------------------------------------ buttons
    async def on_button(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        """A click on a result's button (``_buttons``); every refusal is ephemeral and says why."""
        if interaction.guild_id is None or interaction.message is None:
            return
        try:
            if action in ("remix", "extend"):
                await self._open_form(interaction, action, job_id)
                return
            await interaction.response.defer(ephemeral=True, thinking=True)
            record_ack(interaction.created_at)
            if action == "rerun":
                await self._rerun_click(interaction, job_id)
            elif action == "delete":
                await self._delete_click(interaction, job_id)
        except Exception as exc:
            await bot_errors.on_app_command_error(interaction, exc)  # type: ignore[arg-type]

    async def _answer_queued(
        self, interaction: discord.Interaction, submitted: Submitted, first_of: int = 0
    ) -> None:
        try:
            await interaction.edit_original_response(
                content=_format.queued_note(
                    member_locale(interaction),
                    submitted.job,
                    submitted.position,
                    submitted.balance,
                    first_of=first_of,
                )
            )
        finally:
            # The public status message is owed whether or not the answer got through.
            self.actions.post_status(submitted)

    async def _rerun_click(self, interaction: discord.Interaction, job_id: int) -> None:
        assert interaction.message is not None
        submitted, _ = await self.actions.submit(
            asker_from(interaction, interaction.message.id),
            job_id,
            "rerun",
            idempotency_key=f"interaction:{interaction.id}",
        )
        await self._answer_queued(interaction, submitted)

    async def _open_form(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        assert interaction.message is not None
        asker = asker_from(interaction, interaction.message.id)

        async def prepare() -> Job:
            job = await self.actions.source(job_id, asker.guild_id, action, asker.posted)
            await self.actions.precheck(asker, job, action)
            return job

        try:
            job = await asyncio.wait_for(prepare(), FORM_DEADLINE)
        except TimeoutError:
            log.warning(
                "job %s: %s form not opened for %s: the database was too slow", job_id, action, asker.user_id
            )
            await interaction.response.send_message(
                t(member_locale(interaction), _format.BUSY), ephemeral=True
            )
            return
        params = job.params or {}
        prompt = str(params.get("prompt") or "")
        locale = member_locale(interaction)
        if action == "remix":
            form = _modals.remix_form(locale, job.id, prompt, str(params.get("negative_prompt") or ""))
        else:
            form = _modals.extend_form(locale, job.id, prompt)
        await interaction.response.send_modal(form)
        record_ack(interaction.created_at)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """A Remix, Extend or Animate form submitted (also one opened before a restart)."""
        if interaction.type is not discord.InteractionType.modal_submit or interaction.guild_id is None:
            return
        data: dict[str, object] = dict(interaction.data or {})  # type: ignore[arg-type]
        custom_id = str(data.get("custom_id") or "")
        if animate := _animate.FORM_ID.fullmatch(custom_id):
            try:
                prompt = _modals.submitted_values(data).get(_animate.PROMPT_ID, "")  # type: ignore[arg-type]
                await self.animate_submitted(
                    interaction, int(animate["message_id"]), int(animate["attachment_id"]), prompt
                )
            except Exception as exc:
                await bot_errors.on_app_command_error(interaction, exc)  # type: ignore[arg-type]
            return
        match = _modals.FORM_ID.fullmatch(custom_id)
        if match is None:
            return
        kind, job_id = match["kind"], int(match["job_id"])
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            record_ack(interaction.created_at)
            values = _modals.submitted_values(data)  # type: ignore[arg-type]
            if interaction.message is not None:
                message_id: int | None = interaction.message.id
            else:  # the form was opened from a message Discord did not send back: reply to the result
                source = await self.bot.queue.get(job_id)
                message_id = source.result_message_id if source is not None else None
            submitted, source_job = await self.actions.submit(
                asker_from(interaction, message_id),
                job_id,
                kind,
                idempotency_key=f"interaction:{interaction.id}",
                prompt=values.get("prompt", ""),
                negative_prompt=values.get("negative_prompt", "") if kind == "remix" else None,
            )
            videos = int((source_job.params or {}).get("num_videos") or 1)
            await self._answer_queued(interaction, submitted, videos if kind == "extend" else 0)
        except Exception as exc:
            await bot_errors.on_app_command_error(interaction, exc)  # type: ignore[arg-type]

    async def _delete_click(self, interaction: discord.Interaction, job_id: int) -> None:
        assert interaction.message is not None and interaction.channel_id is not None
        message = interaction.message
        job = await self.bot.queue.get(job_id)
        posted, me = Posted.of(message), self.bot.user
        bot_id = me.id if me else None
        # The job authorises the delete, so the message must be that job's: its result (or a copy of
        # it), or its status message; never some other message the button ended up on.
        if (
            job is None
            or job.guild_id != interaction.guild_id
            or (
                message.id not in (job.result_message_id, job.status_message_id)
                and not posted.carries(job, bot_id)
            )
        ):
            log.warning(
                "job %s: delete by %s refused: message %s is not its result or status message",
                job_id,
                interaction.user.id,
                message.id,
            )
            raise NotThisResult(msg(_format.DELETE_MISMATCH))
        if job.user_id != interaction.user.id and not await is_moderator(self.bot, interaction):
            log.info(
                "job %s: delete by %s refused (not the requester or a moderator)", job_id, interaction.user.id
            )
            raise NotModerator(msg(_format.DELETE_REFUSED))
        # The stored file goes with the result message (not with a copy or the status message).
        is_result = posted.shows(job, bot_id)
        try:
            await self.bot.http.delete_message(
                interaction.channel_id, message.id, reason=f"Delete by {interaction.user.id}"
            )
        except discord.NotFound:
            pass  # already gone: the member's wish is granted
        except discord.Forbidden as exc:
            log.warning(
                "job %s: could not delete message %s for %s (%s/%s)",
                job_id,
                message.id,
                interaction.user.id,
                exc.status,
                exc.code,
            )
            # The stored file goes only with the message: keep it while the message is still there.
            if is_result and not await self._still_there(interaction.channel_id, message.id):
                await self.bot.queue.forget_result(job.id)
            raise CannotDelete(msg(_format.DELETE_FORBIDDEN)) from None
        if is_result:
            await self.bot.queue.forget_result(job.id)
        log.info("job %s: message %s deleted by %s", job_id, message.id, interaction.user.id)
        await interaction.edit_original_response(
            content=t(member_locale(interaction), _format.DELETED, job=job_id)
        )

    async def _still_there(self, channel_id: int, message_id: int) -> bool:
        """Whether a message exists (a 404 says it does not; anything else: assume it does)."""
        try:
            await self.bot.http.get_message(channel_id, message_id)
        except discord.NotFound:
            return False
        except (discord.HTTPException, aiohttp.ClientError, OSError):  # TimeoutError is an OSError
            return True
        return True

    async def _feedback(self, payload: discord.RawReactionActionEvent, text: str) -> None:
        """A short note that mentions (and pings) only the reactor and deletes itself."""
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        try:
            await channel.send(
                _format.truncate(f"<@{payload.user_id}> {text}", _format.MAX_CONTENT),
                delete_after=FEEDBACK_SECONDS,
                allowed_mentions=discord.AllowedMentions(
                    users=[discord.Object(payload.user_id)], everyone=False, roles=False, replied_user=False
                ),
            )
        except discord.HTTPException as exc:
            log.info(
                "could not post reaction feedback in channel %s (%s %s)",
                payload.channel_id,
                exc.status,
                exc.code,
            )

    async def _delete(self, payload: discord.RawReactionActionEvent, job: Job) -> None:
        allowed = payload.user_id == job.user_id
        if not allowed and payload.member is not None:
            allowed = await is_moderator(self.bot, payload.member)
        if not allowed:
            log.info("job %s: ❌ by %s ignored (not the requester or a moderator)", job.id, payload.user_id)
            return
        try:
            await self.bot.http.delete_message(
                payload.channel_id, payload.message_id, reason=f"❌ by {payload.user_id}"
            )
        except discord.NotFound:
            return
        except discord.HTTPException as exc:
            log.warning(
                "job %s: could not delete result message %s (%s %s)",
                job.id,
                payload.message_id,
                exc.status,
                exc.code,
            )
            return
        log.info("job %s: result message %s deleted by %s", job.id, payload.message_id, payload.user_id)
        await self.bot.queue.forget_result(job.id)
