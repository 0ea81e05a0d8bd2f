"""Text the bot shows: status/progress lines, the result message, answers and refusals, the labels of
its buttons and forms. Pure functions and catalog messages (``N_``), no I/O.

Every function takes the reader's ``locale`` first: the member's (``bot.i18n.member_locale``) for an
ephemeral answer, the server's (``bot.languages.locale(guild_id)``) for a public message. Texts come
from the catalogs (``videobot.i18n``); numbers and durations are formatted for that locale.

User text (prompts) is always escaped (markdown and mentions) and never used in a file name.
"""

from __future__ import annotations

import math
from typing import Any

import discord

from bot.i18n import user_mention
from videobot import jobs
from videobot.i18n import N_, Number, Text, format_duration, recognize, render, t, tn
from videobot.jobs.records import job_error
from videobot.models import Job
from videobot.presets import MAX_VIDEOS

MAX_CONTENT = 2000
#: The reactions on a result: 🔁 another take (added by the bot), ❌ delete it.
RERUN_EMOJI = "🔁"
DELETE_EMOJI = "❌"
STATUS_PROMPT_CHARS = 300
BAR_CELLS = 10


def job_marker(locale: str, job_id: int) -> str:
    """The tag every message about a job carries (``job #12``); the result's file name carries the id too."""
    return t(locale, "job #{job}", job=job_id)


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


def _seconds(locale: str, value: float) -> str:
    """A duration in the locale's short units, its largest one only (``45 sec``, ``3 min``, ``2 hr``):
    an estimate or a measure at a glance, not a timer."""
    return format_duration(locale, max(value, 1.0), parts=1)


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
# Button labels are part of the public result message: in the server's language, like the rest of
# it (the emoji on each button is the same everywhere). Form titles and labels: the clicking member's.
BUTTON_RERUN = N_("Rerun")
BUTTON_REMIX = N_("Remix")
BUTTON_EXTEND = N_("Extend")
BUTTON_DELETE = N_("Delete")
#: The HD button: the same video at twice the width and height (models with a latent upsampler).
BUTTON_HD = N_("HD")
CANCEL = N_("Cancel")
REMIX_TITLE = N_("Remix this video")
EXTEND_TITLE = N_("Extend this clip")
ANIMATE_TITLE = N_("Animate this picture")
PROMPT_LABEL = N_("Prompt")
PROMPT_PLACEHOLDER = N_("What the video shows, e.g. a red fox running through fresh snow")
NEGATIVE_LABEL = N_("Negative prompt (what to avoid)")
NEGATIVE_PLACEHOLDER = N_("e.g. blurry, text, watermark (may be left empty)")
EXTEND_PROMPT_LABEL = N_("What happens next")
ANIMATE_LABEL = N_("What should move? (optional)")
ANIMATE_PLACEHOLDER = N_("e.g. the cat slowly turns its head and blinks. Empty: natural motion.")
#: Discord's limits: a modal's title and a text input's label, a placeholder, a button's label.
MAX_TITLE = 45
MAX_PLACEHOLDER = 100
MAX_BUTTON_LABEL = 80

RESULT_GONE = N_(
    "This video is no longer available (it was deleted or has expired). Make a new one with /video."
)
#: Why a source can no longer be used, by what the button would do with it.
RESULT_EXPIRED = {
    "rerun": N_(
        "This video's file has expired (videos are kept {hours} after they are posted), so it can't be "
        "rerun any more. Make a new one with /video."
    ),
    "remix": N_(
        "This video's file has expired (videos are kept {hours} after they are posted), so it can't be "
        "remixed any more. Make a new one with /video."
    ),
    "extend": N_(
        "This video's file has expired (videos are kept {hours} after they are posted), so it can't be "
        "extended any more. Make a new one with /video."
    ),
    "hd": N_(
        "This video's picture has expired (kept {hours} after the video is posted), so it can't be made "
        "in HD any more. Make a new one with /video."
    ),
}
MODEL_GONE = {
    "rerun": N_(
        "This video was made with `{model}`, which this server no longer runs, so it can't be rerun. "
        "Make a new one with /video."
    ),
    "remix": N_(
        "This video was made with `{model}`, which this server no longer runs, so it can't be remixed. "
        "Make a new one with /video."
    ),
    "extend": N_(
        "This video was made with `{model}`, which this server no longer runs, so it can't be extended. "
        "Make a new one with /video."
    ),
    "hd": N_(
        "This video was made with `{model}`, which this server no longer runs, so it can't be made in HD. "
        "Make a new one with /video."
    ),
}
CANNOT_EXTEND = N_("This server's model (`{model}`) can't extend clips.")
CANNOT_HD = N_("This server's model (`{model}`) can't make HD videos.")
ALREADY_HD = N_("This video is already in HD: it can't be made larger.")
HD_OF_EXTENSION = N_(
    "An extended clip can't be made in HD, only videos made from text or a picture. Use HD on the clip "
    "before extending it."
)
HD_OF_KEYFRAMES = N_(
    "A video that ends on a picture or loops can't be made in HD yet, only videos made from text or a "
    "single picture."
)
EXTEND_LIMIT = (
    "This clip has been extended {n} time already, the most allowed here ({limit}). "
    "Make a new video with /video, or remix this one.",
    "This clip has been extended {n} times already, the most allowed here ({limit}). "
    "Make a new video with /video, or remix this one.",
)
DELETE_REFUSED = N_("Only the person who asked for this video or a moderator can delete it.")
DELETED = N_("Deleted the video (job #{job}).")
DELETE_MISMATCH = N_("This button does not belong to this message, so nothing was deleted.")
DELETE_FORBIDDEN = N_(
    "I could not delete this message: I am missing a permission in this channel. "
    "Please ask a moderator to delete it."
)
BUSY = N_("The video service is busy right now; please click again in a moment.")
NOT_YOURS = N_("Only the member who asked for this video, or a moderator, can cancel it.")
#: The answer, after a restart, to a request the last bot acknowledged but never queued.
RESTARTED = N_(
    "The bot restarted before your request could be queued. Nothing was charged; please try again."
)
#: The answer, after a restart, to a Cancel or a Delete the last bot acknowledged but never answered.
RESTARTED_UNSURE = N_(
    "The bot restarted while it was handling this, so it may not have been done. Please look again "
    "and try once more if needed."
)

#: What a job is, by ``Job.kind``: the status header's verb (without and with its source job).
_ASKED = {
    "command": (N_("{member} asked for a video"), None),
    "rerun": (N_("{member} asked for a rerun"), N_("{member} asked for a rerun of job #{parent}")),
    "remix": (N_("{member} asked for a remix"), N_("{member} asked for a remix of job #{parent}")),
    "extend": (N_("{member} asked for an extension"), N_("{member} asked for an extension of job #{parent}")),
    "animate": (N_("{member} asked to animate a picture"), None),
    "hd": (N_("{member} asked for an HD version"), N_("{member} asked for an HD version of job #{parent}")),
}
#: The result's first line, by ``Job.kind``.
_READY = {
    "command": N_("{member} your video is ready 🎬"),
    "rerun": N_("{member} here is your rerun 🔁"),
    "remix": N_("{member} here is your remix 🎨"),
    "extend": N_("{member} here is your extended clip ⏩"),
    "animate": N_("{member} your animation is ready 🎬"),
    "hd": N_("{member} here is your HD version ✨"),
}
_LINEAGE = {
    "rerun": N_("Rerun of job #{job}"),
    "remix": N_("Remix of job #{job}"),
    "extend": N_("Extension of job #{job}"),
    "animate": N_("Animation of job #{job}"),
    "hd": N_("HD of job #{job}"),
}
_NTH_EXTENSION = N_("Extension {n} of job #{job}")
#: What a video was made with, beside its lineage (its parameters' keys).
_MADE_WITH = {"end_image": N_("end frame"), "loop": N_("loop")}


def can_be_hd(job: Job) -> bool:
    """Whether an HD version of ``job``'s result can be asked for: a video made from text or a picture
    that is not already in HD (the model must offer ``hd`` too)."""
    params = job.params or {}
    return (
        job.kind != "hd"
        and not params.get("hd")
        and params.get("verb", "text") != "extend"
        and not params.get("end_image")
        and not params.get("loop")
    )


def label(locale: str, text: str, limit: int) -> str:
    """A translated label cut to Discord's limit (a catalog test keeps them short; this is the guard)."""
    return truncate(t(locale, text), limit)


def message_url(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def made_with(locale: str, job: Job) -> str:
    """ "end frame", "loop": the options a video was made with ("" for none)."""
    params = job.params or {}
    return " · ".join(t(locale, text) for key, text in _MADE_WITH.items() if params.get(key))


def lineage_note(locale: str, job: Job, *, extension: int = 0, origin_id: int | None = None) -> str:
    """ "Remix of job #12", "Extension 2 of job #12" ("" for a /video), then what it was made with
    ("Remix of job #12 · loop"); ``origin_id`` is the clip an extension chain started from (default: the
    parent)."""
    origin = _origin_note(locale, job, extension=extension, origin_id=origin_id)
    return " · ".join(part for part in (origin, made_with(locale, job)) if part)


def _origin_note(locale: str, job: Job, *, extension: int, origin_id: int | None) -> str:
    if job.kind not in _LINEAGE or job.parent_job_id is None:
        return ""
    source = origin_id or job.parent_job_id
    if job.kind == "extend" and extension > 0:
        return t(locale, _NTH_EXTENSION, n=Number(extension), job=source)
    return t(locale, _LINEAGE[job.kind], job=source)


def status_header(locale: str, job: Job) -> str:
    count = wanted_videos(job)
    plain, of_parent = _ASKED.get(job.kind, _ASKED["command"])
    member = user_mention(job.user_id)
    if count > 1 and job.kind == "command":
        verb = tn(
            locale,
            "{member} asked for {n} variation",
            "{member} asked for {n} variations",
            count,
            member=member,
        )
    elif job.parent_job_id is not None and of_parent is not None:
        verb = t(locale, of_parent, member=member, parent=job.parent_job_id)
    else:
        verb = t(locale, plain, member=member)
    if count > 1 and job.kind != "command":
        verb += " " + tn(locale, "({n} variation)", "({n} variations)", count)
    prompt = truncate(escape(prompt_of(job)), STATUS_PROMPT_CHARS)
    return f"🎬 {verb} · {job_marker(locale, job.id)}\n{quote(prompt)}"


def queue_place(locale: str, position: int | None) -> str:
    """``#3 in the queue`` (``waiting in the queue`` while the place is not known)."""
    if position:
        return t(locale, "#{position} in the queue", position=Number(position))
    return t(locale, "waiting in the queue")


def status_text(
    locale: str,
    job: Job,
    position: int | None,
    *,
    per_step: float | None = None,
    starts_in: float | None = None,
) -> str:
    """The public status message: queue position (and estimated start) while queued, a progress bar
    with the time left while running. ``per_step``: the model's measured seconds per step; ``starts_in``:
    the estimated seconds until a queued job starts."""
    head = status_header(locale, job)
    if job.status == "queued":
        where = queue_place(locale, position)
        if starts_in is not None:
            if starts_in < 1:
                where += " · " + t(locale, "starts now")
            else:
                where += " · " + t(locale, "starts in about {time}", time=_seconds(locale, starts_in))
        return f"{head}\n⏳ {where}"
    if job.status == "running":
        step, total = job.progress_step or 0, job.progress_total or 0
        if job.cancel_requested:
            stopping = t(locale, "stopping…")
            return f"{head}\n🛑 {stopping}"
        if total <= 0 or step <= 0:
            eta = eta_seconds(job, per_step)
            line = t(locale, "starting…")
            if eta is not None:
                line += " · " + t(locale, "about {time} left", time=_seconds(locale, eta))
            return f"{head}\n⚙️ {line}"
        pct = math.floor(100 * step / total)
        line = t(
            locale,
            "step {step}/{total} · {percent}%",
            step=Number(step),
            total=Number(total),
            percent=Number(pct),
        )
        eta = eta_seconds(job, per_step)
        if step >= total:
            line += " · " + t(locale, "encoding…")
        elif eta is not None:
            line += " · " + t(locale, "about {time} left", time=_seconds(locale, eta))
        return f"{head}\n`{progress_bar(step, total)}` {line}"
    return head


def preview_filename(job_id: int, content_type: str) -> str:
    """The status message's preview picture (never contains user text)."""
    ext = {"image/webp": "webp", "image/png": "png", "image/jpeg": "jpg"}.get(content_type, "webp")
    return f"preview-{job_id}.{ext}"


#: A job's status as /queue and the cancel answers name it.
STATUS_NAMES = {
    "queued": N_("queued"),
    "running": N_("running"),
    "succeeded": N_("finished"),
    "delivered": N_("posted"),
    "failed": N_("failed"),
    "cancelled": N_("cancelled"),
    "undeliverable": N_("not posted"),
    "held": N_("held for review"),
}


def status_name(locale: str, status: str) -> str:
    return t(locale, STATUS_NAMES[status]) if status in STATUS_NAMES else status


def cancel_answer(locale: str, state: str, job: Job, user_id: int) -> str:
    """The ephemeral answer to a cancel (``/cancel`` or the Cancel button), by ``CancelOutcome.state``."""
    if state == "cancelled":
        if job.user_id == user_id:
            return t(locale, "Cancelled job #{job}. The credit was refunded.", job=job.id)
        return t(
            locale,
            "Cancelled job #{job} (requested by {member}). The credit was refunded.",
            job=job.id,
            member=user_mention(job.user_id),
        )
    if state == "requested":
        return t(
            locale,
            "Job #{job} is being made right now: it will stop at its next step, "
            "and the credit will be refunded then.",
            job=job.id,
        )
    return t(
        locale,
        "Job #{job} already finished ({status}); there is nothing to cancel.",
        job=job.id,
        status=status_name(locale, job.status),
    )


def status_done(locale: str, job: Job, jump_url: str | None) -> str:
    if job.generation_seconds and jump_url:
        done = t(
            locale, "done in {time}: {link}", time=_seconds(locale, job.generation_seconds), link=jump_url
        )
    elif job.generation_seconds:
        done = t(locale, "done in {time}", time=_seconds(locale, job.generation_seconds))
    elif jump_url:
        done = t(locale, "done: {link}", link=jump_url)
    else:
        done = t(locale, "done")
    return f"{status_header(locale, job)}\n✅ {done}"


def why_failed(locale: str, job: Job) -> str:
    """Why the job ended without a video, in ``locale``, saying that the credit came back."""
    reason: Text = job_error(job)
    english = render("en", reason).strip()
    text = render(locale, reason).strip() or t(locale, "The video could not be made.")
    # The core's and the worker's messages say so themselves when they mention the refund.
    if "refund" not in english.lower():
        text = t(locale, "{reason} Your credit was refunded.", reason=text)
    return text


def status_failed(locale: str, job: Job) -> str:
    icon = "🚫" if job.status == "cancelled" else "❌"
    return f"{status_header(locale, job)}\n{icon} {why_failed(locale, job)}"


def status_undeliverable(locale: str, job: Job) -> str:
    """The status of a video that was made but could not be posted (why: the stored reason)."""
    reason = render(locale, job_error(job)).strip()
    line = t(locale, "The video was made but could not be posted here: {reason}", reason=reason)
    return f"{status_header(locale, job)}\n⚠️ {line}"


def failure_notice(locale: str, job: Job) -> str:
    """A short message to the requester when the status message cannot tell them (or the job failed)."""
    member, marker, reason = user_mention(job.user_id), job_marker(locale, job.id), why_failed(locale, job)
    if job.status == "cancelled":
        text = t(
            locale,
            "{member} your video ({job}) was cancelled: {reason}",
            member=member,
            job=marker,
            reason=reason,
        )
    else:
        text = t(
            locale,
            "{member} your video ({job}) could not be made: {reason}",
            member=member,
            job=marker,
            reason=reason,
        )
    return truncate(text, MAX_CONTENT)


def _seeds(locale: str, job: Job, results: list[Any]) -> str:
    seed = (job.params or {}).get("seed")
    if not isinstance(seed, int):
        return t(locale, "seed {seed}", seed="?")
    if wanted_videos(job) == 1:
        return t(locale, "seed {seed}", seed=seed)
    seeds = ", ".join(str((seed + int(getattr(r, "variant", 0))) % 2**32) for r in results)
    return t(locale, "seeds {seeds}", seeds=seeds)


def style_note(locale: str, job: Job) -> str:
    """``style `ink` `` for a job made with a server style ("" without one)."""
    style = (job.params or {}).get("style")
    if not isinstance(style, str) or not style:
        return ""
    shown = "`" + escape_model(style) + "`"
    return t(locale, "style {style}", style=shown)


def result_footer(locale: str, job: Job, results: list[Any]) -> str:
    """``-# job #12 · seed 42 · `model` · 4.0 s · made in 1 min 5 s · react 🔁 for another take``."""
    details = [job_marker(locale, job.id), _seeds(locale, job, results), f"`{escape_model(job.model)}`"]
    if style := style_note(locale, job):
        details.append(style)
    duration = getattr(results[0], "duration_s", None) if results else None
    if duration:
        details.append(t(locale, "{seconds} s", seconds=Number(duration, decimals=1)))
    if job.generation_seconds:
        details.append(t(locale, "made in {time}", time=_seconds(locale, job.generation_seconds)))
    details.append(t(locale, "react {emoji} for another take", emoji=RERUN_EMOJI))
    return "-# " + " · ".join(details)


def result_content(
    locale: str, job: Job, results: Any, *, extension: int = 0, origin_id: int | None = None
) -> str:
    """The result message: mention, what it is (a remix of …, with a link to the message it came
    from), the prompt (escaped, truncated to fit 2000 chars) and the details.

    ``results``: the job's videos (one, or its variations); when only some variations were made,
    a line says so (and that their credits came back).
    """
    results = list(results) if isinstance(results, (list, tuple)) else [results]
    count = len(results)
    member = user_mention(job.user_id)
    if count > 1 and job.kind == "command":
        head = tn(
            locale,
            "{member} your {n} variation is ready 🎬",
            "{member} your {n} variations are ready 🎬",
            count,
            member=member,
        )
    else:
        head = t(locale, _READY.get(job.kind, _READY["command"]), member=member)
    note = lineage_note(locale, job, extension=extension, origin_id=origin_id)
    if note:
        if job.reply_to_message_id:
            note += f" · {message_url(job.guild_id, job.channel_id, job.reply_to_message_id)}"
        head += f"\n-# {note}"
    if job.error_code == "partial" and job.error_message:
        head += f"\n⚠️ {escape(render(locale, job_error(job)))}"
    footer = result_footer(locale, job, results)
    budget = MAX_CONTENT - len(head) - len(footer) - 4 - 10
    enhanced = enhance_line(locale, job, budget)
    if enhanced:
        # The member's prompt keeps at least half the room; the enhanced one gets the rest.
        mine = quote(truncate(escape(prompt_of(job)), max(budget // 2, budget - len(enhanced) - 1)))
        body = mine + "\n" + enhance_line(locale, job, budget - len(mine) - 1)
    else:
        body = quote(truncate(escape(prompt_of(job)), budget))
    content = f"{head}\n{body}\n{footer}"
    return content[:MAX_CONTENT]


#: An enhanced prompt up to this long is shown as it is; a longer one is collapsed in a spoiler (Discord
#: has no collapsible text in a message: a spoiler stays a short dark bar until it is clicked).
ENHANCED_INLINE_CHARS = 200
ENHANCED_LABEL = N_("✨ Enhanced prompt:")
ENHANCED_LONG_LABEL = N_("✨ Enhanced prompt (click to show):")


def enhance_line(locale: str, job: Job, limit: int) -> str:
    """The line under the member's prompt on a result: the prompt the video was really made from (escaped,
    within ``limit`` characters, in a spoiler when long), or why it could not be enhanced; "" when the
    job did not ask."""
    enhanced = str(getattr(job, "enhanced_prompt", None) or "")
    if enhanced:
        text = escape(enhanced)
        if len(text) <= ENHANCED_INLINE_CHARS:
            label = t(locale, ENHANCED_LABEL)
            return f"-# {label} {truncate(text, max(limit - len(label) - 4, 1))}"
        label = t(locale, ENHANCED_LONG_LABEL)
        return f"-# {label} ||{truncate(text, max(limit - len(label) - 8, 1))}||"
    note = getattr(job, "enhance_note", None)
    if note:
        return truncate(f"ℹ️ {escape(render(locale, recognize(str(note))))}", limit)
    return ""


def enhanced_tag(locale: str, job: Job) -> str:
    """ "prompt enhanced" for a job that asks for it (``/queue``), else ""."""
    return t(locale, "prompt enhanced") if (job.params or {}).get("enhance") else ""


def escape_model(name: str) -> str:
    return name.replace("`", "'")[:100]


def queued_note(
    locale: str, job: Job, position: int, balance: int, jump_url: str | None = None, *, first_of: int = 0
) -> str:
    """The ephemeral answer to /video (and to a button) once the job is queued; ``first_of``: the
    number of videos of the result an extension continues (or an HD job enlarges) the first of (1: say
    nothing)."""
    where = queue_place(locale, position) if position else t(locale, "starting now")
    what = lineage_note(locale, job)
    if what:
        text = t(locale, "Queued as job #{job} ({what}) ({where}).", job=job.id, what=what, where=where)
    else:
        text = t(locale, "Queued as job #{job} ({where}).", job=job.id, where=where)
    text += " " + tn(locale, "You have {n} credit left.", "You have {n} credits left.", balance)
    if jump_url:
        text += " " + t(locale, "Progress: {link}", link=jump_url)
    if first_of > 1 and job.kind == "hd":
        text += " " + tn(
            locale,
            "It is the first of the {n} video, in HD.",
            "It is the first of the {n} videos, in HD.",
            first_of,
        )
    elif first_of > 1:
        text += " " + tn(
            locale,
            "It continues the first of the {n} video.",
            "It continues the first of the {n} videos.",
            first_of,
        )
    return text


# ---------------------------------------------------------------------------------------- safety review
#: The approve and reject buttons under a held result in the review channel.
BUTTON_APPROVE = N_("Approve")
BUTTON_REJECT = N_("Reject")
#: Error codes whose reason is told only to the requester (the public status says "could not be made").
PRIVATE_FAILURES = frozenset({"unsafe_input", "rejected"})


def review_filename(job: Job, variant: int = 0) -> str:
    """A held video in the review channel: a spoiler (Discord blurs it until clicked)."""
    return "SPOILER_" + result_filename(job, variant)


def review_nonce(job_id: int) -> str:
    """The review post's nonce (one post per held job, even when a restart sends it again)."""
    return f"review-{job_id}"


def score_text(score: float | None) -> str:
    return "—" if score is None else f"{score:.2f}"


def review_content(locale: str, job: Job, score: float | None, level: str, status_url: str | None) -> str:
    """The review post: who asked, where, the score and the prompt (escaped); a moderator decides."""
    head = t(
        locale,
        "🔍 Held for review · {job} · {member} in <#{channel}> · safety score {score} (level {level})",
        job=job_marker(locale, job.id),
        member=user_mention(job.user_id),
        channel=job.channel_id,
        score=score_text(score),
        level=level,
    )
    link = f"\n{status_url}" if status_url else ""
    return f"{head}{link}\n{quote(truncate(escape(prompt_of(job)), STATUS_PROMPT_CHARS))}"


def review_decided(locale: str, job: Job, approved: bool, moderator_id: int) -> str:
    """The review post once decided (its buttons removed)."""
    if approved:
        line = t(
            locale,
            "✅ Approved by {moderator}: posted in <#{channel}>.",
            moderator=user_mention(moderator_id),
            channel=job.channel_id,
        )
    else:
        line = t(
            locale, "🗑️ Rejected by {moderator}: the video was deleted.", moderator=user_mention(moderator_id)
        )
    return f"{job_marker(locale, job.id)} · {line}"


def held_notice(locale: str, job: Job, score: float | None, refunded: bool) -> str:
    """What the requester alone reads when their result is held."""
    text = t(
        locale,
        "Your video ({job}) was not posted: this server's safety check flagged it (score {score}), so it "
        "waits for a moderator's review. You will be told what they decide.",
        job=job_marker(locale, job.id),
        score=score_text(score),
    )
    if refunded:
        text += " " + t(locale, "Your credit was refunded.")
    return text


def held_public_notice(locale: str, job: Job) -> str:
    """When the requester cannot be told privately: a neutral public line, nothing of the video."""
    return t(
        locale,
        "{member} your video ({job}) is waiting for a moderator's review.",
        member=user_mention(job.user_id),
        job=job_marker(locale, job.id),
    )


def status_held(locale: str, job: Job) -> str:
    """The public status of a held result: no video, no reason."""
    held = t(locale, "held for review")
    return f"{status_header(locale, job)}\n⏸️ {held}"


def status_not_made(locale: str, job: Job) -> str:
    """The public status of a job whose reason is told only to the requester (``PRIVATE_FAILURES``)."""
    line = t(locale, "The video could not be made.")
    return f"{status_header(locale, job)}\n❌ {line}"


def private_failure_public_notice(locale: str, job: Job) -> str:
    """When the requester cannot be told privately why: a neutral public line."""
    return t(
        locale,
        "{member} your video ({job}) could not be made.",
        member=user_mention(job.user_id),
        job=job_marker(locale, job.id),
    )
