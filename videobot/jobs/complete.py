"""How a run ends on the worker: the videos stored and the job succeeded (claiming the next in the same
transaction), or failed (queued again while attempts remain) with its refund.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Update

from videobot import quota
from videobot.db import db_now
from videobot.errors import LeaseLost
from videobot.i18n import join, nmsg
from videobot.jobs.cancel import Cancelling
from videobot.jobs.claim import Claiming
from videobot.jobs.records import Claim, ResultData, wanted_videos
from videobot.jobs.statements import LEASE_CLEARED, Hot, drop_previews, notify_sync, update_jobs
from videobot.models import Job, JobStatus

log = logging.getLogger(__name__)


class Completing(Claiming, Cancelling):
    """Complete (and claim the next), fail."""

    async def complete(
        self,
        c: Claim,
        result: ResultData | Sequence[ResultData],
        *,
        missing_reason: str | None = None,
        had_previews: bool = True,
    ) -> str:
        """Store the video(s) and mark the job succeeded; returns the new status (see ``complete_and_claim``)."""
        status, _ = await self.complete_and_claim(
            c, result, missing_reason=missing_reason, had_previews=had_previews
        )
        return status

    async def complete_and_claim(
        self,
        c: Claim,
        result: ResultData | Sequence[ResultData],
        *,
        missing_reason: str | None = None,
        models: Iterable[str] | None = None,
        had_previews: bool = True,
        styles: Iterable[str] = (),
    ) -> tuple[str, Claim | None]:
        """Store the video(s) and mark the job succeeded; returns the new status.

        ``result`` is one video, or the variations made (each with its ``variant``). When the job asked
        for more (``num_videos``) than were made, the share of the charge for the missing ones is
        refunded once (``partial_refund``) and ``error_message`` tells the member, with
        ``missing_reason`` (why they could not be made). The result rows are written first and the
        status last, so ``updated_at`` (the bot's feed) is stamped just before the commit, however
        large the videos. A job whose cancel flag was set ends ``cancelled`` and refunded instead,
        the render discarded (returns "cancelled"): a cancel always ends a job. Raises ``LeaseLost``
        if fenced out, ``ValueError`` for no video or variants that are not distinct.

        With ``models`` (a busy worker that goes on), the same transaction also claims the worker's
        next job (as ``claim(c.owner, models)`` would) and returns its ``Claim``: one commit between
        two jobs instead of two. Returns ``(status, next claim or None)``. ``had_previews=False``
        (the worker never tried to store a preview in this attempt) skips deleting the job's preview:
        every transition that stops a running job deletes it, so an earlier attempt left none.
        ``styles``: the style sources the worker has loaded (see ``claim``).
        """
        results = [result] if isinstance(result, ResultData) else list(result)
        variants = [r.variant for r in results]
        if not results or len(set(variants)) != len(variants) or min(variants) < 0:
            raise ValueError(f"job {c.job_id}: complete() needs distinct videos, got variants {variants}")
        key = tuple(models or ()) if models is not None else None
        loaded = tuple(styles)
        wanted = max(wanted_videos(c.params), len(results))
        taken: Any = None
        status = None
        if wanted == len(results):
            # Nearly always the job is still ours and not cancelled: the status change (fenced, and
            # only while the cancel flag is clear) says so without reading the row first, and the
            # whole transaction is one synchronous function (on SQLite, one hand-over to a thread).
            try:
                taken = await self.db.run_sync(self._complete_sync, c, results, key, had_previews, loaded)
                status = JobStatus.SUCCEEDED.value
            except _Recheck:  # fenced out or cancelled meanwhile: everything was rolled back
                pass
        if status is None:
            status, taken, wanted = await self._complete_checked(c, results, missing_reason, key, loaded)
        following = self._claimed(taken, c.owner, key) if key is not None else None
        if status == JobStatus.CANCELLED.value:
            log.info("job %s was cancelled while it was finishing: render discarded, refunded", c.job_id)
            return status, following
        log.info(
            "job %s succeeded (%d of %d video(s), %d bytes%s)",
            c.job_id,
            len(results),
            wanted,
            sum(len(r.video) for r in results),
            ", the missing ones refunded" if wanted > len(results) else "",
        )
        return status, following

    def _complete_sync(
        self,
        conn: Connection,
        c: Claim,
        results: list[ResultData],
        key: tuple[str, ...] | None,
        had_previews: bool,
        styles: tuple[str, ...] = (),
    ) -> Any:
        """``complete_and_claim``'s common transaction: store, succeed, claim the next (its row or
        None). Raises ``_Recheck`` (rolling back) when the job is no longer ours or cancelled."""
        if not _store_results(conn, c, results, Hot.succeed, drop_preview=had_previews):
            raise _Recheck()
        notify_sync(conn, [c.job_id])
        return self._take_next_sync(conn, c.owner, key, styles) if key is not None else None

    async def _complete_checked(
        self,
        c: Claim,
        results: list[ResultData],
        missing_reason: str | None,
        key: tuple[str, ...] | None,
        styles: tuple[str, ...] = (),
    ) -> tuple[str, Any, int]:
        """``complete_and_claim`` that locks and reads the row first: ``LeaseLost``, a cancel settled
        (cancelled, refunded), or the videos stored with the missing variations refunded. Returns
        (status, the claimed row or None, videos wanted)."""
        fence = {"b_id": c.job_id, "b_owner": c.owner, "b_attempt": c.attempt}
        async with self.db.transaction() as s:
            conn = await s.connection()
            row = (await conn.execute(Hot.lock_running, fence)).first()
            if row is None:
                raise LeaseLost(f"job {c.job_id}: not completed, lease lost")
            wanted = max(wanted_videos(row.params), len(results))
            if row.cancel_requested:
                await self._end_cancelled(s, self._fence(c))
                status = JobStatus.CANCELLED.value
            else:
                succeed = Hot.succeed
                missing = wanted - len(results)
                if missing:
                    credits = await quota.refund_part(s, c.job_id, missing, wanted, reason="variations")
                    succeed = succeed.values(
                        error_code="partial",
                        error_message=_partial_message(missing, wanted, credits, missing_reason),
                    )
                # The row is locked above: only a bug fails here.
                if not await conn.run_sync(_store_results, c, results, succeed, True):
                    raise LeaseLost(f"job {c.job_id}: not completed, lease lost")
                await self._notify(s, [c.job_id])
                status = JobStatus.SUCCEEDED.value
            taken = await self._take_next(s, c.owner, key, styles) if key is not None else None
        return status, taken, wanted

    async def fail(self, c: Claim, message: str, *, code: str = "error", retryable: bool = False) -> str:
        """Record a failure. Retryable failures go back to the queue while attempts remain.

        A job whose cancel flag was set ends ``cancelled`` (refunded) instead, retryable or not.
        Returns the new status ("queued", "failed" or "cancelled"). Raises ``LeaseLost`` if fenced out.
        """
        async with self.db.transaction() as s:
            if await self._end_cancelled(s, [*self._fence(c), Job.cancel_requested.is_(True)]):
                log.info("job %s stopped (%s) after a cancel: cancelled, refunded", c.job_id, code)
                return JobStatus.CANCELLED.value
            if retryable:
                res = await s.execute(
                    update_jobs(
                        *self._fence(c),
                        Job.attempts < Job.max_attempts,
                        status=JobStatus.QUEUED.value,
                        **LEASE_CLEARED,
                        error_message=message,
                        error_code=code,
                    )
                )
                if res.rowcount == 1:
                    await drop_previews(s, [c.job_id])
                    await self._notify(s, [c.job_id])
                    log.warning("job %s failed (retryable, %s), queued again: %s", c.job_id, code, message)
                    return JobStatus.QUEUED.value
            await quota.refund(s, c.job_id, reason=code)
            res = await s.execute(
                update_jobs(
                    *self._fence(c),
                    status=JobStatus.FAILED.value,
                    **LEASE_CLEARED,
                    finished_at=db_now(),
                    error_message=message,
                    error_code=code,
                )
            )
            if res.rowcount != 1:  # rolls the refund back
                raise LeaseLost(f"job {c.job_id}: not failed, lease lost")
            await drop_previews(s, [c.job_id])
            await self._notify(s, [c.job_id])
        log.warning("job %s failed (%s), refunded: %s", c.job_id, code, message)
        return JobStatus.FAILED.value


def _store_results(
    conn: Connection, c: Claim, results: Sequence[ResultData], succeed: Update, drop_preview: bool
) -> bool:
    """Write a job's videos, then its status (``succeed``: fenced by ``c``, only while the cancel flag
    is clear; the status stays the last write, the feed's stamp), then drop its preview when
    ``drop_preview``. False (nothing to keep: the caller rolls back) when the status did not change."""
    conn.execute(
        Hot.insert_result,
        [
            {
                "job_id": c.job_id,
                "variant": r.variant,
                "video": r.video,
                "poster": r.poster,
                "content_type": r.content_type,
                "size_bytes": len(r.video),
                "width": r.width,
                "height": r.height,
                "num_frames": r.num_frames,
                "fps": r.fps,
                "duration_s": r.duration_s,
                "encode_notes": r.encode_notes,
                "safety_score": r.safety_score,
                "safety_frame": r.safety_frame,
                "safety_model": r.safety_model,
            }
            for r in results
        ],
    )
    first = results[0]
    res = conn.execute(
        succeed,
        {
            "b_id": c.job_id,
            "b_owner": c.owner,
            "b_attempt": c.attempt,
            "b_generation_seconds": first.generation_seconds,
            "b_seconds_per_step": first.seconds_per_step,
            "b_peak_gpu_bytes": first.peak_gpu_bytes,
        },
    )
    if res.rowcount != 1:
        return False
    if drop_preview:
        conn.execute(Hot.drop_preview, {"b_id": c.job_id})
    return True


class _Recheck(Exception):
    """``complete``'s status change found the job no longer ours or cancelled: roll back and look."""


def _partial_message(missing: int, wanted: int, credits: int, why: str | None) -> str:
    """What the result message says when only some of a job's variations were made: stored in
    English, shown in the server's language (``jobs.job_error`` recognises these messages)."""
    made = wanted - missing
    if why:
        what = nmsg(
            "{made} of {n} variation was made; {missing} could not be ({reason}).",
            "{made} of {n} variations were made; {missing} could not be ({reason}).",
            wanted,
            made=made,
            missing=missing,
            reason=why.rstrip("."),
        )
    else:
        what = nmsg(
            "{made} of {n} variation was made; {missing} could not be.",
            "{made} of {n} variations were made; {missing} could not be.",
            wanted,
            made=made,
            missing=missing,
        )
    back = (
        nmsg("{n} credit for them was refunded.", "{n} credits for them were refunded.", credits)
        if credits
        else None
    )
    return str(join(what, back))
