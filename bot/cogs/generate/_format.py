"""Text the bot shows: status/progress lines, the result message, refusals. Pure functions, no I/O.

User text (prompts) is always escaped (markdown and mentions) and never used in a file name.
"""

from __future__ import annotations

import math
from typing import Any

import discord

from videobot import jobs
from videobot.models import Job
from videobot.presets import MAX_VIDEOS

MAX_CONTENT = 2000
STATUS_PROMPT_CHARS = 300
BAR_CELLS = 10


def job_marker(job_id: int) -> str:
    """The tag every message about a job carries; the result's file name carries the id too."""
    return f"job #{job_id}"


def wanted_videos(job: Job) -> int:
    """How many videos (variations) the job asked for."""
    return jobs.wanted_videos(job.params)


def result_filename(job: Job | int, variant: int = 0) -> str:
    """Never contains user text. A job with variations numbers its files from 1 (``videobot-7-2.mp4``)."""
    if isinstance(job, int) or wanted_videos(job) == 1:
        return f"videobot-{job if isinstance(job, int) else job.id}.mp4"
    return f"videobot-{job.id}-{variant + 1}.mp4"


def result_filenames(job: Job) -> set[str]:
    """Every name the job's result files can have."""
    return {f"videobot-{job.id}.mp4"} | {f"videobot-{job.id}-{i + 1}.mp4" for i in range(MAX_VIDEOS)}


def result_nonce(job_id: int) -> str:
    """Discord dedupes channel messages with the same nonce (enforce_nonce) for a few minutes; ≤ 25 chars."""
    return f"job-{job_id}"


def escape(text: str) -> str:
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def truncate(text: str, limit: int) -> str:
    """Cut escaped text to ``limit`` characters without leaving a dangling escape backslash."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    while cut.endswith("\\"):
        cut = cut[:-1]
    return cut + "…"


def quote(text: str) -> str:
    """A Discord block quote of (already escaped) text."""
    return "> " + text.replace("\n", "\n> ")


def prompt_of(job: Job) -> str:
    return str((job.params or {}).get("prompt") or "")


def _seconds(value: float) -> str:
    if value < 90:
        return f"{max(value, 1):.0f} s"
    if value < 5400:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def progress_bar(step: int, total: int) -> str:
    frac = 0.0 if total <= 0 else min(max(step / total, 0.0), 1.0)
    full = int(round(frac * BAR_CELLS))
    return "▰" * full + "▱" * (BAR_CELLS - full)


#: From this step on, the job's own pace (database clock) says how long is left; before it, the
#: model's measured seconds per step (the mean of its recent jobs), since the first step also holds
#: the text encoding.
OWN_PACE_FROM_STEP = 2


def eta_seconds(job: Job, per_step: float | None = None) -> float | None:
    """Remaining seconds of a running job: from the model's measured ``per_step`` (recent jobs) for the
    first steps, then from this job's own pace; None when neither is known."""
    step, total = job.progress_step or 0, job.progress_total or 0
    if total <= 0:
        return None
    own = step >= OWN_PACE_FROM_STEP or (step > 0 and per_step is None)
    if own and job.started_at is not None and job.progress_updated_at is not None:
        per_step = max(job.progress_updated_at - job.started_at, 0.0) / step
    if per_step is None:
        return None
    return per_step * max(total - step, 0)


# ------------------------------------------------------------------ buttons, forms and lineage
BUTTON_RERUN = "Rerun"
BUTTON_REMIX = "Remix"
BUTTON_EXTEND = "Extend"
BUTTON_DELETE = "Delete"
REMIX_TITLE = "Remix this video"
EXTEND_TITLE = "Extend this clip"
PROMPT_LABEL = "Prompt"
PROMPT_PLACEHOLDER = "What the video shows, e.g. a red fox running through fresh snow"
NEGATIVE_LABEL = "Negative prompt (what to avoid)"
NEGATIVE_PLACEHOLDER = "e.g. blurry, text, watermark (may be left empty)"
EXTEND_PROMPT_LABEL = "What happens next"
RESULT_GONE = "This video is no longer available (it was deleted or has expired). Make a new one with /video."
RESULT_EXPIRED = (
    "This video's file has expired (videos are kept {hours} after they are posted), so it can't be "
    "{what} any more. Make a new one with /video."
)
MODEL_GONE = (
    "This video was made with `{model}`, which this server no longer runs, so it can't be {what}. "
    "Make a new one with /video."
)
CANNOT_EXTEND = "This server's model (`{model}`) can't extend clips."
EXTEND_LIMIT = (
    "This clip has been extended {n} time(s) already, the most allowed here ({limit}). "
    "Make a new video with /video, or remix this one."
)
DELETE_REFUSED = "Only the person who asked for this video or a moderator can delete it."
DELETED = "Deleted the video ({marker})."
BUSY = "The video service is busy right now; please click again in a moment."
FIRST_OF = " It continues the first of the {n} videos."

#: What a job is, by ``Job.kind``: the status header's verb and the result's first line.
_ASKED = {
    "command": "asked for a video",
    "rerun": "asked for a rerun",
    "remix": "asked for a remix",
    "extend": "asked for an extension",
    "animate": "asked to animate a picture",
}
_READY = {
    "command": "your video is ready 🎬",
    "rerun": "here is your rerun 🔁",
    "remix": "here is your remix 🎨",
    "extend": "here is your extended clip ⏩",
    "animate": "your animation is ready 🎬",
}
_LINEAGE = {"rerun": "Rerun", "remix": "Remix", "extend": "Extension", "animate": "Animation"}


def message_url(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def lineage_note(job: Job, *, extension: int = 0, origin_id: int | None = None) -> str:
    """ "Remix of job #12", "Extension 2 of job #12" ("" for a /video); ``origin_id`` is the clip an
    extension chain started from (default: the parent)."""
    if job.kind not in _LINEAGE or job.parent_job_id is None:
        return ""
    what = _LINEAGE[job.kind]
    if job.kind == "extend" and extension > 0:
        what = f"{what} {extension}"
    return f"{what} of {job_marker(origin_id or job.parent_job_id)}"


def status_header(job: Job) -> str:
    count = wanted_videos(job)
    verb = _ASKED.get(job.kind, _ASKED["command"])
    if count > 1 and job.kind == "command":
        verb = f"asked for {count} variations"
    if job.parent_job_id is not None and job.kind in _LINEAGE:
        verb += f" of {job_marker(job.parent_job_id)}"
    if count > 1 and job.kind != "command":
        verb += f" ({count} variations)"
    prompt = truncate(escape(prompt_of(job)), STATUS_PROMPT_CHARS)
    return f"🎬 <@{job.user_id}> {verb} · {job_marker(job.id)}\n{quote(prompt)}"


def status_text(
    job: Job, position: int | None, *, per_step: float | None = None, starts_in: float | None = None
) -> str:
    """The public status message: queue position (and estimated start) while queued, a progress bar
    with the time left while running. ``per_step``: the model's measured seconds per step; ``starts_in``:
    the estimated seconds until a queued job starts."""
    head = status_header(job)
    if job.status == "queued":
        where = f"#{position} in the queue" if position else "waiting in the queue"
        if starts_in is not None:
            where += " · starts now" if starts_in < 1 else f" · starts in about {_seconds(starts_in)}"
        return f"{head}\n⏳ {where}"
    if job.status == "running":
        step, total = job.progress_step or 0, job.progress_total or 0
        if job.cancel_requested:
            return f"{head}\n🛑 stopping…"
        if total <= 0 or step <= 0:
            eta = eta_seconds(job, per_step)
            left = f" · about {_seconds(eta)} left" if eta is not None else ""
            return f"{head}\n⚙️ starting…{left}"
        pct = math.floor(100 * step / total)
        eta = eta_seconds(job, per_step)
        left = f" · about {_seconds(eta)} left" if eta is not None and step < total else ""
        if step >= total:
            left = " · encoding…"
        return f"{head}\n`{progress_bar(step, total)}` step {step}/{total} · {pct}%{left}"
    return head


def preview_filename(job_id: int, content_type: str) -> str:
    """The status message's preview picture (never contains user text)."""
    ext = {"image/webp": "webp", "image/png": "png", "image/jpeg": "jpg"}.get(content_type, "webp")
    return f"preview-{job_id}.{ext}"


def cancel_answer(state: str, job: Job, user_id: int) -> str:
    """The ephemeral answer to a cancel (``/cancel`` or the Cancel button), by ``CancelOutcome.state``."""
    marker = job_marker(job.id)
    if state == "cancelled":
        whose = "" if job.user_id == user_id else f" (requested by <@{job.user_id}>)"
        return f"Cancelled {marker}{whose}. The credit was refunded."
    if state == "requested":
        return (
            f"{marker} is being made right now: it will stop at its next step, "
            "and the credit will be refunded then."
        )
    return f"{marker} already finished ({job.status}); there is nothing to cancel."


def status_done(job: Job, jump_url: str | None) -> str:
    took = f" in {_seconds(job.generation_seconds)}" if job.generation_seconds else ""
    where = f": {jump_url}" if jump_url else ""
    return f"{status_header(job)}\n✅ done{took}{where}"


def with_refund(message: str) -> str:
    message = (message or "The video could not be made.").strip()
    if "refund" not in message.lower():
        message += " Your credit was refunded."
    return message


def status_failed(job: Job) -> str:
    icon = "🚫" if job.status == "cancelled" else "❌"
    return f"{status_header(job)}\n{icon} {with_refund(job.error_message or '')}"


def failure_notice(job: Job) -> str:
    """A short message to the requester when the status message cannot tell them (or the job failed)."""
    what = "was cancelled" if job.status == "cancelled" else "could not be made"
    return truncate(
        f"<@{job.user_id}> your video ({job_marker(job.id)}) {what}: {with_refund(job.error_message or '')}",
        MAX_CONTENT,
    )


def _seeds(job: Job, results: list[Any]) -> str:
    seed = (job.params or {}).get("seed")
    if not isinstance(seed, int):
        return "seed ?"
    if wanted_videos(job) == 1:
        return f"seed {seed}"
    return "seeds " + ", ".join(str((seed + int(getattr(r, "variant", 0))) % 2**32) for r in results)


def result_content(job: Job, results: Any, *, extension: int = 0, origin_id: int | None = None) -> str:
    """The result message: mention, what it is (a remix of …, with a link to the message it came
    from), the prompt (escaped, truncated to fit 2000 chars) and the details.

    ``results``: the job's videos (one, or its variations); when only some variations were made,
    a line says so (and that their credits came back).
    """
    results = list(results) if isinstance(results, (list, tuple)) else [results]
    result = results[0] if results else None
    count = len(results)
    ready = _READY.get(job.kind, _READY["command"])
    if count > 1 and job.kind == "command":
        ready = f"your {count} variations are ready 🎬"
    head = f"<@{job.user_id}> {ready}"
    note = lineage_note(job, extension=extension, origin_id=origin_id)
    if note:
        if job.reply_to_message_id:
            note += f" · {message_url(job.guild_id, job.channel_id, job.reply_to_message_id)}"
        head += f"\n-# {note}"
    if job.error_code == "partial" and job.error_message:
        head += f"\n⚠️ {escape(job.error_message)}"
    details = [job_marker(job.id), _seeds(job, results), f"`{escape_model(job.model)}`"]
    duration = getattr(result, "duration_s", None)
    if duration:
        details.append(f"{duration:.1f} s")
    if job.generation_seconds:
        details.append(f"made in {_seconds(job.generation_seconds)}")
    footer = "-# " + " · ".join(details) + f" · react {'🔁'} for another take"
    budget = MAX_CONTENT - len(head) - len(footer) - 4 - 10
    body = quote(truncate(escape(prompt_of(job)), budget))
    content = f"{head}\n{body}\n{footer}"
    return content[:MAX_CONTENT]


def escape_model(name: str) -> str:
    return name.replace("`", "'")[:100]


def queued_note(job: Job, position: int, balance: int, jump_url: str | None, *, extra: str = "") -> str:
    """The ephemeral answer to /video (and to a button) once the job is queued."""
    where = f"#{position} in the queue" if position else "starting now"
    link = f" Progress: {jump_url}" if jump_url else ""
    what = lineage_note(job)
    what = f" ({what})" if what else ""
    return f"Queued as {job_marker(job.id)}{what} ({where}). You have {balance} credit(s) left.{link}{extra}"
