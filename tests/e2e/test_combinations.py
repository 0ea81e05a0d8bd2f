"""Issue 22's options together, end to end: the real bot and worker (tiny LTX model, its tiny latent
upsampler, the tiny language model, a tiny random LoRA style in an offline Hugging Face cache) against the
fake Discord.

- style + enhance + loop in one ``/video``: ``/queue`` names all three while it waits; the result names
  the style and the loop and shows the enhanced prompt under the member's own; Rerun keeps all three
  and charges the clicker once; Remix pre-fills the member's words and keeps them too; a loop offers no
  HD and a stale HD button on it is refused privately.
- style + enhance + HD: the HD reply says "HD of job #N", names the style, shows the source's enhanced
  prompt, decodes at twice the size and is charged ``VIDEOBOT_HD_COST`` once.
- (worker level) the prompt the diffusers pipeline gets for style + enhance is the trigger words then
  the enhanced prompt; the HD of that job renders the very same prompt without asking a language model
  again; a loop's two passes both get it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.test_hd import with_stale_hd_button
from tests.faults.helpers import queue_video
from tests.faults.helpers import result_posts as posts_of

from .harness import BotHarness, assert_schema_clean, register, unregister
from .test_buttons import answer, click, form_inputs, frames_of, open_form, reply_to

pytestmark = pytest.mark.asyncio(loop_scope="module")

INK = "artist/ink-lora:ink.safetensors"
HD_COST = 2


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    tmp = tmp_path_factory.mktemp("e2e-combos")
    # The worker starts in the first test (its job waits in the queue first); the enhancer is the
    # default (auto: the tiny language model beside the tiny video model).
    async with BotHarness(
        tmp, common_env={"VIDEOBOT_DEFAULT_QUOTA": "100", "VIDEOBOT_HD_COST": str(HD_COST)}
    ) as harness:
        register(harness)
        try:
            from generator.pipeline import VideoPipeline
            from generator.tiny_lora import build_tiny_lora, place_in_hub_cache

            tiny = VideoPipeline.load("tiny", data_dir=harness.data_dir, device="cpu")
            made = build_tiny_lora(tiny.pipe, tmp / "loras" / "ink.safetensors")
            place_in_hub_cache(made, tmp / "hub", "artist/ink-lora", "ink.safetensors")
            del tiny
            sent = await harness.fd.slash(
                harness.guild_id,
                harness.channel_id,
                harness.mod_id,
                "videoconfig",
                {"name": "ink", "source": INK, "trigger_words": "inkwash"},
                ["style", "add"],
            )
            assert "Added the style `ink`" in await answer(harness, sent, "style add")
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)
    assert harness.fd.problems() == []


async def start_worker(h: BotHarness) -> None:
    if not h.worker.running:
        await h.start_worker(HF_HUB_CACHE=str(h.tmp_path / "hub"))


async def posted(h: BotHarness, job_id: int, timeout: float = 120) -> dict:
    return await h.wait_for(lambda: next(iter(posts_of(h, job_id)), None), timeout, f"job {job_id}'s video")


async def charges(h: BotHarness, job_id: int) -> list[tuple[str, int]]:
    return sorted((e.kind, e.amount) for e in await h.ledger() if e.job_id == job_id)


def assert_shows_everything(content: str, prompt: str, enhanced: str) -> None:
    """A result made with style ``ink``, a loop and an enhanced prompt says all of it, once each."""
    assert f"> {prompt}" in content, content  # the member's words
    assert "✨ Enhanced prompt" in content, content
    shown = re.search(r"\|\|(.+?)\|\|", content) or re.search(r"Enhanced prompt: (.+)", content)
    assert shown and enhanced.startswith(shown[1].rstrip("…")[:150]), content
    assert "inkwash" not in content  # the trigger words go to the model only
    assert content.count("style `ink`") == 1, content
    assert re.search(r"^-# (.* · )?loop( · |$)", content, re.MULTILINE), content
    assert len(content) <= 2000


async def test_style_enhance_and_loop_together_in_queue_result_rerun_and_remix(h: BotHarness) -> None:
    prompt = "waves rolling onto a beach"
    used = await h.balance_used(h.member_id)
    sent, job_id = await queue_video(h, h.member_id, prompt, style="ink", enhance=True, loop=True, seed=31)
    note = sent.original["content"]
    assert "(loop)" in note, note
    # While it waits: /queue names every option once, readably.
    shown = await answer(h, await h.slash(h.member_id, "queue"), "the /queue answer")
    line = next(x for x in shown.splitlines() if f"job #{job_id}" in x)
    assert f"job #{job_id} (loop · style `ink` · prompt enhanced): #1 in the queue" in line, shown
    assert line.count("loop") == 1 and line.count("style") == 1 and line.count("enhanced") == 1

    await start_worker(h)
    post = await posted(h, job_id)
    job = await h.job(job_id)
    assert job.params["style_trigger"] == "inkwash" and job.params["prompt"] == prompt
    assert job.params["loop"] is True and job.params["enhance"] is True
    assert job.enhanced_prompt and job.enhanced_prompt != prompt and "inkwash" not in job.enhanced_prompt
    assert_shows_everything(post["content"], prompt, job.enhanced_prompt)
    assert await h.balance_used(h.member_id) == used + 1
    # A loop offers no HD; a stale HD button (a message from another version) is refused privately.
    assert "HD" not in [b["label"] for b in h.fd.buttons(post)]
    refused = await answer(h, await click(h, h.member_id, with_stale_hd_button(h, post, job_id), "hd"), "no")
    assert "ends on a picture or loops can't be made in HD" in refused, refused
    assert await h.balance_used(h.member_id) == used + 1

    # Rerun by another member: all three kept, charged to the clicker once.
    other_used = await h.balance_used(h.other_id)
    text = await answer(h, await click(h, h.other_id, post, "rerun"), "the rerun answer")
    assert "(Rerun of job #" in text and "· loop)" in text, text
    reply, rerun = await reply_to(h, post, timeout=120)
    assert rerun.kind == "rerun" and rerun.params["seed"] != job.params["seed"]
    for key in ("style", "style_source", "style_trigger", "loop", "enhance", "prompt"):
        assert rerun.params[key] == job.params[key], key
    assert rerun.enhanced_prompt == job.enhanced_prompt  # same words, same greedy rewrite
    assert_shows_everything(reply["content"], prompt, job.enhanced_prompt)
    assert f"Rerun of job #{job_id} · loop" in reply["content"]
    assert await charges(h, rerun.id) == [("charge", -1)]
    assert await h.balance_used(h.other_id) == other_used + 1

    # 🔁 on the result: the same, charged to whoever reacted, once.
    used = await h.balance_used(h.member_id)
    await h.react(h.member_id, int(post["id"]), "🔁")
    reacted = await h.wait_for(
        lambda: next(
            (
                m
                for m in h.messages()
                if m["attachments"]
                and (m.get("message_reference") or {}).get("message_id") == post["id"]
                and m["id"] != reply["id"]
            ),
            None,
        ),
        120,
        "the rerun from 🔁",
    )
    [again] = [j for j in await h.jobs(h.member_id) if j.parent_job_id == job_id and j.kind == "rerun"]
    assert reacted["attachments"][0]["filename"] == f"videobot-{again.id}.mp4"
    for key in ("style_source", "style_trigger", "loop", "enhance", "prompt"):
        assert again.params[key] == job.params[key], key
    assert_shows_everything(reacted["content"], prompt, job.enhanced_prompt)
    assert await charges(h, again.id) == [("charge", -1)]
    assert await h.balance_used(h.member_id) == used + 1

    # Remix: the form holds the member's words (not the enhanced prompt); the options stay.
    opened = await open_form(h, h.member_id, post, "remix")
    assert form_inputs(opened.modal or {})["prompt"]["value"] == prompt
    text = await answer(h, await h.fd.submit_modal(opened, {"prompt": "waves rolling off a beach"}), "remix")
    remix_id = int(re.search(r"job #(\d+)", text)[1])  # type: ignore[index]
    remix_post = await posted(h, remix_id)
    remix = await h.job(remix_id)
    assert remix.params["prompt"] == "waves rolling off a beach"
    assert remix.params["style_source"] == INK and remix.params["loop"] and remix.params["enhance"]
    assert (
        remix.enhanced_prompt and "inkwash" not in remix.enhanced_prompt
    )  # written again (tiny LM: random words)
    assert_shows_everything(remix_post["content"], "waves rolling off a beach", remix.enhanced_prompt)
    assert await charges(h, remix_id) == [("charge", -1)]


async def test_hd_of_a_styled_enhanced_video_keeps_both_at_twice_the_size(h: BotHarness) -> None:
    await start_worker(h)
    member = h.other_id
    prompt = "a lighthouse at dusk"
    _, job_id = await queue_video(h, member, prompt, style="ink", enhance=True, seed=5)
    post = await posted(h, job_id)
    source = await h.job(job_id)
    assert source.enhanced_prompt and "HD" in [b["label"] for b in h.fd.buttons(post)]
    used = await h.balance_used(member)

    text = await answer(h, await click(h, member, post, "hd"), "the HD answer")
    assert f"(HD of job #{job_id})" in text, text
    reply, hd = await reply_to(h, post, timeout=120)
    assert hd.kind == "hd" and hd.parent_job_id == job_id
    assert hd.params["style_source"] == INK and hd.params["style_trigger"] == "inkwash"
    assert hd.params["seed"] == source.params["seed"] and hd.params["prompt"] == prompt
    assert hd.enhanced_prompt == source.enhanced_prompt  # the same words as the video it enlarges
    content = reply["content"]
    assert f"HD of job #{job_id}" in content and "style `ink`" in content, content
    assert f"> {prompt}" in content and "✨ Enhanced prompt" in content and len(content) <= 2000, content
    assert "inkwash" not in content
    # An HD video offers no HD of itself; the others stay.
    assert [b["label"] for b in h.fd.buttons(reply)] == ["Rerun", "Remix", "Extend", "Delete"]
    small = frames_of(h.fd.attachment_bytes(post["attachments"][0]))
    large = frames_of(h.fd.attachment_bytes(reply["attachments"][0]))
    assert large.shape == (small.shape[0], 2 * small.shape[1], 2 * small.shape[2], 3)
    assert await charges(h, hd.id) == [("charge", -HD_COST)]
    assert await h.balance_used(member) == used + HD_COST


# ---------------------------------------------------------------------------------------- worker level
@pytest.fixture(scope="module")
def hub_and_data(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, Path]:
    from generator.pipeline import VideoPipeline
    from generator.tiny_lora import build_tiny_lora, place_in_hub_cache

    tmp = tmp_path_factory.mktemp("combos-worker")
    data = tmp / "data"
    shutil.copytree(tiny_model_dir, data / "models" / "tiny")
    tiny = VideoPipeline.load("tiny", data_dir=data, device="cpu")
    made = build_tiny_lora(tiny.pipe, tmp / "loras" / "ink.safetensors")
    place_in_hub_cache(made, tmp / "hub", "artist/ink-lora", "ink.safetensors")
    return tmp / "hub", data


async def test_the_pipeline_gets_the_trigger_words_and_the_enhanced_prompt_and_hd_the_same(
    hub_and_data: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from generator.enhance import PromptEnhancer
    from generator.pipeline import VideoPipeline
    from generator.worker import Worker
    from tests.generator.test_worker import run_until, settings_for, submit
    from videobot.db import Database
    from videobot.jobs import JobQueue, QueueConfig
    from videobot.migrate import upgrade
    from videobot.planning import hd_params

    hub, data = hub_and_data
    vp = VideoPipeline.load("tiny", data_dir=data, device="cpu")
    assert vp.styles is not None
    vp.styles.cache_dir = hub
    seen: list[str] = []
    for cls in {type(p) for p in vp.pipes.values()}:

        def spy(self, *args, _real=cls.__call__, **kwargs):  # type: ignore[no-untyped-def]
            if "prompt" in kwargs:
                seen.append(kwargs["prompt"])
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__call__", spy)
    url = f"sqlite+aiosqlite:///{data / 'q.db'}"
    upgrade(url)
    db = Database(url)
    try:
        q = JobQueue(db, QueueConfig(lease_seconds=5))
        style = {"style": "ink", "style_source": INK, "style_scale": 1.0, "style_trigger": "inkwash"}
        job_id = await submit(q, enhance=True, **style)
        enhancer = PromptEnhancer("tiny", data_dir=data, device="cpu")
        worker = Worker(settings_for(data, url), q, vp, worker_id="w1", models=["tiny"], enhancer=enhancer)
        assert await run_until(worker, q, job_id, {"succeeded", "failed"}) == "succeeded"
        job = await q.get(job_id)
        assert job is not None and job.enhanced_prompt and job.enhance_note is None
        expected = PromptEnhancer("tiny", data_dir=data, device="cpu").rewrite(
            "a fox running through snow", family=vp.preset.family
        )
        assert job.enhanced_prompt == expected  # stored without the trigger words
        assert seen == [f"inkwash, {expected}"]  # what the diffusers pipeline got
        assert job.params["prompt"] == "a fox running through snow"  # the member's words stay

        # Its HD version renders the same words (both stages) and records them, without asking a language
        # model again: this worker has none (it would fall back to the member's words, another video).
        seen.clear()
        hd_id = await submit(q, **hd_params(job.params, job.enhanced_prompt))
        worker = Worker(settings_for(data, url), q, vp, worker_id="w2", models=["tiny"], enhancer=None)
        assert await run_until(worker, q, hd_id, {"succeeded", "failed"}) == "succeeded"
        hd = await q.get(hd_id)
        assert hd is not None and hd.enhanced_prompt == expected and hd.enhance_note is None
        assert seen and set(seen) == {f"inkwash, {expected}"}, seen

        # A loop in the style with the enhanced prompt: both of its passes (its first frame, then the
        # video that ends on it) get the same words.
        seen.clear()
        loop_id = await submit(q, enhance=True, loop=True, **style)
        worker = Worker(settings_for(data, url), q, vp, worker_id="w3", models=["tiny"], enhancer=enhancer)
        assert await run_until(worker, q, loop_id, {"succeeded", "failed"}) == "succeeded"
        assert seen == [f"inkwash, {expected}"] * 2, seen
    finally:
        await db.dispose()
