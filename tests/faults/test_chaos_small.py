"""A small chaos run (bench/chaos.py): every verb a member has (/video with text, a picture and
variations, an end picture, a loop, a server style, enhancement; Rerun, Remix, Extend, HD, Delete, Cancel
buttons and forms; 🔁; /cancel; Animate) while workers are killed and frozen and the bot is killed;
nothing lost, doubled or mischarged."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import VERBS, ChaosConfig, run_chaos

pytestmark = pytest.mark.e2e


async def test_small_chaos_run_with_every_verb_loses_and_doubles_nothing(tmp_path: Path) -> None:
    # Each verb twice per deck of 32: every verb comes up within the run (one with nothing to act on
    # yet, e.g. Delete before the first result, comes later in its deck).
    cfg = ChaosConfig(
        submissions=48, worker_kills=2, bot_kills=1, stops=1, seed=7, deadline=240,
        mix={verb: 2 for verb in VERBS}, oom_rate=0.5, cancel_wait=30, misfit_every=2,
    )  # fmt: skip
    report = await run_chaos(cfg, tmp_path)
    print("\n".join(report.lines()))
    assert report.settled, report.lines()
    assert report.worker_kills == 2 and report.bot_kills == 1 and report.stops == 1
    assert report.kills_holding_a_job >= 2  # the kills hit running jobs
    # Every verb was used, and every kind of job was made and delivered.
    assert set(report.verbs) == set(VERBS), report.lines()
    assert {"command", "image", "variations", "rerun", "remix", "extend", "animate"} <= set(
        report.jobs_by_kind
    )
    assert {"end_image", "loop", "style", "enhance", "hd"} <= set(report.jobs_by_kind), report.lines()
    assert report.delivered >= 20 and report.cancelled_refunded >= 1
    assert report.lost == 0, report.lost_ids
    assert report.delivered_twice == 0 and report.delivered_privately == 0
    assert report.unanswered == 0, (
        report.unanswered_ids
    )  # the next bot answers what the killed one acknowledged
    assert report.duplicate_completions == 0
    assert report.ledger_mismatches == 0, report.ledger_problems
    assert report.reactions_ignored == 0
    # HD replies decode at twice their source's size; a style made for another model never makes a
    # video (its jobs fail, refunded: the ledger check above).
    assert sum(report.hd_jobs.values()) >= 1 and report.hd_wrong_size == 0, report.hd_problems
    misfits = {status: n for (style, status), n in report.style_jobs.items() if style == "wan-only"}
    assert report.style_jobs[("ink", "delivered")] >= 1 and sum(misfits.values()) >= 1, report.lines()
    assert "delivered" not in misfits, report.lines()
    assert not report.bad, report.lines()
    assert report.jobs == (
        report.delivered + report.failed_refunded + report.cancelled_refunded + report.undeliverable
    )
