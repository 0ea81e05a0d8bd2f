"""Group the submits that arrive together into one transaction (a burst of ``/video``).

Measured under a burst of 200 ``/video`` (bench/bench_ack.py): one transaction per submit makes
200 writers queue for SQLite's write lock (each waiting writer polls with the busy handler's
sleeps, holding a pooled connection meanwhile) or for pooled connections and member row locks on
PostgreSQL, and every submit projects the whole queue again for its position. ``SubmitBatcher``
keeps flusher tasks (owned here, ended by ``close()``) that take everything submitted in the
last ``window`` seconds (and whatever arrived while the previous batch was written), at most
``max_batch``, and write it with ``JobQueue.submit_many``: one transaction, one queue projection.
SQLite has one writer at a time, so one flusher (``concurrency=1``); on PostgreSQL the time goes
into round trips (about 14 per request: member lock, limits, ledger, insert, charge) more than into
locks, so several small batches are written at once (the bot: 8 batches of at most 8, measured
best of 4 × 16 and 8 × 8 for 183 submits on PostgreSQL: 3.2 s and 1.5 s); ``submit_many`` locks
members in one order, so batches written at once never deadlock.

Each caller still gets its own answer: its ``Submitted`` (created, or the existing job for a key seen
before: charged once) or its own refusal (``QuotaExceeded``, ``TooManyQueued``). When the batch
fails as a whole (the database, a key raced by another process), each request is retried alone
with ``JobQueue.submit``, so one bad request never takes the others down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from videobot.jobs.records import SubmitRequest, Submitted
from videobot.jobs.transitions import Transitions
from videobot.models import Intake

log = logging.getLogger(__name__)


class SubmitBatcher:
    """``await batcher.submit(req)`` behaves like ``queue.submit(req)``, batched with its neighbours."""

    def __init__(
        self, queue: Transitions, *, window: float = 0.005, max_batch: int = 64, concurrency: int = 1
    ) -> None:
        self.queue = queue
        self.window = window
        self.max_batch = max_batch
        self.concurrency = concurrency
        self._pending: list[tuple[SubmitRequest, asyncio.Future[Submitted]]] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._closed = False
        self.batches = 0

    async def submit(self, req: SubmitRequest) -> Submitted:
        if self._closed:
            return await self.queue.submit(req)
        future: asyncio.Future[Submitted] = asyncio.get_running_loop().create_future()
        self._pending.append((req, future))
        if len(self._flushers) < self.concurrency:
            task = asyncio.create_task(self._flush(), name="submit-batcher")
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await future

    async def close(self) -> None:
        """Write what is pending, then stop batching (later submits go straight to the queue)."""
        self._closed = True
        for task in list(self._flushers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _flush(self) -> None:
        await asyncio.sleep(self.window)  # let the neighbours of the first request arrive
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            live = [(req, fut) for req, fut in batch if not fut.cancelled()]
            if not live:
                continue
            self.batches += 1
            try:
                results = await self.queue.submit_many([req for req, _ in live])
            except asyncio.CancelledError:
                for _, fut in live:
                    if not fut.done():
                        fut.cancel()
                raise
            except Exception as exc:
                log.warning(
                    "a batch of %d submits failed (%s); submitting them one by one",
                    len(live),
                    type(exc).__name__,
                )
                for req, fut in live:  # in arrival order: the first one asking gets the last credit
                    await self._alone(req, fut)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    async def _alone(self, req: SubmitRequest, fut: asyncio.Future[Submitted]) -> None:
        try:
            result = await self.queue.submit(req)
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
            return
        if not fut.done():
            fut.set_result(result)


class IntakeBatcher:
    """Intakes (``videobot.models.Intake``) that arrive together are written, and closed, in one
    transaction: every ``/video`` of a burst records its intake before it is queued and drops it once
    answered, and one write per request would double the writers queueing for SQLite's lock."""

    def __init__(self, queue: Transitions, *, window: float = 0.005) -> None:
        self.queue = queue
        self.window = window
        self._opens: list[tuple[Intake, asyncio.Future[None]]] = []
        self._closes: list[tuple[int, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def open(self, intake: Intake) -> None:
        """Returns once the intake is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._opens.append((intake, future))
        self._start()
        await future

    async def close(self, interaction_id: int) -> None:
        """Returns once the intake (and its token) is gone."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closes.append((interaction_id, future))
        self._start()
        await future

    async def aclose(self) -> None:
        """Write what is pending."""
        if self._flusher is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flusher

    def _start(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="intake-batcher")

    async def _flush(self) -> None:
        await asyncio.sleep(self.window)
        while self._opens or self._closes:
            opens, self._opens = self._opens, []
            closes, self._closes = self._closes, []
            futures = [f for _, f in opens] + [f for _, f in closes]
            try:
                await self.queue.write_intakes([i for i, _ in opens], [c for c, _ in closes])
            except Exception as exc:
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)
