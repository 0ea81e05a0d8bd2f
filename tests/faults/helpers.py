"""Helpers for the fault tests: drive the real bot through the fake Discord and read what it did."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from tests.e2e.harness import BotHarness
from videobot.models import LedgerEntry


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


def _write_lock_free(path: str) -> bool:
    con = sqlite3.connect(path, timeout=0.2)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        con.close()


@contextlib.contextmanager
def worker_paused(h: BotHarness) -> Iterator[None]:
    """Freeze the worker process (well inside its 30 s lease) so a queued job stays queued meanwhile.

    Never frozen inside a SQLite write transaction (it would hold the lock until thawed, and the bot
    could not queue anything): when the write lock is held at the moment of freezing, thaw and retry.
    """
    pid = h.worker.pid
    assert pid is not None and h.worker.running
    path = h.db_url.split(":///", 1)[1] if h.db_url.startswith("sqlite") else None
    for _ in range(100):
        os.kill(pid, signal.SIGSTOP)
        if path is None or _write_lock_free(path):
            break
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.02)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
