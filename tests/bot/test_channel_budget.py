"""One channel's message budget shared by priority (``bot.delivery.budget``) and the status editor's
order (``bot.delivery.editor``): results and final texts first, then progress, then queue positions."""

from __future__ import annotations

import asyncio
import time

import discord

from bot.delivery.budget import BACKGROUND, CREATE, EDIT, PROGRESS, RESULT, ChannelBudget
from bot.delivery.editor import StatusEditor

CHANNEL = 42


def fresh_message_id() -> int:
    return discord.utils.time_snowflake(discord.utils.utcnow())


async def test_a_window_holds_limit_requests_and_background_leaves_the_reserve() -> None:
    budget = ChannelBudget(limit=5, per=0.6, reserve=1, margin=0.0)
    t0 = time.monotonic()
    for _ in range(4):
        await budget.acquire(CREATE, CHANNEL, BACKGROUND)
    assert time.monotonic() - t0 < 0.1  # 4 at once
    # The 5th slot is kept for something more urgent: background waits for the window, a result does not.
    waiting = asyncio.create_task(budget.acquire(CREATE, CHANNEL, BACKGROUND))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await asyncio.wait_for(budget.acquire(CREATE, CHANNEL, RESULT), 0.1)
    await waiting
    assert time.monotonic() - t0 >= 0.55  # never more than 5 in any 0.6 s
    # Another lane (edits) and another channel have their own budget.
    await asyncio.wait_for(budget.acquire(EDIT, CHANNEL, BACKGROUND), 0.1)
    await asyncio.wait_for(budget.acquire(CREATE, CHANNEL + 1, BACKGROUND), 0.1)


async def test_waiters_are_served_most_urgent_first() -> None:
    budget = ChannelBudget(limit=1, per=0.2, reserve=0, margin=0.0)
    await budget.acquire(CREATE, CHANNEL, RESULT)  # the window is full now
    order: list[str] = []

    async def one(name: str, priority: int, rank: float = 0.0) -> None:
        await budget.acquire(CREATE, CHANNEL, priority, rank)
        order.append(name)

    tasks = [asyncio.create_task(one("status post 2", BACKGROUND, 2))]
    await asyncio.sleep(0.01)
    tasks.append(asyncio.create_task(one("status post 1", BACKGROUND, 1)))
    await asyncio.sleep(0.01)
    tasks.append(asyncio.create_task(one("result", RESULT)))
    await asyncio.gather(*tasks)
    assert order == ["result", "status post 1", "status post 2"]


async def test_progress_and_final_texts_go_before_a_backlog_of_queue_positions() -> None:
    sent: list[str] = []

    async def edit(channel_id: int, message_id: int, text: str, **_: object) -> None:
        sent.append(text)

    budget = ChannelBudget(limit=2, per=0.3, reserve=1, margin=0.0)
    editor = StatusEditor(edit, budget=budget, min_interval=0.0, global_gap=0.0)
    editor.start()
    try:
        message = fresh_message_id()
        for job in range(1, 11):  # ten queued jobs' positions, farthest first
            editor.update(job, CHANNEL, message, f"position {11 - job}", priority=BACKGROUND, rank=11 - job)
        await asyncio.sleep(0.05)
        editor.update(100, CHANNEL, message, "progress 50%", priority=PROGRESS)
        final = asyncio.create_task(editor.final(200, CHANNEL, message, "done"))
        assert await asyncio.wait_for(final, 2.0)
        deadline = time.monotonic() + 5
        while len(sent) < 12 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await editor.close()
    # Whatever position edit went first, the final text and the progress overtook the backlog,
    # and the positions then went nearest place first.
    assert sent.index("done") < sent.index("progress 50%") < sent.index("position 3")
    positions = [int(t.split()[1]) for t in sent if t.startswith("position")]
    assert positions[1:] == sorted(positions[1:]) and len(positions) == 10


async def test_a_sender_that_dies_of_an_unexpected_error_answers_its_final_and_is_replaced() -> None:
    sent: list[str] = []

    async def edit(channel_id: int, message_id: int, text: str, **_: object) -> None:
        if text == "done 1":
            raise RuntimeError("a bug, not an HTTP error")
        sent.append(text)

    budget = ChannelBudget(limit=5, per=0.3, reserve=1, margin=0.0)
    editor = StatusEditor(edit, budget=budget, min_interval=0.0, global_gap=0.0)
    editor.start()
    try:
        message = fresh_message_id()
        editor.update(1, CHANNEL, message, "progress 10%", priority=PROGRESS)
        editor.update(2, CHANNEL, message, "position 1", priority=BACKGROUND)
        # The final goes first and kills the sender; its caller (a delivery slot) is answered anyway.
        assert await asyncio.wait_for(editor.final(3, CHANNEL, message, "done 1"), 5.0) is False
        # The edits that were waiting go out without another update in the channel: a new sender.
        deadline = time.monotonic() + 5
        while len(sent) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert sorted(sent) == ["position 1", "progress 10%"]
        assert await asyncio.wait_for(editor.final(4, CHANNEL, message, "done 2"), 5.0) is True
        assert sent[-1] == "done 2"
    finally:
        await editor.close()


async def test_a_final_text_that_never_goes_out_stops_waiting() -> None:
    stuck = asyncio.Event()

    async def edit(channel_id: int, message_id: int, text: str, **_: object) -> None:
        await stuck.wait()  # an edit that never returns

    editor = StatusEditor(edit, budget=ChannelBudget(margin=0.0), global_gap=0.0, final_timeout=0.5)
    editor.start()
    try:
        message = fresh_message_id()
        started = time.monotonic()
        assert await asyncio.wait_for(editor.final(1, CHANNEL, message, "done"), 10.0) is False
        assert time.monotonic() - started < 10.0
        assert editor.pending(CHANNEL) == 0
    finally:
        await editor.close()
