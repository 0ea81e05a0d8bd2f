"""Text the bot shows: status/progress lines, the result message, refusals. Pure functions, no I/O.

User text (prompts) is always escaped (markdown and mentions) and never used in a file name.
"""

from __future__ import annotations

import math
from typing import Any

import discord

from videobot.models import Job

MAX_CONTENT = 2000
STATUS_PROMPT_CHARS = 300
BAR_CELLS = 10


def job_marker(job_id: int) -> str:
    """The tag every message about a job carries; the result's file name carries the id too."""
    return f"job #{job_id}"


def result_filename(job_id: int) -> str:
    """Never contains user text."""
    return f"videobot-{job_id}.mp4"


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


def status_header(job: Job) -> str:
    verb = "asked for a rerun" if job.kind == "rerun" else "asked for a video"
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


def result_content(job: Job, result: Any) -> str:
    """The result message: mention, the prompt (escaped, truncated to fit 2000 chars) and the details."""
    params = job.params or {}
    head = (
        f"<@{job.user_id}> here is your rerun 🔁"
        if job.kind == "rerun"
        else f"<@{job.user_id}> your video is ready 🎬"
    )
    details = [job_marker(job.id), f"seed {params.get('seed', '?')}", f"`{escape_model(job.model)}`"]
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


def queued_note(job: Job, position: int, balance: int, jump_url: str | None) -> str:
    """The ephemeral answer to /video once the job is queued."""
    where = f"#{position} in the queue" if position else "starting now"
    link = f" Progress: {jump_url}" if jump_url else ""
    return f"Queued as {job_marker(job.id)} ({where}). You have {balance} credit(s) left.{link}"
