"""Faults and bad input, end to end: the real bot and worker against the fake Discord (``-m e2e``).

Each module shares one harness; a failing test prints the tail of every process log.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.e2e.harness import BotHarness
from videobot.models import LedgerEntry

_ACTIVE: list[BotHarness] = []

#: Known gap (issue 9), shown as XFAIL where it happens, never hidden: with Discord's rate limits (the fake
#: enforces them) the /video answer waits for the public status post, which waits for the channel's
#: message-create bucket (5 per 5 s); a tiny job can be done first, and the answer then says "ready"
#: instead of "Queued as". Remove once the answer no longer waits for the status post.
LATE_ANSWER = "FINDING issue 9: /video answer waited for the rate-limited status post; the job finished first"
#: Tests that met it (their own checks still run; the report shows them as XFAIL with the reason).
_LATE_ANSWER_MET: set[str] = set()


def late_answer_met() -> None:
    """Record that the running test met the known gap (see LATE_ANSWER)."""
    _LATE_ANSWER_MET.add(os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0])


def answered_job_ids(texts: list[str]) -> tuple[list[int], bool]:
    """Job ids from "Queued as job #N" answers; True if any answer came only when its video was ready."""
    ids, late = [], False
    for text in texts:
        if queued := re.match(r"Queued as job #(\d+)", text):
            ids.append(int(queued[1]))
        elif ready := re.match(r"Your video \(job #(\d+)\) is ready", text):
            ids.append(int(ready[1]))
            late = True
        else:
            raise AssertionError(f"not an answer to /video: {text!r} in {texts}")
    return ids, late


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end tests with the real bot and worker processes (slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call" and report.passed and item.nodeid in _LATE_ANSWER_MET:
        # Everything the test checks passed, but it met the known gap: show it (XFAIL), do not hide it.
        report.outcome = "skipped"
        report.wasxfail = LATE_ANSWER
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _dump_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for harness in list(_ACTIVE):
            harness.dump_logs()


@contextlib.asynccontextmanager
async def shared_harness(harness: BotHarness) -> AsyncIterator[BotHarness]:
    """Start a harness for a module and print its logs when one of its tests fails."""
    async with harness as h:
        _ACTIVE.append(h)
        try:
            yield h
        finally:
            _ACTIVE.remove(h)
    problems = harness.fd.problems()
    assert problems == [], problems


async def answer(h: BotHarness, interaction: Any, timeout: float = 20.0) -> str:
    """The text the ephemeral deferred response became."""
    await interaction.acknowledged(3)
    await h.wait_for(
        lambda: (interaction.original or {}).get("content"), timeout, f"answer to {interaction.name}"
    )
    return interaction.original["content"]


async def queue_video(h: BotHarness, user_id: int, prompt: str, **options: Any) -> tuple[Any, int]:
    """/video that must be queued; returns (interaction, job id)."""
    interaction = await h.slash(user_id, "video", prompt=prompt, **options)
    text = await answer(h, interaction)
    if late := re.match(r"Your video \(job #(\d+)\) is ready", text):
        late_answer_met()  # the known gap (see LATE_ANSWER): the test goes on, and is reported XFAIL
        return interaction, int(late[1])
    found = re.search(r"Queued as job #(\d+)", text)
    assert found, text
    return interaction, int(found[1])


def result_posts(h: BotHarness, job_id: int, *, ephemeral: bool = False) -> list[dict[str, Any]]:
    """Public messages in the test channel that carry the job's result file (or the ephemeral ones)."""
    name = f"videobot-{job_id}.mp4"
    return [
        m
        for m in h.fd.messages(h.channel_id, include_ephemeral=True)
        if m["ephemeral"] == ephemeral and any(a["filename"] == name for a in m["attachments"])
    ]


async def ledger_kinds(h: BotHarness, job_id: int) -> list[tuple[str, int]]:
    rows: list[LedgerEntry] = await h.ledger()
    return sorted((e.kind, e.amount) for e in rows if e.job_id == job_id)


@contextlib.contextmanager
def worker_paused(h: BotHarness) -> Iterator[None]:
    """Freeze the worker process (well inside its 30 s lease) so a queued job stays queued meanwhile."""
    pid = h.worker.pid
    assert pid is not None and h.worker.running
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
