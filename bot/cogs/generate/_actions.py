"""What the buttons on a result (and its 🔁 reaction) do: find the source job, check it can still be
used, and queue a rerun, remix, extension or HD version charged to whoever asked. No Discord objects are kept:
everything starts from the job id in the button's custom id, so it works after any restart.

A source job can be used while its row exists, its model is still the one this server runs, and
what the new job needs is still stored: an extension needs the source's video (``job_results``),
a rerun, remix or HD version of a video made from an image (or of an extension) needs that job's inputs
(``job_inputs``); both are purged ``VIDEOBOT_RESULT_RETENTION_HOURS`` after posting. A rerun or
remix of a text video needs only the row, so it keeps working after the purge.

A result is usable from the moment it is posted, not only once ``mark_delivered`` has committed:
members see the message (its buttons, its 🔁) before that write lands, and under a busy database
the gap grows. A ``succeeded`` job counts as posted when the message the member acted on is the
bot's and carries the job's result file (``Posted.shows``): Discord tells us what is on it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import discord

from bot.checks import age_restricted
from bot.ports import CommandHost
from bot.ui import texts
from videobot import planning
from videobot.errors import InvalidParameters, JobNotFound, VideobotError
from videobot.i18n import Msg, Number, msg, nmsg
from videobot.jobs import SubmitRequest, Submitted
from videobot.models import Job, JobStatus

from ._requests import Requests, member_role_ids

log = logging.getLogger(__name__)


class ResultGone(JobNotFound):
    """The result a button belongs to no longer exists, or its files were purged."""

    code = "result_gone"


class NotThisResult(InvalidParameters):
    """A button whose job id does not belong to the message it is on: nothing is done."""

    code = "not_this_result"


class CannotDelete(VideobotError):
    """Discord refused to delete the message (403): the member is told, the message stays."""

    code = "cannot_delete"


#: A result file's name carries its job id (``texts.result_filename``).
_RESULT_FILE = re.compile(r"videobot-(?P<job_id>[0-9]{1,20})(?:-[0-9]+)?\.mp4")


@dataclass(frozen=True)
class Posted:
    """A message a member acted on (a button's, a reaction's), as Discord describes it."""

    id: int
    author_id: int | None
    filenames: frozenset[str]

    @classmethod
    def of(cls, message: discord.Message) -> Posted:
        return cls(message.id, message.author.id, frozenset(a.filename for a in message.attachments))

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Posted:
        """From the REST form of a message (``GET /channels/{id}/messages/{id}``)."""
        author = data.get("author") or {}
        return cls(
            int(data["id"]),
            int(author["id"]) if author.get("id") else None,
            frozenset(str(a.get("filename") or "") for a in data.get("attachments") or []),
        )

    def job_id(self) -> int | None:
        """The job whose result file this message carries, if any."""
        for name in self.filenames:
            if found := _RESULT_FILE.fullmatch(name):
                return int(found["job_id"])
        return None

    def carries(self, job: Job, bot_id: int | None) -> bool:
        """Whether this is the bot's own message with ``job``'s result file (its post, or a copy)."""
        return (
            bot_id is not None
            and self.author_id == bot_id
            and bool(self.filenames & texts.result_filenames(job))
        )

    def shows(self, job: Job, bot_id: int | None) -> bool:
        """Whether this message is ``job``'s posted result: the recorded one, or (posted but not yet
        marked delivered) the bot's own message carrying the job's result file."""
        if job.result_message_id is not None:
            return job.result_message_id == self.id
        return job.status == JobStatus.SUCCEEDED.value and self.carries(job, bot_id)


@dataclass(frozen=True)
class Asker:
    """Who asked, where, and what Discord told us about the destination (from the interaction or reaction)."""

    guild_id: int
    channel_id: int
    user_id: int
    role_ids: list[int]
    #: The message the result was posted as: the new job's status and result reply to it.
    message_id: int | None
    upload_limit: int
    channel: object = None
    #: That message as Discord showed it (None: not sent with the interaction).
    posted: Posted | None = None


class ResultActions:
    """Reruns, remixes and extensions of posted results (the cog owns one)."""

    def __init__(self, bot: CommandHost, requests: Requests) -> None:
        self.bot = bot
        self.requests = requests

    # ------------------------------------------------------------------ checks
    def is_posted(self, job: Job, posted: Posted | None) -> bool:
        """Delivered (and not deleted since), or posted and not yet marked: ``posted`` shows it."""
        if job.status == JobStatus.DELIVERED.value and job.result_message_id is not None:
            return True  # a None id: deleted with its Delete button or ❌
        bot_id = self.bot.user.id if self.bot.user is not None else None
        return posted is not None and posted.shows(job, bot_id)

    async def source(self, job_id: int, guild_id: int, kind: str, posted: Posted | None = None) -> Job:
        """The posted job a button (or reaction) on ``posted`` refers to, if ``kind`` can still be
        made from it."""
        job = await self.bot.queue.get(job_id)
        if job is None or job.guild_id != guild_id or not self.is_posted(job, posted):
            raise ResultGone(msg(texts.RESULT_GONE))
        settings = self.bot.settings
        target = planning.queue_target(settings)
        if job.model != target.name:
            raise InvalidParameters(msg(texts.MODEL_GONE[kind], model=texts.escape_model(job.model)))
        if kind == "extend" and "extend" not in planning.offered_verbs(settings):
            raise InvalidParameters(msg(texts.CANNOT_EXTEND, model=texts.escape_model(target.name)))
        if kind == "hd":
            self.check_hd(job)
        stored = await self.bot.queue.stored_files(job.id)
        if not self._needed(job, kind) <= stored:
            raise ResultGone(self._expired(kind))
        if kind == "extend":
            await self.check_extensions(job)
        return job

    def check_hd(self, job: Job) -> None:
        """Refuse an HD version the model cannot make, of a video already in HD, or of an extended clip."""
        target = planning.queue_target(self.bot.settings)
        if "hd" not in planning.offered_verbs(self.bot.settings) or "num_frames" not in (job.params or {}):
            raise InvalidParameters(msg(texts.CANNOT_HD, model=texts.escape_model(target.name)))
        if job.kind == "hd" or (job.params or {}).get("hd"):
            raise InvalidParameters(msg(texts.ALREADY_HD))
        if (job.params or {}).get("end_image") or (job.params or {}).get("loop"):
            raise InvalidParameters(msg(texts.HD_OF_KEYFRAMES))
        if not texts.can_be_hd(job):
            raise InvalidParameters(msg(texts.HD_OF_EXTENSION))

    def _expired(self, kind: str) -> Msg:
        """The source's files were purged (``VIDEOBOT_RESULT_RETENTION_HOURS`` after posting)."""
        return msg(texts.RESULT_EXPIRED[kind], hours=retention(self.bot.settings.result_retention_hours))

    @staticmethod
    def _needed(job: Job, kind: str) -> set[str]:
        if kind == "extend":
            return {"result"}
        params = job.params or {}
        needed = set()
        if params.get("image"):
            needed.add("image")
        if params.get("end_image"):
            needed.add("end_image")
        if params.get("source_video"):
            needed.add("video")
        return needed

    async def check_extensions(self, job: Job) -> None:
        """Refuse extending a clip that is already ``max_extensions`` extensions long."""
        limit = planning.max_extensions(self.bot.settings)
        done = planning.extension_number(await self.bot.queue.lineage(job.id, depth=limit + 2))
        if done >= limit:
            raise InvalidParameters(nmsg(*texts.EXTEND_LIMIT, done, limit=limit))

    async def precheck(self, asker: Asker, job: Job, kind: str) -> None:
        """Everything that can be refused before the member fills in a form: the source, the channel
        rules, their credits. ``submit`` checks all of it again."""
        params = self._params(job, kind, None, None)
        await self.requests.check_guild(
            asker.guild_id, asker.channel_id, str(params.get("prompt", "")), asker.channel, asker.upload_limit
        )
        await self.bot.queue.check_limits(
            asker.guild_id,
            asker.user_id,
            role_ids=asker.role_ids,
            cost=planning.job_cost(self.bot.settings, planning.queue_target(self.bot.settings), params),
        )

    # ------------------------------------------------------------------ queueing
    def _params(self, job: Job, kind: str, prompt: str | None, negative_prompt: str | None) -> dict[str, Any]:
        params = dict(job.params or {})
        source_prompt = str(params.get("prompt") or "")
        if kind == "rerun":
            return planning.rerun_params(params)
        if kind == "hd":  # the same video (seed, prompt, picture) at twice the size
            return planning.hd_params(params, job.enhanced_prompt)
        if kind == "remix":
            return planning.remix_params(
                params,
                source_prompt if prompt is None else prompt,
                str(params.get("negative_prompt") or "") if negative_prompt is None else negative_prompt,
            )
        return planning.extend_params(
            planning.queue_target(self.bot.settings), params, source_prompt if prompt is None else prompt
        )

    async def submit(
        self,
        asker: Asker,
        job_id: int,
        kind: str,
        *,
        idempotency_key: str,
        prompt: str | None = None,
        negative_prompt: str | None = None,
    ) -> tuple[Submitted, Job]:
        """Queue a rerun, remix, extension or HD version of ``job_id`` charged to ``asker``; raises the
        refusal."""
        source = await self.source(job_id, asker.guild_id, kind, asker.posted)
        params = self._params(source, kind, prompt, negative_prompt)
        await self.requests.check_guild(
            asker.guild_id, asker.channel_id, str(params["prompt"]), asker.channel, asker.upload_limit
        )
        if kind == "extend":
            result = await self.bot.queue.get_result(source.id)
            if result is None:
                raise ResultGone(self._expired(kind))
            # The clip itself travels with the job: any worker, after any restart, can continue it.
            inputs = {"video": bytes(result.video)}
        else:
            inputs = await self.bot.queue.get_inputs(source.id)
            if not self._needed(source, kind) <= set(inputs):
                raise ResultGone(self._expired(kind))
        target = planning.queue_target(self.bot.settings)
        submitted = await self.bot.submitter.submit(
            SubmitRequest(
                idempotency_key=idempotency_key,
                guild_id=asker.guild_id,
                channel_id=asker.channel_id,
                user_id=asker.user_id,
                model=target.name,
                params=params,
                cost=planning.job_cost(self.bot.settings, target, params),
                role_ids=asker.role_ids,
                kind=kind,
                parent_job_id=source.id,
                upload_limit_bytes=asker.upload_limit,
                reply_to_message_id=asker.message_id,
                inputs=inputs,
                channel_nsfw=_age_restricted(asker, source),
            )
        )
        if submitted.created:
            log.info("job %s: %s of job %s by %s", submitted.job.id, kind, source.id, asker.user_id)
            self.bot.delivery.wake()
        return submitted, source


def retention(hours: float) -> Msg:
    """How long results are kept: ``48 hours`` (``1.5 hours``), in the reader's language."""
    if hours == int(hours):
        return nmsg("{n} hour", "{n} hours", int(hours))
    return msg("{hours} hours", hours=Number(hours))


def _age_restricted(asker: Asker, source: Job) -> bool:
    """The destination's age restriction for the safety policy: Discord's word on the channel when we
    have it, else the source job's when it is asked in the same channel, else not restricted."""
    known = age_restricted(asker.channel)
    if known is not None:
        return known
    return bool(source.channel_nsfw) and source.channel_id == asker.channel_id


def asker_from(interaction: discord.Interaction, message_id: int | None) -> Asker:
    assert interaction.guild_id is not None and interaction.channel_id is not None
    message = interaction.message
    return Asker(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        user_id=interaction.user.id,
        role_ids=member_role_ids(interaction.user),
        message_id=message_id,
        upload_limit=int(interaction.filesize_limit),
        channel=interaction.channel,
        posted=Posted.of(message) if message is not None and message.id == message_id else None,
    )
