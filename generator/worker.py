"""``videobot worker``: the GPU worker process.

Loads one pipeline once, then loops: recover stale leases, claim (fair share, only the models it
serves), run the pipeline in a thread (so heartbeats keep flowing during a 10-minute job),
encode, store, complete. A busy worker claims its next job in the transaction that stores the last
one (``complete_and_claim``: one commit between two jobs); a claim it holds when it stops goes back
to the queue, its attempt not counted. A job with variations (``num_videos``) renders them in batches of up to
the preset's ``batch_cap`` (``run_variations``), encodes each within its share of one message's
upload limit and stores them in one ``complete``; variations that ran out of memory are left out
and refunded there. While a job runs, its lease is renewed every second (with progress when
it moved); that heartbeat returns the cancel flag, and the next denoising step stops the job by
raising out of ``callback_on_step_end`` (the pipeline thread never waits for the database). A
cancel that arrives after the last step is settled by ``complete`` (cancelled, refunded).

A database outage does not throw a render away: heartbeats fail and are retried, the render goes
on, and storing the result is retried until the database is back (``db_retry``, up to 2 minutes;
the lease must outlast the outage). Only connection-level errors count as an outage
(``db_unreachable``); any other database error is a bug: logged, and the job fails (refunded).

SIGTERM / Ctrl-C: stop claiming, let the running job finish within
``VIDEOBOT_SHUTDOWN_GRACE_SECONDS``, otherwise stop it at the next step and hand it back to the
queue (the attempt does not count), then exit 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from generator.preview import PreviewTimer
from videobot.db import Database
from videobot.errors import (
    GenerationOOM,
    InvalidParameters,
    JobCancelled,
    LeaseLost,
    TransientJobError,
    UnsafeInput,
)
from videobot.guilds import blocked_entry
from videobot.i18n import N_, msg
from videobot.jobs import Claim, JobQueue, QueueConfig, ResultData
from videobot.models import JobStatus
from videobot.planning import file_budget
from videobot.presets import GenerationParams, plan, resolve_preset, run_steps, tiny_family
from videobot.runner import MODEL_LOAD_FAILED
from videobot.safety import INPUT_LEVEL, UNSAFE_INPUT, flagged
from videobot.settings import Settings
from videobot.styles import JOB_KEYS as STYLE_KEYS

log = logging.getLogger(__name__)

#: Stored in English; the bot shows it in the server's language (``videobot.jobs.job_error``).
GENERIC_FAILURE = N_(
    "Something went wrong while making this video. Your credit was refunded; please try again later."
)
PROGRESS_INTERVAL = 1.0


# Errors a queue operation can raise from the database; only those ``db_unreachable`` accepts are an outage.
DB_ERRORS = (DBAPIError, PoolTimeout, OSError)

#: PostgreSQL SQLSTATEs that go away by themselves: connection exceptions (08…), the server shutting
#: down or starting up (57P01–57P03), too many connections, serialization failure, deadlock.
_TRANSIENT_SQLSTATE = ("08", "57P01", "57P02", "57P03", "53300", "40001", "40P01")
#: SQLite errors that go away by themselves (another writer, a file briefly unavailable).
_TRANSIENT_SQLITE = ("database is locked", "database is busy", "unable to open database", "disk i/o error")


def db_unreachable(exc: BaseException) -> bool:
    """True if ``exc`` (raised by a queue operation) means "the database cannot be reached right now".

    Connection-level errors only: a refused, reset or invalidated connection, a pool timeout, a
    server restarting, SQLite's "database is locked". A ``DataError``, ``IntegrityError`` or
    ``ProgrammingError`` is a bug and retrying it cannot help.
    """
    if isinstance(exc, PoolTimeout | OSError):  # refused, reset, timed out
        return True
    if not isinstance(exc, DBAPIError):  # a driver error not wrapped by SQLAlchemy (e.g. while connecting)
        sqlstate = getattr(exc, "sqlstate", None)
        return bool(sqlstate) and str(sqlstate).startswith(_TRANSIENT_SQLSTATE)
    if exc.connection_invalidated:
        return True
    if isinstance(exc, DataError | IntegrityError | ProgrammingError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate:
        return str(sqlstate).startswith(_TRANSIENT_SQLSTATE)
    if type(orig).__module__.startswith("sqlite3"):
        return isinstance(exc, OperationalError) and any(m in str(orig).lower() for m in _TRANSIENT_SQLITE)
    if isinstance(orig, OSError) or isinstance(getattr(orig, "__cause__", None), OSError):
        return True
    return isinstance(exc, OperationalError | InterfaceError)


async def db_retry(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a queue operation, retrying while the database is unreachable (restart, network blip)."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(db_unreachable),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_after_delay(120),
        reraise=True,
        before_sleep=lambda rs: log.warning(
            "database unavailable (%s); retrying", type(rs.outcome.exception()).__name__
        ),
    ):
        with attempt:
            return await fn(*args, **kwargs)


class _Abort(Exception):
    """Raised at a denoising step when shutdown's grace period is over: the job goes back to the queue."""


def gpu_memory_bytes() -> int | None:
    """Peak GPU memory this process allocated since the current job started, when it has a GPU."""
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


def reset_gpu_peak() -> None:
    """Start a job's peak GPU memory count from what is allocated now (the loaded model)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


class _Previews(PreviewTimer):
    """The worker's preview sink: the pipeline thread leaves the newest preview, the heartbeat stores it."""

    stored: tuple[int, bytes, str] | None = None
    #: A preview was sent to the database in this attempt (stored or not): ``complete`` deletes it.
    sent = False

    def unstored(self) -> tuple[int, bytes, str] | None:
        latest = self.latest
        return latest if latest is not None and latest is not self.stored else None


@dataclass
class _Running:
    claim: Claim
    progress: tuple[int, int] = (0, 0)
    written: tuple[int, int] = (0, 0)
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    previews: _Previews | None = None
    first_step: tuple[int, float] | None = None  # (step, monotonic time) of the first step callback
    last_step: tuple[int, float] | None = None

    def seconds_per_step(self, run_started: float) -> float | None:
        """Mean seconds per denoising step, timed between step callbacks (text encoding and VAE decode left
        out); with a single step, from the start of the run."""
        if self.first_step is None or self.last_step is None:
            return None
        (k0, t0), (k1, t1) = self.first_step, self.last_step
        return (t1 - t0) / (k1 - k0) if k1 > k0 else (t1 - run_started) / max(k1, 1)


def params_for(pipeline_preset: Any, raw: dict[str, Any]) -> GenerationParams:
    """The job's parameters: planned by the bot, or (a bare request) planned here for this worker's preset."""
    if "num_frames" in raw:
        return GenerationParams.from_dict(raw)
    planned = plan(
        pipeline_preset,
        raw.get("prompt", ""),
        negative_prompt=raw.get("negative_prompt") or "",
        seed=raw.get("seed"),
        duration_s=raw.get("duration_s"),
        aspect_ratio=raw.get("aspect_ratio"),
        verb=raw.get("verb") or "text",
        image=raw.get("image"),
        source_video=raw.get("source_video"),
        num_videos=raw.get("num_videos", 1),
        audio=raw.get("audio"),
        end_image=raw.get("end_image"),
        loop=bool(raw.get("loop")),
    )
    # A server style travels with the bare request as it does with planned parameters.
    style = {k: raw[k] for k in STYLE_KEYS if raw.get(k) is not None}
    return replace(planned, enhance=bool(raw.get("enhance")), **style)


class Worker:
    """Claims and runs jobs with one loaded pipeline until ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        queue: JobQueue,
        pipeline: Any,
        *,
        worker_id: str,
        models: list[str],
        load_inputs: Callable[[GenerationParams, dict[str, bytes]], dict[str, Any]] | None = None,
        safety: Any = None,
        enhancer: Any = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``safety``: the loaded ``generator.safety.SafetyClassifier`` that scores every input picture and
        result (None: no check). ``monotonic`` and ``sleep`` time the heartbeats (a test passes a clock
        it moves)."""
        from generator.inputs import load_inputs as load_stored_inputs

        self.settings = settings
        #: Decodes a job's stored image / source clip (in a thread): ``(params, blobs) -> run() kwargs``.
        self.load_inputs = load_inputs or load_stored_inputs
        self.safety = safety
        #: The ``generator.enhance.PromptEnhancer`` that rewrites prompts of jobs asking for it (None: off).
        self.enhancer = enhancer
        self.monotonic = monotonic
        self.sleep = sleep
        self.queue = queue
        self.pipeline = pipeline
        self.worker_id = worker_id
        self.models = models
        self.stopping = asyncio.Event()
        self.abort = threading.Event()
        self.current: _Running | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._grace: asyncio.TimerHandle | None = None
        self.jobs_done = 0

    def loaded_styles(self) -> tuple[str, ...]:
        """The server styles the pipeline has loaded (a claim prefers their jobs among equals)."""
        styles = getattr(self.pipeline, "styles", None)
        return styles.loaded() if styles is not None else ()

    def stop(self) -> None:
        """Stop claiming; the running job gets the grace period, then is handed back."""
        if self.stopping.is_set():
            return
        log.info("worker %s stopping: no new jobs will be claimed", self.worker_id)
        self.stopping.set()
        if self.current is not None and self._loop is not None:
            grace = self.settings.shutdown_grace_seconds
            log.info(
                "job %s: waiting up to %.0f s for it to finish before shutdown",
                self.current.claim.job_id,
                grace,
            )
            # Then the next denoising step raises _Abort and the job goes back to the queue.
            self._grace = self._loop.call_later(grace, self.abort.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        (self.settings.data_dir / "tmp").mkdir(parents=True, exist_ok=True)
        await db_retry(self.queue.worker_seen, self.worker_id, self.models)
        last_recover = 0.0
        last_seen = self.monotonic()
        backoff = 0.0
        claim: Claim | None = None  # the next job, when storing the last one claimed it already
        try:
            while not self.stopping.is_set():
                try:
                    now = self.monotonic()
                    if now - last_recover > min(self.settings.lease_seconds / 4, 15.0):
                        last_recover = now
                        await self.queue.recover_stale()
                    if now - last_seen > self.settings.heartbeat_seconds:
                        last_seen = now
                        await self.queue.worker_seen(
                            self.worker_id, self.models, gpu_memory_bytes=gpu_memory_bytes()
                        )
                    if claim is None:
                        claim = await self.queue.claim(
                            self.worker_id, self.models, styles=self.loaded_styles()
                        )
                    backoff = 0.0
                except DB_ERRORS as exc:
                    backoff = min(max(backoff * 2, 0.5), 10.0)
                    log.warning(
                        "database unavailable (%s); trying again in %.1f s", type(exc).__name__, backoff
                    )
                    try:
                        await asyncio.wait_for(self.stopping.wait(), timeout=backoff)
                    except TimeoutError:
                        pass
                    continue
                if claim is None:
                    try:
                        await asyncio.wait_for(self.stopping.wait(), timeout=self.settings.poll_seconds)
                    except TimeoutError:
                        pass
                    continue
                if self.stopping.is_set():  # asked to stop while claiming: the claim goes back (finally)
                    break
                # In this task: stop() gives the running job its grace period (see stop).
                claim = await self.process(claim)
        finally:
            if self._grace is not None:
                self._grace.cancel()
            if claim is not None:  # claimed with the last result, never started: back to the queue
                await self._settle(claim, self.queue.release, claim)
            try:
                await self.queue.worker_gone(self.worker_id)
            except DB_ERRORS:
                log.warning("could not remove worker %s from the database", self.worker_id)

    # ------------------------------------------------------------------ one job
    async def process(self, claim: Claim) -> Claim | None:
        """Run one claimed job to an end state (or back to the queue).

        Returns the next job when storing this one's result claimed it in the same transaction
        (``complete_and_claim``; not while stopping), else None.
        """
        every = self.settings.preview_seconds
        run = _Running(claim, previews=_Previews(every) if every > 0 else None)
        self.current = run
        beat = asyncio.create_task(self._heartbeats(run), name=f"heartbeat-{claim.job_id}")
        try:
            return await self._run_job(run)
        finally:
            beat.cancel()
            try:
                await beat
            except (asyncio.CancelledError, Exception):
                pass
            self.current = None

    async def _run_job(self, run: _Running) -> Claim | None:
        c = run.claim
        q = self.queue
        t0 = time.monotonic()
        try:
            params = params_for(self.pipeline.preset, c.params)
            self.pipeline.check_inputs(params)
            if params.style_source is not None:
                log.info(
                    "job %s: style %s (%s at %g; loaded: %s)",
                    c.job_id,
                    params.style,
                    params.style_source,
                    params.style_scale,
                    "yes" if params.style_source in self.loaded_styles() else "not yet",
                )
            if params.enhance:
                params = await self._enhance(run, params)
            from generator.pipeline import total_steps

            run.progress = (0, total_steps(self.pipeline.preset, params))
            stored = params.verb != "text" or params.end_image
            blobs = await db_retry(q.get_inputs, c.job_id) if stored else {}
            # Inputs, render and encode in one hand-over to a thread: heartbeats go on meanwhile.
            run_started, variations, made, encoded, verdicts = await asyncio.to_thread(
                self._make, run, params, blobs
            )
            digest = next((v.output.conditioning_digest for v in variations if v.output is not None), None)
            if digest:
                log.info(
                    "job %s: first frame %dx%d pixel sha256 %s",
                    c.job_id,
                    params.width,
                    params.height,
                    digest,
                )
            end = next((v.output.end_digest for v in variations if v.output is not None), None)
            if end:
                log.info(
                    "job %s: last frame %dx%d pixel sha256 %s", c.job_id, params.width, params.height, end
                )
            elapsed = time.monotonic() - t0
            per_step = run.seconds_per_step(run_started)
            peak = gpu_memory_bytes()
            results = [
                ResultData(
                    video=enc.data,
                    poster=enc.poster,
                    width=enc.width,
                    height=enc.height,
                    num_frames=enc.num_frames,
                    fps=enc.fps,
                    duration_s=enc.duration_s,
                    encode_notes=enc.notes or None,
                    generation_seconds=elapsed,
                    seconds_per_step=per_step,
                    peak_gpu_bytes=peak,
                    variant=v.index,
                    safety_score=verdict.score if verdict else None,
                    safety_frame=verdict.frame if verdict else None,
                    safety_model=verdict.model if verdict else None,
                )
                for v, enc, verdict in zip(made, encoded, verdicts, strict=True)
            ]
            why_missing = next((v.error for v in variations if v.output is None), None)
        except JobCancelled:
            await self._settle(c, q.acknowledge_cancel, c)
            return None
        except _Abort:
            await self._settle(c, q.release, c)
            return None
        except (InvalidParameters, GenerationOOM) as exc:
            # Never retried: the same request would fail the same way. Refunded by fail().
            await self._settle(c, q.fail, c, str(exc), code=exc.code, retryable=False)
            return None
        except Exception as exc:
            from generator.encode import StorageError

            retryable = isinstance(exc, StorageError | OSError | TransientJobError)
            log.exception("job %s failed (%s)", c.job_id, "retryable" if retryable else "unexpected")
            await self._settle(
                c, q.fail, c, GENERIC_FAILURE, code="storage" if retryable else "error", retryable=retryable
            )
            return None
        try:
            # Going on: the next job is claimed in the same transaction (one commit between jobs).
            going_on = None if self.stopping.is_set() else self.models
            status, following = await db_retry(
                q.complete_and_claim,
                c,
                results,
                missing_reason=why_missing,
                models=going_on,
                had_previews=run.previews is not None and run.previews.sent,
                styles=self.loaded_styles(),
            )
        except LeaseLost as exc:
            log.warning("job %s: %s; dropping it", c.job_id, exc)
            return None
        except Exception as exc:
            if db_unreachable(exc):
                log.exception(
                    "job %s: database unreachable for too long; the lease will expire and it runs again",
                    c.job_id,
                )
            else:
                log.exception("job %s: the result could not be stored (a bug, not an outage)", c.job_id)
                await self._settle(c, q.fail, c, GENERIC_FAILURE, code="error", retryable=False)
            return None
        if status == JobStatus.CANCELLED.value:
            log.info("job %s: cancelled after its last step; the render was discarded", c.job_id)
            return following
        self.jobs_done += 1
        log.info(
            "job %s done in %.2f s (%s s/step over %d steps, peak GPU memory %s; %d of %d video(s), %s bytes%s, %s)",
            c.job_id,
            elapsed,
            f"{per_step:.3f}" if per_step is not None else "?",
            run_steps(self.pipeline.preset, params),
            f"{peak / 2**30:.2f} GiB" if peak is not None else "n/a (no GPU)",
            len(encoded),
            params.num_videos,
            "+".join(str(enc.size_bytes) for enc in encoded),
            " with sound" if encoded[0].has_audio else "",
            "; ".join(enc.notes or "first encode fit" for enc in encoded),
        )
        return following

    def _make(
        self, run: _Running, params: GenerationParams, blobs: dict[str, bytes]
    ) -> tuple[float, list[Any], list[Any], list[Any], list[Any]]:
        """In a thread: decode the job's inputs, check its picture, render its video(s), encode each,
        score each with the safety classifier.

        Returns (render start on the monotonic clock, the variations, those made, their encodes, their
        safety verdicts: None each when the check is off). Raises ``UnsafeInput`` before rendering when
        the job's picture scores above ``INPUT_LEVEL``, and ``JobCancelled`` when the heartbeat saw a
        cancel (at a denoising step, or between encodes: a cancel after the last step does not encode
        the rest for nothing).
        """
        from generator.encode import encode_mp4
        from generator.pipeline import run_variations

        inputs = self.load_inputs(params, blobs)
        for key in ("image", "end_image"):  # the first and the last frame's pictures alike
            if self.safety is None or inputs.get(key) is None:
                continue
            verdict = self.safety.score_image(inputs[key])
            log.info(
                "job %s: %s picture safety score %.4f (%s, %.0f ms)",
                run.claim.job_id,
                "input" if key == "image" else "end",
                verdict.score,
                verdict.model,
                verdict.seconds * 1000,
            )
            if flagged(verdict.score, INPUT_LEVEL):
                raise UnsafeInput(msg(UNSAFE_INPUT))
        reset_gpu_peak()
        run_started = time.monotonic()
        variations = run_variations(
            self.pipeline,
            params,
            lambda k, n: self._on_step(run, k, n),
            previews=run.previews,
            **inputs,
        )
        made = [v for v in variations if v.output is not None]
        # Every video of the job goes in one message: each gets its share of the request's limit.
        budget = file_budget(run.claim.upload_limit_bytes, len(made))
        encoded: list[Any] = []
        for v in made:
            assert v.output is not None
            if run.cancel.is_set():
                raise JobCancelled()
            encoded.append(
                encode_mp4(
                    v.output.frames,
                    params.fps,
                    max_bytes=budget,
                    tmp_dir=self.settings.data_dir / "tmp",
                    **v.output.audio_kwargs(encode_mp4),
                )
            )
        # Scored after encoding, before anything is stored: an extension's new frames (its source was
        # scored when it was made), every variation.
        start = len(inputs["video"]) if inputs.get("video") is not None else 0
        verdicts: list[Any] = []
        for v in made:
            if self.safety is None:
                verdicts.append(None)
                continue
            if run.cancel.is_set():
                raise JobCancelled()
            verdict = self.safety.score_video(v.output.frames, start=start)
            log.info(
                "job %s: video %d safety score %.4f (frame %d of %d, %d scored, %s, %.0f ms)",
                run.claim.job_id,
                v.index,
                verdict.score,
                verdict.frame,
                len(v.output.frames),
                verdict.frames_scored,
                verdict.model,
                verdict.seconds * 1000,
            )
            verdicts.append(verdict)
        return run_started, variations, made, encoded, verdicts

    async def _enhance(self, run: _Running, params: GenerationParams) -> GenerationParams:
        """The job's parameters with the prompt the enhancer wrote (stored with the job first), or as they
        are when it could not (the note saying so is stored instead): in a thread, before rendering.
        A cancel that arrived meanwhile (a first use may download the model) stops the job here."""
        from generator.enhance import ENHANCE_BLOCKED, enhance

        c = run.claim
        if params.enhanced_prompt:  # an HD job: its source's words, as they were
            log.info(
                "job %s: the enhanced prompt of its source (%d chars)", c.job_id, len(params.enhanced_prompt)
            )
            await db_retry(self.queue.record_enhancement, c, params.enhanced_prompt, None)
            return replace(params, prompt=params.enhanced_prompt)
        result = await asyncio.to_thread(
            enhance,
            self.enhancer,
            params.prompt,
            family=self.pipeline.preset.family,
            verb=params.verb,
            job_id=c.job_id,
        )
        if run.cancel.is_set():
            raise JobCancelled()
        if result.prompt is not None:
            # The server's blocklist holds for the model's words as it did for the member's.
            blocklist = await db_retry(self.queue.blocklist_of, c.job_id)
            entry = await asyncio.to_thread(blocked_entry, blocklist, result.prompt)
            if entry is not None:
                log.info(
                    "job %s: the enhanced prompt matches blocklist entry #%d; the member's prompt is used",
                    c.job_id,
                    entry + 1,
                )
                result = replace(result, prompt=None, note=ENHANCE_BLOCKED)
        await db_retry(self.queue.record_enhancement, c, result.prompt, result.note)
        return replace(params, prompt=result.prompt) if result.prompt else params

    async def _settle(self, c: Claim, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Record a job's end state, surviving a database outage and a lost lease."""
        try:
            await db_retry(fn, *args, **kwargs)
        except LeaseLost as exc:
            log.warning("job %s: %s", c.job_id, exc)
        except Exception:
            log.exception(
                "job %s: could not record its end; the lease will expire and it runs again", c.job_id
            )

    def _on_step(self, run: _Running, step: int, total: int) -> None:
        """Called from the pipeline thread after every denoising step."""
        now = time.monotonic()
        if run.first_step is None:
            run.first_step = (step, now)
        run.last_step = (step, now)
        run.progress = (step, total)
        if self.settings.test_step_delay:
            time.sleep(self.settings.test_step_delay)
        if self.abort.is_set():
            raise _Abort()
        if run.cancel.is_set():  # set by the heartbeat when the database says the job was cancelled
            raise JobCancelled()

    async def _heartbeats(self, run: _Running) -> None:
        """Renew the lease every second, with progress when it moved; the answer carries the cancel flag.

        A failed heartbeat (database unreachable) is retried a second later; the render goes on. The
        worker's own heartbeat (``/healthz``) is written every heartbeat interval, timed apart from the
        lease renewals.
        """
        every = self.settings.heartbeat_seconds
        last_seen = self.monotonic()
        while True:
            await self.sleep(PROGRESS_INTERVAL)
            now = self.monotonic()
            progress = run.progress if run.progress != run.written else None
            try:
                beat = await self.queue.heartbeat(run.claim, progress)
            except LeaseLost:
                log.warning("job %s: lease lost; stopping it", run.claim.job_id)
                run.cancel.set()
                return
            except Exception as exc:
                log.warning("job %s: heartbeat failed (%s); will retry", run.claim.job_id, type(exc).__name__)
                log.debug("heartbeat error", exc_info=True)
                continue
            if progress is not None:
                run.written = progress
            if beat.cancel_requested:
                run.cancel.set()
            preview = run.previews.unstored() if run.previews is not None else None
            if preview is not None and not run.cancel.is_set():
                try:
                    run.previews.sent = True  # type: ignore[union-attr]
                    await self.queue.put_preview(run.claim, *preview)
                    run.previews.stored = preview  # type: ignore[union-attr]
                except Exception as exc:  # a lost lease shows at the next heartbeat; a preview is never vital
                    log.warning("job %s: preview not stored (%s)", run.claim.job_id, type(exc).__name__)
            if now - last_seen >= every:
                try:
                    await self.queue.worker_seen(
                        self.worker_id,
                        self.models,
                        current_job_id=run.claim.job_id,
                        gpu_memory_bytes=gpu_memory_bytes(),
                    )
                    last_seen = now
                except Exception:
                    log.warning("job %s: could not record the worker heartbeat", run.claim.job_id)


def load_pipeline(settings: Settings) -> Any:
    from generator.pipeline import VideoPipeline
    from generator.speed import SpeedOptions
    from videobot.autoplan import explicit_memory_options

    return VideoPipeline.load(
        settings.model,
        data_dir=settings.data_dir,
        device=settings.device,
        dtype=settings.dtype,
        **explicit_memory_options(settings),
        speed=SpeedOptions.from_settings(settings),
        loras=settings.loras,
        hd_upsampler=settings.hd_upsampler,
        style_cache=settings.style_cache,
    )


def load_safety_for(settings: Settings, pipeline: Any) -> Any:
    """The safety classifier for ``VIDEOBOT_SAFETY_MODEL`` on the pipeline's run device (None when
    off, with a warning); raises ``generator.safety.SafetyLoadError``."""
    from generator.safety import load_safety

    return load_safety(
        settings.safety_model,
        data_dir=settings.data_dir,
        device=pipeline.device,
        video_model_is_tiny=tiny_family(pipeline.preset) is not None,
    )


def enhancer_for(settings: Settings, pipeline: Any) -> Any:
    """The prompt enhancer for ``VIDEOBOT_ENHANCE_MODEL`` on the pipeline's run device (None when off);
    nothing is loaded until a job asks for it."""
    from generator.enhance import load_enhancer

    return load_enhancer(settings.enhance_model, data_dir=settings.data_dir, pipeline=pipeline)


def freeze_loaded_objects() -> int:
    """Move every object alive now (the loaded model and libraries) out of the garbage collector's
    sight (``gc.freeze``); returns how many. A full collection walks every tracked object while it
    holds the interpreter: on the tiny model's ~450k objects it took ~180 ms, longer than a tiny job,
    and a real pipeline has more. After this it walks only what jobs create; the model's objects stay
    alive as long as the worker does anyway."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def served_models(settings: Settings, pipeline: Any) -> list[str]:
    """The queue model names this worker claims: the configured name and the preset it resolved to."""
    names = [settings.model, pipeline.preset.name]
    try:
        names.append(resolve_preset(settings.model).name)
    except InvalidParameters:
        pass
    return list(dict.fromkeys(names))


async def serve(settings: Settings) -> int:
    from generator.pipeline import ModelLoadError

    try:
        pipeline = await asyncio.to_thread(load_pipeline, settings)
    except ModelLoadError as exc:
        log.error("cannot load the model: %s", exc)
        print(f"videobot: cannot load the model: {exc}", file=sys.stderr)
        return MODEL_LOAD_FAILED
    from generator.safety import SafetyLoadError

    try:
        safety = await asyncio.to_thread(load_safety_for, settings, pipeline)
    except SafetyLoadError as exc:
        log.error("cannot load the safety classifier: %s", exc)
        print(f"videobot: cannot load the safety classifier: {exc}", file=sys.stderr)
        return MODEL_LOAD_FAILED
    enhancer = enhancer_for(settings, pipeline)
    frozen = freeze_loaded_objects()
    log.debug("%d objects loaded at start left out of garbage collection", frozen)
    db = Database(settings.db_url)
    queue = JobQueue(db, QueueConfig.from_settings(settings))
    worker = Worker(
        settings,
        queue,
        pipeline,
        worker_id=settings.worker_id or default_worker_id(),
        models=served_models(settings, pipeline),
        safety=safety,
        enhancer=enhancer,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    log.info(
        "worker %s ready: model %s on %s, serving %s, safety check %s",
        worker.worker_id,
        pipeline.preset.name,
        pipeline.device,
        worker.models,
        safety.name if safety is not None else "OFF",
    )
    try:
        await worker.run()
    finally:
        await db.dispose()
    log.info("worker %s stopped after %d job(s)", worker.worker_id, worker.jobs_done)
    return 0


def main(settings: Settings) -> int:
    """Entry point of ``videobot worker``."""
    try:
        return asyncio.run(serve(settings))
    except KeyboardInterrupt:  # a second Ctrl-C
        return 130
