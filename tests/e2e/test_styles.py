"""Server styles end to end: the real bot and a real worker (tiny model) against the fake Discord. The
styles are tiny random LoRAs built offline and placed in a Hugging Face cache as Hub repos, so the
worker downloads them the real way (``hf_hub_download``, offline).

Moderators add, list and remove styles (members cannot); ``/video style:`` autocompletes the server's
styles, makes a different video than the same seed without it, and the result says which style;
Rerun keeps it; ``/queue`` shows it; an unknown style is refused privately with nothing charged; a
style that does not fit the model fails the job with the reason, refunded once; styles survive a
restart of the bot.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest
import pytest_asyncio

from .harness import BotHarness, assert_schema_clean, register, unregister
from .test_buttons import answer, click, delivered_job, reply_to, result_posts

pytestmark = pytest.mark.asyncio(loop_scope="module")

INK = "artist/ink-lora:ink.safetensors"
WAN_ONLY = "artist/wan-only:wan.safetensors"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    tmp = tmp_path_factory.mktemp("e2e-styles")
    async with BotHarness(tmp, common_env={"VIDEOBOT_DEFAULT_QUOTA": "100"}) as harness:
        register(harness)
        try:
            from generator.pipeline import VideoPipeline
            from generator.tiny_lora import build_tiny_lora, place_in_hub_cache

            hub = tmp / "hub"
            tiny = VideoPipeline.load("tiny", data_dir=harness.data_dir, device="cpu")
            made = build_tiny_lora(tiny.pipe, tmp / "loras" / "ink.safetensors")
            place_in_hub_cache(made, hub, "artist/ink-lora", "ink.safetensors")
            wan = VideoPipeline.load("tiny-wan", data_dir=tmp / "wan", device="cpu")
            made = build_tiny_lora(wan.pipe, tmp / "loras" / "wan.safetensors", targets=["to_q", "to_k"])
            place_in_hub_cache(made, hub, "artist/wan-only", "wan.safetensors")
            del tiny, wan
            await harness.start_worker(HF_HUB_CACHE=str(hub))
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)
    assert harness.fd.problems() == []


async def style_cmd(h: BotHarness, user_id: int, verb: str, **options: object) -> str:
    # Through the fake Discord itself: ``h.slash`` takes options as keywords, and this one is ``name``.
    sent = await h.fd.slash(
        h.guild_id, h.channel_id, user_id, "videoconfig", options or None, ["style", verb]
    )
    return await answer(h, sent, f"style {verb}")


async def make(h: BotHarness, user_id: int, **options: object) -> tuple[dict, int]:
    note = await answer(h, await h.slash(user_id, "video", **options), "the queued note")
    job_id = int(re.search(r"Queued as job #(\d+)", note)[1])  # type: ignore[index]
    post = await h.wait_for(
        lambda: next(
            (m for m in result_posts(h) if m["attachments"][0]["filename"] == f"videobot-{job_id}.mp4"), None
        ),
        60,
        f"the video of job {job_id}",
    )
    return post, job_id


def frames_of(h: BotHarness, post: dict) -> np.ndarray:
    with av.open(io.BytesIO(h.fd.attachment_bytes(post["attachments"][0]))) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


async def ledger_of(h: BotHarness, job_id: int) -> list[tuple[str, int]]:
    return sorted((e.kind, e.amount) for e in await h.ledger() if e.job_id == job_id)


async def test_moderators_manage_styles_and_members_cannot(h: BotHarness) -> None:
    refused = await style_cmd(h, h.member_id, "add", name="ink", source=INK)
    assert "Only moderators" in refused
    text = await style_cmd(h, h.mod_id, "add", name="Ink", source=INK, scale=0.9, trigger_words="inkwash")
    assert "Added the style `ink`" in text and "/video style:ink" in text
    for bad in ("https://example.com/x.safetensors", "/srv/x.safetensors", "artist/ink-lora"):
        text = await style_cmd(h, h.mod_id, "add", name="bad", source=bad)
        assert "is not a style source" in text and "owner/repo:style.safetensors" in text, text
    assert "cannot be a style name" in await style_cmd(h, h.mod_id, "add", name="two words", source=INK)
    assert "already has a style `ink`" in await style_cmd(h, h.mod_id, "add", name="INK", source=INK)
    assert "Added the style `wan-only`" in await style_cmd(
        h, h.mod_id, "add", name="wan-only", source=WAN_ONLY
    )
    await h.restart_bot()  # kept in the database
    listing = await style_cmd(h, h.mod_id, "list")
    assert "`ink` · `artist/ink-lora:ink.safetensors` · scale 0.9 · trigger words: `inkwash`" in listing
    assert "`wan-only`" in listing
    choices = await h.fd.autocomplete(
        h.guild_id, h.channel_id, h.member_id, "video", {"prompt": "a cat", "style": "i"}, "style"
    )
    assert [c["value"] for c in choices] == ["ink"]
    choices = await h.fd.autocomplete(
        h.guild_id, h.channel_id, h.member_id, "video", {"prompt": "a cat", "style": ""}, "style"
    )
    assert [c["value"] for c in choices] == ["ink", "wan-only"]


async def test_a_video_with_a_style_says_so_and_rerun_and_queue_keep_it(h: BotHarness) -> None:
    plain_post, _ = await make(h, h.member_id, prompt="a red boat on the sea", seed=4242)
    post, job_id = await make(h, h.member_id, prompt="a red boat on the sea", seed=4242, style="ink")
    job = await delivered_job(h, int(post["id"]))
    assert job.params["style"] == "ink" and job.params["style_source"] == INK
    assert job.params["prompt"] == "a red boat on the sea"  # the trigger words go to the model only
    assert "style `ink`" in post["content"] and "style `ink`" not in plain_post["content"]
    diff = np.abs(frames_of(h, post).astype(int) - frames_of(h, plain_post)).mean()
    assert diff > 2, f"the style did not change the video ({diff:.2f})"
    again, _ = await make(h, h.member_id, prompt="a red boat on the sea", seed=4242)
    assert np.abs(frames_of(h, again).astype(int) - frames_of(h, plain_post)).mean() < 2  # no leak
    await answer(h, await click(h, h.other_id, post, "rerun"), "the rerun answer")
    reply, rerun = await reply_to(h, post)
    assert rerun.params["style_source"] == INK and "style `ink`" in reply["content"]
    await h.stop_worker()  # the next one waits in the queue
    try:
        note = await answer(h, await h.slash(h.member_id, "video", prompt="a kite", style="ink"), "queued")
        waiting = int(re.search(r"job #(\d+)", note)[1])  # type: ignore[index]
        shown = await answer(h, await h.slash(h.member_id, "queue"), "the /queue answer")
        assert f"job #{waiting} (style `ink`): #1 in the queue" in shown, shown
        # Removing the style does not break the job already queued with it.
        assert "Removed the style `ink`" in await style_cmd(h, h.mod_id, "remove", name="ink")
    finally:
        await h.start_worker(HF_HUB_CACHE=str(h.tmp_path / "hub"))
    await h.wait_job(waiting, "delivered", 60)
    refused = await answer(h, await h.slash(h.member_id, "video", prompt="a kite", style="ink"), "refusal")
    assert "This server has no style `ink`" in refused


async def test_an_unknown_style_is_refused_privately_and_costs_nothing(h: BotHarness) -> None:
    before = len(await h.jobs(h.other_id))
    refused = await answer(h, await h.slash(h.other_id, "video", prompt="a fox", style="nope"), "refusal")
    assert "This server has no style `nope`" in refused and "`style` option" in refused
    assert len(await h.jobs(h.other_id)) == before


async def test_a_style_that_does_not_fit_fails_the_job_and_refunds_once(h: BotHarness) -> None:
    note = await answer(h, await h.slash(h.other_id, "video", prompt="a fox", style="wan-only"), "queued")
    job_id = int(re.search(r"job #(\d+)", note)[1])  # type: ignore[index]
    job = await h.wait_job(job_id, "failed", 60)
    assert "The style `wan-only` does not fit" in (job.error_message or "")
    assert await ledger_of(h, job_id) == [("charge", -1), ("refund", 1)]
    notice = await h.wait_for(
        lambda: next((m for m in h.messages() if "does not fit" in m["content"]), None), 20, "the failure"
    )
    assert "wan-only" in notice["content"]


async def test_a_model_without_a_lora_loader_refuses_styles_privately(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A custom checkpoint whose pipeline class has no LoRA loader: ``/video style:`` and ``style add``
    are refused privately with the reason, nothing is queued or charged, and nothing autocompletes."""
    tmp = tmp_path_factory.mktemp("e2e-no-styles")
    folder = tmp / "custom-wan"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "WanCustomPipelineNoLora"}')
    async with BotHarness(tmp, common_env={"VIDEOBOT_MODEL": str(folder)}) as other:
        refused = await answer(
            other, await other.slash(other.member_id, "video", prompt="a fox", style="ink"), "no"
        )
        assert "cannot use styles. Leave the style option empty." in refused
        assert await other.jobs() == [] and await other.ledger() == []
        sent = await other.fd.slash(
            other.guild_id,
            other.channel_id,
            other.mod_id,
            "videoconfig",
            {"name": "ink", "source": INK},
            ["style", "add"],
        )
        assert "cannot use styles" in await answer(other, sent, "style add")
        choices = await other.fd.autocomplete(
            other.guild_id, other.channel_id, other.member_id, "video", {"prompt": "a", "style": ""}, "style"
        )
        assert choices == []
    assert other.fd.problems() == []
