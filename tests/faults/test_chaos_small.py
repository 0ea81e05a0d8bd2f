"""A small chaos run (bench/chaos.py): workers killed and frozen, the bot killed, cancels; nothing lost or doubled."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import ChaosConfig, run_chaos

pytestmark = pytest.mark.e2e


async def test_small_chaos_run_loses_and_doubles_nothing(tmp_path: Path) -> None:
    cfg = ChaosConfig(jobs=30, worker_kills=3, bot_kills=1, stops=1, seed=7, deadline=150, cancel_rate=0.1)
    report = await run_chaos(cfg, tmp_path)
    print("\n".join(report.lines()))
    assert report.settled, report.lines()
    assert report.accepted >= 25 and report.delivered >= 20
    assert report.worker_kills == 3 and report.bot_kills == 1 and report.stops == 1
    assert report.kills_holding_a_job >= 3  # the kills hit running jobs
    assert report.lost == 0, report.lost_ids
    assert report.delivered_twice == 0
    assert report.unanswered == 0  # the next bot answers what the killed one acknowledged
    assert report.duplicate_completions == 0
    assert report.ledger_mismatches == 0, report.ledger_problems
    assert report.accepted == report.delivered + report.failed_refunded + report.cancelled_refunded
