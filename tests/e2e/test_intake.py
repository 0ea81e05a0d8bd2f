"""Requests acknowledged before their slow steps: the real bot against the fake Discord (no worker).

A picture being fetched holds the member's credits (concurrent requests of a member with one credit
cannot all pass the check before the download), and a request whose bot was killed between its
"thinking…" and its answer is answered by the next bot: queued, or refused with the reason.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from PIL import Image
from sqlalchemy import func, select

from bot.ui.texts import RESTARTED, RESTARTED_UNSURE
from tests.faults.helpers import answer, queue_video
from videobot.i18n import t
from videobot.models import Intake, MemberQuota

from .harness import BotHarness, shared_harness

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    harness = BotHarness(tmp_path_factory.mktemp("e2e-intake"), extra_members=3)
    async with shared_harness(harness) as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pg(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    """PostgreSQL (skipped without ``VIDEOBOT_TEST_POSTGRES_URL``): a member's row can be locked there
    while other writes go on, so the queueing of a text ``/video`` is slow but its intake is not."""
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-intake-pg"), db="postgresql", extra_members=1
    ) as started:
        yield started


def picture(w: int = 64, h: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (w, h), (200, 120, 40)).save(out, format="PNG")
    return out.getvalue()


async def open_intakes(h: BotHarness) -> int:
    assert h.db is not None
    async with h.db.sessionmaker() as s:
        return int((await s.execute(select(func.count()).select_from(Intake))).scalar_one())


async def intakes_left(h: BotHarness, within: float = 15.0) -> int:
    """Open intakes once the answers' closing writes had ``within`` seconds to land (the bot closes an
    intake just after answering, so on a loaded machine the close can trail the answer)."""
    deadline = time.monotonic() + within
    while (n := await open_intakes(h)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return n


async def test_eight_pictures_at_once_from_a_member_with_one_credit_make_one_job_and_one_charge(
    h: BotHarness,
) -> None:
    member = h.members[0]
    assert "1" in await answer(h, await h.slash(h.mod_id, "quota", ["set"], user=member, limit=1))
    pic = h.fd.attachment("cat.png", picture())
    download = h.fd.hold_download(pic)  # the first request's picture is still coming when the rest arrive

    asked = await asyncio.gather(*(h.slash(member, "video", prompt=f"take {i}", image=pic) for i in range(8)))

    # Seven are refused while the one download is held: refused before downloading anything.
    await h.wait_for(
        lambda: sum(1 for i in asked if (i.original or {}).get("content")) >= 7, 60, "seven refusals"
    )
    assert h.fd.cdn_requests.count(int(pic["id"])) == 1
    download.set()
    texts = [await answer(h, i) for i in asked]
    queued = [t for t in texts if "Queued as job" in t]
    refused = [t for t in texts if "Queued as job" not in t]
    assert len(queued) == 1 and len(refused) == 7, texts
    assert all("credit" in t for t in refused), refused
    assert all(m["ephemeral"] for i in asked for m in [h.fd.message(i.original_id)])  # all private
    jobs = await h.jobs(member)
    assert len(jobs) == 1 and f"#{jobs[0].id}" in queued[0]
    charges = [e for e in await h.ledger(member) if e.kind == "charge"]
    assert [(e.job_id, e.amount) for e in charges] == [(jobs[0].id, -1)]
    assert await intakes_left(h) == 0  # every answer closed its intake (and dropped its token)


async def test_a_request_acknowledged_when_the_bot_died_is_refused_by_the_next_bot(h: BotHarness) -> None:
    member = h.members[1]
    pic = h.fd.attachment("dog.png", picture())
    download = h.fd.hold_download(pic)
    # In German: the answer after the restart is in the member's language (stored with the intake).
    interaction = await h.fd.slash(
        h.guild_id, h.channel_id, member, "video", {"prompt": "the dog wags", "image": pic}, locale="de"
    )
    await interaction.acknowledged(3)
    await h.wait_for(lambda: int(pic["id"]) in h.fd.cdn_requests, 20, "the download")
    assert not (interaction.original or {}).get("content")  # "thinking…"

    await h.kill_bot()
    download.set()
    # Discord fails the answer for longer than discord.py's own 5 tries (25 s): the bot tries again.
    outage = h.fd.inject("PATCH", r"^/webhooks/\d+/[^/]+/messages/@original$", 503, count=5)
    await h.start_bot()

    text = await answer(h, interaction, timeout=60)
    assert outage.hits == 5
    assert text == t("de", RESTARTED) and "neu gestartet" in text, text
    assert h.fd.message(interaction.original_id)["ephemeral"]
    assert await h.jobs(member) == [] and await h.ledger(member) == []
    assert await intakes_left(h) == 0
    # Its hold is gone with it: the member's next request goes through.
    assert "Queued as job" in await answer(
        h, await h.slash(member, "video", prompt="the dog wags", image=pic)
    )


async def test_a_request_queued_when_the_bot_died_before_answering_is_told_its_job(h: BotHarness) -> None:
    member = h.members[2]
    pic = h.fd.attachment("bird.png", picture())
    download = h.fd.hold_download(pic)
    interaction = await h.slash(member, "video", prompt="the bird flies", image=pic)
    await interaction.acknowledged(3)
    await h.wait_for(lambda: int(pic["id"]) in h.fd.cdn_requests, 20, "the download")
    h.fd.stall_original_edits(interaction)  # the "Queued as…" answer never arrives
    download.set()
    for _ in range(200):
        if await h.jobs(member):
            break
        await asyncio.sleep(0.1)
    [job] = await h.jobs(member)
    await asyncio.sleep(0.5)  # the answer is on its way (and stalls)

    await h.kill_bot()
    h.fd.stall_original_edits(interaction, stalled=False)
    assert not (interaction.original or {}).get("content")
    await h.start_bot()

    text = await answer(h, interaction)
    found = re.search(r"Queued as job #(\d+)", text)
    assert found and int(found[1]) == job.id, text
    assert h.fd.message((await h.with_status_message(job.id, 30)).status_message_id) is not None
    assert [(e.kind, e.job_id) for e in await h.ledger(member)] == [("charge", job.id)]
    assert await intakes_left(h) == 0


async def test_a_cancel_acknowledged_when_the_bot_died_is_answered_by_the_next_bot(h: BotHarness) -> None:
    """The Cancel button and /cancel: done, then the bot dies while the answer is on its way."""
    member = h.member_id
    for how in ("button", "command"):
        _, job_id = await queue_video(h, member, f"cancelled by {how}")  # no worker: it stays queued
        if how == "button":
            job = await h.with_status_message(job_id, 30)
            asked = await h.fd.click(
                h.guild_id, h.channel_id, member, job.status_message_id, f"videobot:cancel:{job_id}"
            )
        else:
            asked = await h.slash(member, "cancel", job=job_id)
        h.fd.stall_original_edits(asked)  # the answer never arrives
        assert (await asked.acknowledged(3))["type"] == 5
        await h.wait_job(job_id, "cancelled", 20)
        await asyncio.sleep(0.5)  # the answer is on its way (and stalls)
        assert await open_intakes(h) == 1

        await h.kill_bot()
        h.fd.stall_original_edits(asked, stalled=False)
        assert not (asked.original or {}).get("content")  # "thinking…"
        await h.start_bot()

        text = await answer(h, asked)
        assert text == t("en", RESTARTED_UNSURE), (how, text)
        assert h.fd.message(asked.original_id)["ephemeral"]
        assert await open_intakes(h) == 0


async def test_a_text_video_acknowledged_when_the_bot_died_is_answered_by_the_next_bot(
    pg: BotHarness,
) -> None:
    member = pg.members[0]
    assert "5" in await answer(pg, await pg.slash(pg.mod_id, "quota", ["set"], user=member, limit=5))
    assert pg.db is not None
    async with pg.db.engine.connect() as conn:
        lock = await conn.begin()  # the member's account row, locked: their charge waits for it
        await conn.execute(
            select(MemberQuota.user_id)
            .where(MemberQuota.guild_id == pg.guild_id, MemberQuota.user_id == member)
            .with_for_update()
        )
        interaction = await pg.slash(member, "video", prompt="a slow database")
        await interaction.acknowledged(5)  # deferred: "thinking…"
        assert not (interaction.original or {}).get("content")
        assert await open_intakes(pg) == 1
        await pg.kill_bot()
        await lock.rollback()
    await pg.start_bot()

    text = await answer(pg, interaction)
    assert "restarted before your request could be queued" in text and "Nothing was charged" in text, text
    assert await pg.jobs(member) == [] and await pg.ledger(member) == []
    assert await intakes_left(pg) == 0
    # And a quick one is answered in its first response, its intake closed.
    quick = await pg.slash(member, "video", prompt="a quick database")
    assert "Queued as job" in await answer(pg, quick)
    assert await intakes_left(pg) == 0
