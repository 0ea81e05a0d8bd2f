"""Server styles on the worker: tiny random LoRAs built offline and placed in a Hugging Face cache as a
Hub repo (``HF_HUB_OFFLINE=1``: the real ``hf_hub_download`` path finds them), loaded as named adapters
on the real tiny models. Same seed without a style, with one, and without again: the first video comes
back (no leak); the cache keeps the most recent few; a style that cannot be read or does not fit fails
the job with the reason, refunded, and leaves the model as it was."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from generator.pipeline import VideoPipeline
from generator.styles import StyleCache
from generator.tiny_lora import build_tiny_lora, place_in_hub_cache
from generator.worker import Worker
from tests.generator.test_worker import refunds, run_until, settings_for
from videobot.db import Database
from videobot.errors import InvalidParameters
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.migrate import upgrade
from videobot.presets import GenerationParams, plan


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("styles-data")


@pytest.fixture(scope="module")
def hub(data_dir: Path) -> Path:
    """A Hugging Face cache holding three tiny-LTX styles, one made for tiny Wan, and nothing else."""
    cache = data_dir / "hub"
    ltx = VideoPipeline.load("tiny-ltx", data_dir=data_dir, device="cpu")
    for i, name in enumerate(("ink", "neon", "clay")):
        made = build_tiny_lora(ltx.pipe, data_dir / "loras" / f"{name}.safetensors", seed=i)
        place_in_hub_cache(made, cache, f"artist/{name}-lora", f"{name}.safetensors")
    wan = VideoPipeline.load("tiny-wan", data_dir=data_dir, device="cpu")
    made = build_tiny_lora(wan.pipe, data_dir / "loras" / "wan.safetensors", targets=["to_q", "to_k"])
    place_in_hub_cache(made, cache, "artist/wan-only", "wan.safetensors")
    return cache


@pytest.fixture
def ltx(data_dir: Path, hub: Path) -> VideoPipeline:
    vp = VideoPipeline.load("tiny-ltx", data_dir=data_dir, device="cpu", style_cache=2)
    assert isinstance(vp.styles, StyleCache)
    vp.styles.cache_dir = hub
    return vp


def styled(params: GenerationParams, name: str, scale: float = 1.0) -> GenerationParams:
    return dataclasses.replace(
        params, style=name, style_source=f"artist/{name}-lora:{name}.safetensors", style_scale=scale
    )


def test_a_style_changes_the_video_and_never_leaks_into_the_next_job(ltx: VideoPipeline) -> None:
    params = plan(ltx.preset, "a red boat on the sea", seed=1234)
    plain = ltx.run(params).frames
    ink = ltx.run(styled(params, "ink")).frames
    assert not np.array_equal(plain, ink)
    assert np.abs(plain.astype(int) - ink).mean() > 2, "the style hardly changed the video"
    np.testing.assert_array_equal(ltx.run(params).frames, plain)  # the style is off again
    np.testing.assert_array_equal(ltx.run(styled(params, "ink")).frames, ink)  # and on again, the same
    half = ltx.run(styled(params, "ink", 0.5)).frames
    assert not np.array_equal(half, ink)  # the job's scale counts
    neon = ltx.run(styled(params, "neon")).frames
    assert not np.array_equal(neon, ink) and not np.array_equal(neon, plain)  # only this job's style
    np.testing.assert_array_equal(ltx.run(params).frames, plain)
    assert ltx.pipe.get_active_adapters() == [] or not _any_enabled(ltx)


def _any_enabled(vp: VideoPipeline) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(
        isinstance(m, BaseTunerLayer) and not m.disable_adapters for m in vp.pipe.transformer.modules()
    )


def test_trigger_words_reach_the_model_not_the_members_prompt(ltx: VideoPipeline) -> None:
    params = dataclasses.replace(
        styled(plan(ltx.preset, "a red boat", seed=3), "ink"), style_trigger="inkwash"
    )
    _, kwargs, _ = ltx.call_kwargs(params)
    assert kwargs["prompt"] == "inkwash, a red boat"
    assert params.prompt == "a red boat"


def test_the_cache_keeps_the_most_recent_styles(ltx: VideoPipeline) -> None:
    params = plan(ltx.preset, "a lighthouse at night", seed=9)
    first_ink = ltx.run(styled(params, "ink")).frames
    ltx.run(styled(params, "neon"))
    ltx.run(styled(params, "ink"))  # ink used again: now neon is the oldest
    ltx.run(styled(params, "clay"))
    assert ltx.styles.loaded() == ("artist/ink-lora:ink.safetensors", "artist/clay-lora:clay.safetensors")
    adapters = {a for names in ltx.pipe.get_list_adapters().values() for a in names}
    assert len(adapters) == 2  # neon's layers are gone from the model
    ltx.run(styled(params, "neon"))  # loaded again, evicting ink
    assert "artist/ink-lora:ink.safetensors" not in ltx.styles.loaded()
    np.testing.assert_array_equal(ltx.run(styled(params, "ink")).frames, first_ink)  # reloaded: same video


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("artist/wan-only:wan.safetensors", "does not fit this server's model `tiny-ltx`"),
        ("artist/missing:gone.safetensors", "could not be loaded: its file is not on the Hugging Face Hub"),
        ("artist/ink-lora:other.safetensors", "could not be loaded: its file is not on the Hugging Face Hub"),
    ],
)
def test_a_style_that_cannot_be_used_fails_with_the_reason_and_leaves_nothing(
    ltx: VideoPipeline, source: str, why: str
) -> None:
    params = plan(ltx.preset, "a red boat on the sea", seed=1234)
    plain = ltx.run(params).frames
    ltx.run(styled(params, "ink"))
    bad = dataclasses.replace(params, style="broken", style_source=source)
    with pytest.raises(InvalidParameters) as err:
        ltx.run(bad)
    assert f"The style `broken` {why}" in str(err.value), str(err.value)
    assert "refunded" in str(err.value)
    assert ltx.styles.loaded() == ("artist/ink-lora:ink.safetensors",)
    adapters = {a for names in ltx.pipe.get_list_adapters().values() for a in names}
    assert len(adapters) == 1
    np.testing.assert_array_equal(ltx.run(params).frames, plain)


def test_a_model_without_styles_refuses_a_styled_job(ltx: VideoPipeline) -> None:
    params = styled(plan(ltx.preset, "a red boat", seed=1), "ink")
    ltx.styles = None
    with pytest.raises(InvalidParameters, match="cannot use styles"):
        ltx.check_inputs(params)


async def test_the_worker_fails_and_refunds_a_job_whose_style_does_not_fit(
    tmp_path: Path, data_dir: Path, hub: Path, ltx: VideoPipeline
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    db = Database(url)
    data = tmp_path / "data"
    shutil.copytree(data_dir / "models" / "tiny-ltx", data / "models" / "tiny-ltx")
    try:
        q = JobQueue(db, QueueConfig(lease_seconds=5))
        p = plan(ltx.preset, "a fox", seed=7).to_dict() | {
            "style": "wan-only",
            "style_source": "artist/wan-only:wan.safetensors",
        }
        sub = await q.submit(
            SubmitRequest(
                idempotency_key="s1", guild_id=1, channel_id=2, user_id=1, model="tiny-ltx", params=p
            )
        )
        worker = Worker(
            settings_for(data, url, VIDEOBOT_MODEL="tiny-ltx"), q, ltx, worker_id="w", models=["tiny-ltx"]
        )
        assert await run_until(worker, q, sub.job.id, {"succeeded", "failed"}) == "failed"
        job = await q.get(sub.job.id)
        assert job is not None and job.error_message is not None
        assert "The style `wan-only` does not fit" in job.error_message
        assert await refunds(db, sub.job.id) == 1
    finally:
        await db.dispose()


def test_a_style_sits_on_top_of_a_lora_fused_at_start(data_dir: Path, hub: Path) -> None:
    """``VIDEOBOT_LORAS`` is fused at load and leaves no adapter behind: a style's ``set_adapters`` does
    not switch it off, and a job without a style gets the fused model, not the plain one."""
    from videobot.presets import LoraSpec

    fused_lora = data_dir / "loras" / "clay.safetensors"  # built by the hub fixture
    plain = VideoPipeline.load("tiny-ltx", data_dir=data_dir, device="cpu")
    vp = VideoPipeline.load("tiny-ltx", data_dir=data_dir, device="cpu", loras=[LoraSpec(str(fused_lora))])
    vp.styles.cache_dir = hub
    params = plan(vp.preset, "a red boat on the sea", seed=77)
    base, fused = plain.run(params).frames, vp.run(params).frames
    assert not np.array_equal(base, fused)
    ink = vp.run(styled(params, "ink")).frames
    plain.styles.cache_dir = hub
    ink_alone = plain.run(styled(params, "ink")).frames
    assert not np.array_equal(ink, fused) and not np.array_equal(ink, ink_alone)  # both LoRAs at work
    np.testing.assert_array_equal(vp.run(params).frames, fused)
