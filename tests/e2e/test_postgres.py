"""The bot and a worker on PostgreSQL, and what members see while the database is unreachable.

Runs when ``VIDEOBOT_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it), else skipped.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from tests.helpers import pg_exec
from tests.pgcluster import PrivatePostgres

from .harness import BotHarness, assert_schema_clean, register, unregister

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    async with BotHarness(tmp_path_factory.mktemp("e2e-pg"), worker=True, db="postgresql") as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)


async def test_video_on_postgresql(h: BotHarness) -> None:
    interaction = await h.slash(h.member_id, "video", prompt="a heron in the reeds")
    await interaction.acknowledged(3)
    post = await h.wait_for(
        lambda: next((m for m in h.messages() if m["attachments"]), None), 60, "the video post"
    )
    [job] = await h.jobs(h.member_id)
    job = await h.wait_job(job.id, "delivered", 10)
    assert job.result_message_id == int(post["id"])
    assert post["attachments"][0]["filename"] == f"videobot-{job.id}.mp4"


async def test_database_outage_is_a_polite_retry_later_and_charges_nothing(h: BotHarness) -> None:
    assert h._pg_admin is not None and h._pg_name is not None
    name = h._pg_name
    used = await h.balance_used(h.other_id)
    await h.stop_worker()  # it would only retry in a loop meanwhile
    # Refuse new connections to the bot's database and drop the open ones.
    await pg_exec(h._pg_admin, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    await pg_exec(
        h._pg_admin,
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()",
    )
    try:
        interaction = await h.slash(h.other_id, "video", prompt="a storm over the sea")
        body = await interaction.acknowledged(3)  # answered, or deferred, inside Discord's 3 s
        assert body["data"]["flags"] & 64
        text = await h.wait_for(lambda: (interaction.original or {}).get("content"), 30, "the answer")
        assert re.search(r"try again in a minute", text) and "Nothing was charged" in text, text
        ref = re.search(r"\(ref ([0-9A-F]{6})\)", text)
        assert ref, text
        assert interaction.original["ephemeral"]
        for forbidden in ("Traceback", "postgresql", "/", "asyncpg"):
            assert forbidden not in text.replace("(ref ", "")
        # The owner finds the reference in the log, with the traceback.
        assert f"ref {ref[1]}" in h.bot.log(since_start=True)
    finally:
        await pg_exec(h._pg_admin, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    assert await h.balance_used(h.other_id) == used
    # Once the database is back, the same member is served normally.
    interaction = await h.slash(h.other_id, "video", prompt="a calm sea")
    await interaction.acknowledged(3)
    text = await h.wait_for(lambda: (interaction.original or {}).get("content"), 30, "the answer")
    assert text.startswith("Queued as job #"), text
    assert make_url(h.db_url).database == name


async def test_server_restart_mid_job_bot_and_worker_reconnect(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    ok, why = PrivatePostgres.available()
    if not ok:
        pytest.skip(why)
    # A server of this test's own: restarting it disturbs no other test.
    with PrivatePostgres() as pg:
        async with BotHarness(
            tmp_path_factory.mktemp("e2e-pg-restart"),
            db="postgresql",
            pg_admin_url=pg.url,
            worker_env={"VIDEOBOT_TEST_STEP_DELAY": "1.5"},
        ) as h:
            register(h)
            try:
                await h.start_worker()
                interaction = await h.slash(h.mod_id, "video", prompt="lightning over a lighthouse")
                await interaction.acknowledged(3)
                text = await h.wait_for(lambda: (interaction.original or {}).get("content"), 30, "the answer")
                assert text.startswith("Queued as job #"), text  # acknowledged before the job exists
                [job] = await h.jobs(h.mod_id)
                await h.wait_job(job.id, "running", 60)
                await asyncio.to_thread(pg.restart)
                job = await h.wait_job(job.id, "delivered", 120)
                posts = [
                    m
                    for m in h.messages()
                    if m["attachments"] and m["attachments"][0]["filename"] == f"videobot-{job.id}.mp4"
                ]
                assert len(posts) == 1
                ledger = [(e.kind, e.job_id) for e in await h.ledger(h.mod_id) if e.job_id == job.id]
                assert ledger == [("charge", job.id)]
                assert h.bot.running and h.worker.running
            finally:
                unregister(h)
