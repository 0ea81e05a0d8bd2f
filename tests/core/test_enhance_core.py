"""Prompt enhancement in the shared core: the request's option against the server's default, the refusal
without an enhancer, the options Rerun / Remix / Extend keep, the server setting with its audit row, the
job's columns, and migration 0022 up and down on a database that holds jobs and results."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select, text

from videobot import guilds, planning
from videobot.db import Database
from videobot.errors import InvalidParameters
from videobot.jobs import JobQueue, SubmitRequest
from videobot.migrate import downgrade, upgrade
from videobot.models import ModAction
from videobot.presets import GenerationParams
from videobot.settings import Settings

GUILD = 4242
MOD = 77


def settings(enhance_model: str = "auto", model: str = "tiny") -> Settings:
    return Settings(_env_file=None, VIDEOBOT_MODEL=model, VIDEOBOT_ENHANCE_MODEL=enhance_model)  # type: ignore[call-arg]


@pytest.mark.parametrize("model", ["tiny", "auto"])
def test_unsaid_takes_the_server_default_and_said_wins(model: str) -> None:
    s = settings(model=model)
    target = planning.queue_target(s)
    unsaid = planning.build_params(target, "a fox", seed=1)
    assert unsaid["enhance"] is None
    assert planning.with_server_enhance(s, unsaid, True)["enhance"] is True
    assert planning.with_server_enhance(s, unsaid, False)["enhance"] is False
    said_no = planning.build_params(target, "a fox", seed=1, enhance=False)
    assert planning.with_server_enhance(s, said_no, True)["enhance"] is False
    said_yes = planning.build_params(target, "a fox", seed=1, enhance=True)
    assert planning.with_server_enhance(s, said_yes, False)["enhance"] is True


def test_without_an_enhancer_asking_is_refused_and_the_server_default_counts_for_nothing() -> None:
    off = settings("off")
    assert not planning.enhance_offered(off) and not planning.enhance_offered(settings(""))
    with pytest.raises(InvalidParameters) as exc:
        planning.check_enhance(off, True)
    assert "not available" in str(exc.value) and "enhance option" in str(exc.value)
    planning.check_enhance(off, None)
    planning.check_enhance(off, False)
    params = planning.build_params(planning.queue_target(off), "a fox", seed=1)
    assert planning.with_server_enhance(off, params, True)["enhance"] is False


def test_rerun_remix_and_extend_keep_the_option_and_the_members_words() -> None:
    s = settings()
    target = planning.queue_target(s)
    params = planning.with_server_enhance(s, planning.build_params(target, "a fox", seed=1), True)
    assert planning.rerun_params(params)["enhance"] is True
    remix = planning.remix_params(params, "a wolf", "")
    assert remix["enhance"] is True and remix["prompt"] == "a wolf"
    assert planning.extend_params(target, params, "it jumps")["enhance"] is True
    assert GenerationParams.from_dict(params).enhance is True
    # A job row written before the option existed loads as "not enhanced".
    old = {k: v for k, v in params.items() if k != "enhance"}
    assert GenerationParams.from_dict(old).enhance is False


async def test_server_setting_is_stored_audited_and_read(db: Database) -> None:
    async with db.sessionmaker() as s:
        assert (await guilds.get_config(s, GUILD)).enhance is False
    async with db.transaction() as s:
        await guilds.set_enhance(s, GUILD, True, actor_id=MOD, reason="members asked")
    async with db.sessionmaker() as s:
        assert (await guilds.get_config(s, GUILD)).enhance is True
        rows = list(
            (await s.execute(select(ModAction).where(ModAction.action == "config.enhance"))).scalars()
        )
    assert [(r.actor_id, r.details, r.reason) for r in rows] == [
        (MOD, {"old": False, "new": True}, "members asked")
    ]


async def test_the_worker_stores_the_enhanced_prompt_under_its_lease(db: Database) -> None:
    q = JobQueue(db)
    params = planning.build_params(planning.queue_target(settings()), "a fox", seed=1, enhance=True)
    await q.submit(
        SubmitRequest(
            idempotency_key="e1", guild_id=GUILD, channel_id=2, user_id=3, model="tiny", params=params
        )
    )
    claim = await q.claim("w1", ["tiny"])
    assert claim is not None
    await q.record_enhancement(claim, "A red fox bounds through deep snow at dawn.", None)
    job = await q.get(claim.job_id)
    assert job is not None
    assert job.enhanced_prompt == "A red fox bounds through deep snow at dawn." and job.enhance_note is None
    assert job.params["prompt"] == "a fox"


async def test_migration_0022_up_and_down_keeps_jobs_and_results(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await asyncio.to_thread(upgrade, url, "0021")
    db = Database(url)
    try:
        async with db.transaction() as s:
            await s.execute(
                text(
                    "INSERT INTO jobs (id, idempotency_key, guild_id, channel_id, user_id, kind, model, params, "
                    "cost, status, attempts, max_attempts, cancel_requested, progress_step, progress_total, "
                    "upload_limit_bytes, created_at, queued_at, updated_at) VALUES (1, 'k', 1, 1, 1, 'command', "
                    "'tiny', '{}', 1, 'succeeded', 1, 3, false, 2, 2, 1000, 0, 0, 0)"
                )
            )
            await s.execute(
                text(
                    "INSERT INTO job_results (job_id, variant, video, content_type, size_bytes, width, height, "
                    "num_frames, fps, duration_s, created_at) "
                    "VALUES (1, 0, :video, 'video/mp4', 1, 32, 32, 9, 8, 1.1, 0)"
                ),
                {"video": b"\x00"},
            )
            await s.execute(
                text(
                    "INSERT INTO guild_configs (guild_id, allowed_channel_ids, blocklist, updated_at) "
                    "VALUES (5, '[]', '[]', 0)"
                )
            )
        await db.dispose()
        await asyncio.to_thread(upgrade, url)
        q = JobQueue(db)
        job = await q.get(1)
        assert job is not None and job.enhanced_prompt is None and job.enhance_note is None
        async with db.sessionmaker() as s:
            assert (await guilds.get_config(s, 5)).enhance is False
        assert [r.video for r in await q.get_results(1)] == [b"\x00"]
        await db.dispose()
        await asyncio.to_thread(downgrade, url, "0021")
        async with db.sessionmaker() as s:
            columns = {row[1] for row in (await s.execute(text("PRAGMA table_info(jobs)"))).all()}
            assert "enhanced_prompt" not in columns and "enhance_note" not in columns
            assert (await s.execute(text("SELECT count(*) FROM job_results"))).scalar_one() == 1
    finally:
        await db.dispose()
