"""One channel's Discord message budget, shared by priority.

Discord allows about 5 message creates and 5 edits/deletes per 5 s per channel (two buckets; NOTES.md,
"Discord, more"). Left to discord.py, requests queue on a bucket in the order they were made, so 150
status posts of a burst would hold up a result posted in the same channel for minutes, and 150
queue-position edits would starve the running job's progress. ``ChannelBudget`` sits in front: every
message create or edit the delivery code makes in a channel first takes a slot in that channel's
lane, and a lane hands out its slots

* by priority (``RESULT`` before ``PROGRESS`` before ``BACKGROUND``), oldest request first within one;
* at most ``limit`` per sliding ``per`` seconds, which never exceeds Discord's fixed windows, so
  discord.py rarely has to wait out a 429;
* keeping ``reserve`` slots of every window for anything above ``BACKGROUND``: a burst of status
  posts or position edits never uses the whole window, so a result or a progress edit that arrives
  while they wait gets a slot at once.

Discord's real budget may differ from the defaults; a 429 is still handled by discord.py (it waits
and retries), the lane only avoids causing it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

#: Priorities (lower goes first).
RESULT = 0  # finished videos, final status texts, failure notices
PROGRESS = 1  # the running job's progress
BACKGROUND = 2  # public status posts of queued jobs, queue-position edits

CREATE = "create"
EDIT = "edit"


class _Lane:
    def __init__(self) -> None:
        self.sent: deque[float] = deque()
        self.waiters: list[tuple[int, float, int]] = []
        self.changed = asyncio.Event()


class ChannelBudget:
    """Per (kind, channel) lanes of ``limit`` requests per sliding ``per`` seconds, served by priority."""

    def __init__(self, *, limit: int = 5, per: float = 5.0, reserve: int = 1, margin: float = 0.3) -> None:
        self.limit = limit
        self.per = per + margin
        self.reserve = reserve
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._seq = itertools.count()

    def _lane(self, kind: str, channel_id: int) -> _Lane:
        lane = self._lanes.get((kind, channel_id))
        if lane is None:
            lane = self._lanes[(kind, channel_id)] = _Lane()
        return lane

    def _wait_seconds(self, lane: _Lane, priority: int, now: float) -> float:
        """Seconds until ``priority`` may send in this lane (0: now)."""
        while lane.sent and lane.sent[0] <= now - self.per:
            lane.sent.popleft()
        allowed = self.limit - (self.reserve if priority >= BACKGROUND else 0)
        if len(lane.sent) < allowed:
            return 0.0
        return lane.sent[len(lane.sent) - allowed] + self.per - now

    def try_take(self, kind: str, channel_id: int, priority: int) -> float:
        """Take a slot now if ``priority`` may send and nobody more urgent waits: 0.0; else seconds to
        wait before asking again (for a single sender that picks its request at the last moment)."""
        lane = self._lane(kind, channel_id)
        now = time.monotonic()
        if lane.waiters and lane.waiters[0][0] <= priority:
            return 0.05
        wait = self._wait_seconds(lane, priority, now)
        if wait > 0:
            return wait
        lane.sent.append(now)
        return 0.0

    def waiting(self, kind: str, channel_id: int, below: int | None = None) -> int:
        """How many requests wait in a lane (only those more urgent than ``below`` if given)."""
        lane = self._lanes.get((kind, channel_id))
        if lane is None:
            return 0
        return sum(1 for w in lane.waiters if below is None or w[0] < below)

    @asynccontextmanager
    async def slot(self, kind: str, channel_id: int, priority: int, rank: float = 0.0) -> AsyncIterator[None]:
        """Wait for this request's turn; the slot counts from when it is given (used or not)."""
        await self.acquire(kind, channel_id, priority, rank)
        yield

    async def acquire(self, kind: str, channel_id: int, priority: int, rank: float = 0.0) -> None:
        """Wait for a slot: the most urgent waiter (priority, then ``rank``, then arrival) goes first."""
        lane = self._lane(kind, channel_id)
        ticket = (priority, rank, next(self._seq))
        heapq.heappush(lane.waiters, ticket)
        self._poke(lane)
        try:
            while True:
                now = time.monotonic()
                if lane.waiters[0] == ticket:
                    wait = self._wait_seconds(lane, priority, now)
                    if wait <= 0:
                        heapq.heappop(lane.waiters)
                        lane.sent.append(now)
                        self._poke(lane)
                        return
                else:
                    wait = self.per
                lane.changed.clear()
                try:
                    await asyncio.wait_for(lane.changed.wait(), wait)
                except TimeoutError:
                    pass
        except BaseException:
            if ticket in lane.waiters:
                lane.waiters.remove(ticket)
                heapq.heapify(lane.waiters)
                self._poke(lane)
            raise

    def release(self, kind: str, channel_id: int) -> None:
        """Give back the newest slot of a lane (taken but not used)."""
        lane = self._lanes.get((kind, channel_id))
        if lane is not None and lane.sent:
            lane.sent.pop()
            self._poke(lane)

    @staticmethod
    def _poke(lane: _Lane) -> None:
        lane.changed.set()
