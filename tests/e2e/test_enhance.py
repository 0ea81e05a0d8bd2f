"""Prompt enhancement end to end: the real bot and worker (tiny video model, tiny language model) against
the fake Discord. A moderator turns it on for the server, a member's /video is rendered from the enhanced
prompt and the result shows it, Remix pre-fills the member's own words, a member can say no, and a bot
whose owner turned the enhancer off refuses ``enhance:True`` privately without charging anything."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.faults.helpers import answer, queue_video, result_posts

from .harness import BotHarness, shared_harness
from .test_buttons import form_inputs, open_form

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    # VIDEOBOT_ENHANCE_MODEL is left at its default (auto): the tiny language model beside the tiny video model.
    harness = BotHarness(
        tmp_path_factory.mktemp("e2e-enhance"), worker=True, bot_env={"VIDEOBOT_DEFAULT_QUOTA": "20"}
    )
    async with shared_harness(harness) as started:  # asserts fd.problems() == [] (OpenAPI bodies included)
        yield started


async def posted(h: BotHarness, job_id: int) -> dict:
    return await h.wait_for(lambda: next(iter(result_posts(h, job_id)), None), 90, f"job {job_id}'s video")


async def test_server_default_on_enhances_the_prompt_and_the_result_shows_it(h: BotHarness) -> None:
    text = await answer(h, await h.slash(h.mod_id, "videoconfig", "enhance", enabled=True))
    assert "Prompts are now enhanced by a language model" in text
    shown = await answer(h, await h.slash(h.mod_id, "videoconfig", "show"))
    assert "Prompt enhancement: on" in shown

    used = await h.balance_used(h.member_id)
    _, job_id = await queue_video(h, h.member_id, "a fox running through snow")
    post = await posted(h, job_id)
    job = await h.job(job_id)
    assert job.params["enhance"] is True and job.params["prompt"] == "a fox running through snow"
    assert job.enhanced_prompt and job.enhanced_prompt != job.params["prompt"] and job.enhance_note is None
    assert "prompt enhanced by tiny" in h.worker.log()
    # The result quotes the member's prompt, then the enhanced one (long: collapsed in a spoiler).
    content = post["content"]
    assert "> a fox running through snow" in content
    assert "✨ Enhanced prompt" in content
    shown_enhanced = re.search(r"\|\|(.+?)\|\|", content) or re.search(r"Enhanced prompt: (.+)", content)
    assert shown_enhanced and job.enhanced_prompt.startswith(shown_enhanced[1].rstrip("…")[:200])
    assert await h.balance_used(h.member_id) == used + 1  # charged once, like any video

    # Remix pre-fills the member's words, not the enhanced prompt, and keeps the option.
    opened = await open_form(h, h.member_id, post, "remix")
    assert form_inputs(opened.modal or {})["prompt"]["value"] == "a fox running through snow"
    text = await answer(h, await h.fd.submit_modal(opened, {"prompt": "a fox running through rain"}))
    remix_id = int(re.search(r"job #(\d+)", text)[1])  # type: ignore[index]
    await posted(h, remix_id)
    remix = await h.job(remix_id)
    assert remix.params["enhance"] is True and remix.enhanced_prompt


async def test_a_member_can_say_no_on_a_server_that_enhances(h: BotHarness) -> None:
    _, job_id = await queue_video(h, h.other_id, "a paper boat on a puddle", enhance=False)
    post = await posted(h, job_id)
    job = await h.job(job_id)
    assert job.params["enhance"] is False and job.enhanced_prompt is None and job.enhance_note is None
    assert "Enhanced prompt" not in post["content"]


async def test_without_an_enhancer_asking_is_refused_privately_and_charges_nothing(h: BotHarness) -> None:
    await h.restart_bot(VIDEOBOT_ENHANCE_MODEL="off")
    try:
        used = await h.balance_used(h.other_id)
        jobs_before = len(await h.jobs())
        interaction = await h.slash(h.other_id, "video", prompt="a lighthouse at dusk", enhance=True)
        text = await answer(h, interaction)
        assert "Prompt enhancement is not available" in text and interaction.original["ephemeral"]
        assert await h.balance_used(h.other_id) == used
        assert len(await h.jobs()) == jobs_before
        refused = await answer(h, await h.slash(h.mod_id, "videoconfig", "enhance", enabled=True))
        assert "Prompt enhancement is not available" in refused
        # The server's default (on, kept across the restart) counts for nothing without an enhancer.
        _, job_id = await queue_video(h, h.other_id, "a lighthouse at dusk")
        assert (await h.job(job_id)).params["enhance"] is False
        await posted(h, job_id)
    finally:
        await h.restart_bot()
