"""Group the submits that arrive together into one transaction (a burst of ``/video``).

Measured under a burst of 200 ``/video`` (bench/bench_ack.py): one transaction per submit makes
200 writers queue for SQLite's write lock (each waiting writer polls with the busy handler's
sleeps, holding a pooled connection meanwhile) or for pooled connections and member row locks on
PostgreSQL, and every submit projects the whole queue again for its position. ``SubmitBatcher``
keeps one flusher task (owned here, ended by ``close()``) that takes everything submitted in the
last ``window`` seconds (and whatever arrived while the previous batch was written), at most
``max_batch``, and writes it with ``JobQueue.submit_many``: one transaction, one queue projection.

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

log = logging.getLogger(__name__)


class SubmitBatcher:
    """``await batcher.submit(req)`` behaves like ``queue.submit(req)``, batched with its neighbours."""

    def __init__(self, queue: Transitions, *, window: float = 0.005, max_batch: int = 64) -> None:
        self.queue = queue
        self.window = window
        self.max_batch = max_batch
        self._pending: list[tuple[SubmitRequest, asyncio.Future[Submitted]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0

    async def submit(self, req: SubmitRequest) -> Submitted:
        if self._closed:
            return await self.queue.submit(req)
        future: asyncio.Future[Submitted] = asyncio.get_running_loop().create_future()
        self._pending.append((req, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="submit-batcher")
        return await future

    async def close(self) -> None:
        """Write what is pending, then stop batching (later submits go straight to the queue)."""
        self._closed = True
        if self._flusher is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flusher
            self._flusher = None

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
                await asyncio.gather(*(self._alone(req, fut) for req, fut in live))
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
