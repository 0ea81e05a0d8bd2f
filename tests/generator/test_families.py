"""Every model family on its tiny random model: each verb through the real worker, the settings reaching the
pipeline call, and the per-verb pipelines sharing one set of weights."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import time
from pathlib import Path

import diffusers
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from generator.encode import encode_mp4, probe_mp4
from generator.inputs import db_ref
from generator.pipeline import VideoPipeline
from generator.tiny import build_tiny_model
from generator.worker import Worker
from videobot.db import Database
from videobot.errors import InvalidParameters
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.migrate import upgrade
from videobot.models import LedgerEntry
from videobot.presets import (
    PRESETS,
    REQUEST_VERBS,
    TINY_FAMILIES,
    VERBS,
    GenerationParams,
    check_verb,
    offered_verbs,
    plan,
    tiny_family,
)
from videobot.settings import Settings

TINY_PRESETS = [f"tiny-{f}" for f in TINY_FAMILIES]
CASES = [(name, verb) for name in TINY_PRESETS for verb in REQUEST_VERBS if verb in PRESETS[name].verbs]
_loaded: dict[str, VideoPipeline] = {}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("family-data")


def load(name: str, data_dir: Path) -> VideoPipeline:
    """Each tiny model loaded once for the module, through the production path (folder + from_pretrained)."""
    if name not in _loaded:
        _loaded[name] = VideoPipeline.load(name, data_dir=data_dir, device="cpu")
    return _loaded[name]


def picture(width: int = 70, height: int = 40) -> Image.Image:
    """A picture of another size than the video: the pipeline must fit it."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def source_clip(preset_name: str, frames: int = 9) -> np.ndarray:
    """A moving gradient at the preset's 16:9 size: something a codec keeps recognisable."""
    w, h = PRESETS[preset_name].sizes["16:9"]
    y, x = np.mgrid[0:h, 0:w]
    out = [
        np.stack([(x * 4 + 8 * i) % 256, (y * 6) % 256, np.full_like(x, 40 + 20 * i)], axis=-1)
        for i in range(frames)
    ]
    return np.stack(out).astype(np.uint8)


# --- tiny models: real classes, small folders, the production loading path -----------------------------------


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_tiny_model_of_each_family_is_small_and_loads_as_its_preset_says(
    family: str, models_dir: Path
) -> None:
    name = f"tiny-{family}"
    preset = PRESETS[name]
    assert tiny_family(preset) == family
    start = time.perf_counter()
    pipe = load(name, models_dir)
    assert time.perf_counter() - start < 60  # generous: a shared 2-core machine; ~1 s alone
    folder = models_dir / "models" / name
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == preset.pipeline_class == type(pipe.pipe).__name__
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) < 2_000_000
    assert pipe.verbs == preset.verbs & set(REQUEST_VERBS)
    for verb, p in pipe.pipes.items():
        assert type(p).__name__ == preset.pipeline_for(verb)


def test_the_default_tiny_model_offers_every_verb_the_bot_has() -> None:
    assert PRESETS["tiny"].verbs >= {"text", "image", "extend"}
    assert tiny_family(PRESETS["tiny"]) == "ltx"
    assert offered_verbs("tiny") == {"text", "image", "extend", "keyframes", "loop", "hd"}
    assert offered_verbs("auto") == {"text", "image", "extend", "keyframes", "loop"}
    assert offered_verbs("tiny-wan") == {"text"}
    assert offered_verbs("tiny-ltx2") == {"text", "image", "extend", "audio", "keyframes", "loop", "hd"}
    assert offered_verbs("cogvideox-5b-i2v") == {"image"}
    assert offered_verbs("no such model") == frozenset()


def test_a_family_folder_is_rebuilt_when_another_family_was_there(tmp_path: Path) -> None:
    build_tiny_model(tmp_path / "m", "cogvideox")
    build_tiny_model(tmp_path / "m", "wan")
    assert json.loads((tmp_path / "m" / "model_index.json").read_text())["_class_name"] == "WanPipeline"
    with pytest.raises(ValueError, match="wan, wan22, ltx, ltx2, cogvideox"):
        build_tiny_model(tmp_path / "x", "sora")


# --- one checkpoint, several pipelines, one copy of the weights ---------------------------------------------


@pytest.mark.parametrize("name", ["tiny-wan22", "tiny-ltx2"])
def test_per_verb_pipelines_share_the_loaded_components(name: str, models_dir: Path) -> None:
    vp = load(name, models_dir)
    # The checkpoint's own pipeline and another class built from it (Wan 2.2: image; LTX-2: the condition
    # pipeline, one instance for text, image and extend).
    text = vp.pipe
    image = next(p for p in vp.pipes.values() if type(p) is not type(text))
    assert len({id(p) for p in vp.pipes.values() if type(p) is type(image)}) == 1
    shared = [k for k, v in text.components.items() if v is not None]
    assert set(shared) <= set(image.components)
    for key in shared:
        assert getattr(image, key) is getattr(text, key), key
    # No second copy: the image pipeline's weights are the very same tensors.
    storage = {
        t.data_ptr() for m in text.components.values() if hasattr(m, "parameters") for t in m.parameters()
    }
    other = {
        t.data_ptr() for m in image.components.values() if hasattr(m, "parameters") for t in m.parameters()
    }
    assert other == storage


# --- settings reach the real pipeline call -------------------------------------------------------------------


def _record_calls(monkeypatch: pytest.MonkeyPatch, vp: VideoPipeline) -> list[dict]:
    calls: list[dict] = []
    for pipe in {id(p): p for p in vp.pipes.values()}.values():
        cls = type(pipe)
        real = cls.__call__

        def spy(self, *args, _real=real, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(dict(kwargs))
            return _real(self, *args, **kwargs)

        spy.__signature__ = inspect.signature(real)  # type: ignore[attr-defined]
        monkeypatch.setattr(cls, "__call__", spy)
    return calls


@pytest.mark.parametrize(("name", "verb"), CASES)
def test_preset_settings_reach_the_pipeline_call(name: str, verb: str, models_dir: Path, monkeypatch) -> None:
    vp = load(name, models_dir)
    preset = vp.preset
    calls = _record_calls(monkeypatch, vp)
    params = plan(preset, "a lighthouse in a storm", seed=3, verb=verb, aspect_ratio="16:9")
    inputs = (
        {"image": picture()} if verb == "image" else {"video": source_clip(name)} if verb == "extend" else {}
    )
    vp.run(params, **inputs)
    assert len(calls) == 1
    kw = calls[0]
    assert kw["guidance_scale"] == preset.guidance
    assert kw["num_inference_steps"] == preset.steps
    assert (kw["width"], kw["height"]) == preset.sizes["16:9"]
    assert kw["negative_prompt"] == (preset.negative_prompt or None)
    assert kw["output_type"] == "np" and callable(kw["callback_on_step_end"])
    for key, value in preset.extra_call_kwargs.items():
        assert kw.get(key) == value, f"{name}: `{key}` was dropped before the call"
    if preset.family in ("ltx", "ltx2"):
        assert kw["frame_rate"] == preset.fps  # LTX's rotary embeddings are timed with it
    pipe = vp.pipes[verb]
    for key, value in preset.scheduler.items():
        assert pipe.scheduler.config[key] == value, f"{name}: scheduler `{key}` not applied"
    for key, value in preset.pipeline_config.items():
        assert pipe.config[key] == value, f"{name}: `{key}` missing on {type(pipe).__name__}"
    if verb == "image":
        given = kw.get("image") or _condition(kw["conditions"][0])[1]
        assert isinstance(given, Image.Image) and given.size == preset.sizes["16:9"]
    if verb == "extend":
        (cond,) = kw["conditions"]
        index, frames = _condition(cond)
        assert index == 0 and len(frames) == preset.extend_context_frames
        assert kw["num_frames"] == preset.extend_window


def _condition(cond: object) -> tuple[int, object]:
    """(frame index, picture or frames) of an LTX (``LTXVideoCondition``) or LTX-2 (``LTX2VideoCondition``) condition."""
    if hasattr(cond, "frames"):  # LTX-2
        return cond.index, cond.frames  # type: ignore[attr-defined]
    return cond.frame_index, cond.image if cond.image is not None else cond.video  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p.needs_gpu])
def test_real_presets_only_use_settings_their_pipelines_take(name: str) -> None:
    """Static guard for the presets that cannot be loaded here: every key exists where it is applied."""
    preset = PRESETS[name]
    assert preset.verbs and preset.verbs <= set(VERBS)
    if {"keyframes", "loop"} & preset.verbs:  # conditions at the last frame: only the condition pipelines
        assert all(
            preset.pipeline_for(v) in ("LTXConditionPipeline", "LTX2ConditionPipeline")
            for v in REQUEST_VERBS
            if v in preset.verbs
        )
    for verb in (v for v in REQUEST_VERBS if v in preset.verbs):
        cls = getattr(diffusers, preset.pipeline_for(verb))
        call = inspect.signature(cls.__call__).parameters
        for key in preset.extra_call_kwargs:
            assert key in call, f"{name}: {cls.__name__} does not take `{key}`"
        for key in ("prompt", "negative_prompt", "num_frames", "guidance_scale", "callback_on_step_end"):
            assert key in call
        if preset.family in ("ltx", "ltx2"):
            assert "frame_rate" in call
        for key in preset.pipeline_config:
            assert key in inspect.signature(cls.__init__).parameters
    if preset.scheduler:  # Wan checkpoints ship UniPC in flow mode
        assert set(preset.scheduler) <= set(diffusers.UniPCMultistepScheduler().config)
    assert preset.vram_gb > 0 and preset.vram_source.split(" (")[0] in (
        "model card",
        "estimate",
        "diffusers docs",
    )
    if "extend" in preset.verbs:
        assert preset.extend_frames % preset.frame_rule == 0 and preset.valid_frames(preset.extend_window)
    assert 1 <= preset.batch_cap <= 4


def test_wan_vae_weights_are_the_saved_float32_ones_after_load_and_from_pipe(models_dir: Path) -> None:
    """Wan's VAE runs in float32 with the rest in bfloat16: read straight into float32 (not rounded through
    bfloat16 and cast back), and still exactly the saved weights after ``from_pipe`` built the image pipeline."""
    import torch
    from safetensors.torch import load_file

    vp = VideoPipeline.load("tiny-wan22", data_dir=models_dir / "bf16", device="cpu", dtype="bfloat16")
    saved: dict[str, torch.Tensor] = {}
    for f in sorted((models_dir / "bf16" / "models" / "tiny-wan22" / "vae").glob("*.safetensors")):
        saved |= load_file(str(f))
    assert saved and all(t.dtype == torch.float32 for t in saved.values())
    assert vp.pipes["image"] is not vp.pipe and vp.pipes["image"].vae is vp.pipe.vae  # built with from_pipe
    weights = dict(vp.pipe.vae.state_dict())
    assert set(weights) == set(saved)
    for key, want in saved.items():
        assert weights[key].dtype == torch.float32 and torch.equal(weights[key], want), key
    assert vp.pipe.transformer.dtype == torch.bfloat16
    assert vp.pipe.config.expand_timesteps and vp.pipes["image"].config.expand_timesteps
    # and it renders both verbs in mixed precision
    params = plan(PRESETS["tiny-wan22"], "a cat", seed=1)
    assert vp.run(params).frames.shape[0] == params.num_frames
    image = plan(PRESETS["tiny-wan22"], "a cat", seed=1, verb="image")
    assert vp.run(image, image=picture()).frames.shape[0] == image.num_frames


# --- requests --------------------------------------------------------------------------------------------------


def test_old_job_rows_still_load() -> None:
    old = {"prompt": "a cat", "negative_prompt": "", "seed": 1, "num_frames": 9, "width": 48, "height": 32,
           "fps": 8, "num_inference_steps": 2, "guidance_scale": 5.0}  # fmt: skip
    params = GenerationParams.from_dict(old)
    assert (params.verb, params.image, params.num_videos, params.audio) == ("text", None, 1, False)
    new = plan(PRESETS["tiny"], "a cat", verb="image", image="/tmp/x.png", num_videos=2)
    assert GenerationParams.from_dict(json.loads(json.dumps(new.to_dict()))) == new


def test_a_verb_the_model_lacks_is_refused_with_what_it_offers() -> None:
    with pytest.raises(InvalidParameters, match="cannot make videos from an image; it offers: text"):
        plan(PRESETS["tiny-wan"], "a cat", verb="image")
    with pytest.raises(InvalidParameters, match="cannot make clip extensions"):
        check_verb(PRESETS["ltx-2"], "extend")
    with pytest.raises(InvalidParameters, match="Unknown kind"):
        check_verb(PRESETS["tiny"], "audio")
    assert plan(PRESETS["cogvideox-5b-i2v"], "a cat").verb == "image"  # an image-only model
    assert plan(PRESETS["tiny-ltx2"], "a cat").audio and not plan(PRESETS["tiny"], "a cat", audio=True).audio
    with pytest.raises(InvalidParameters, match="number of videos"):
        plan(PRESETS["tiny"], "a cat", num_videos=5)


def test_extension_starts_with_the_source_and_adds_the_preset_length(models_dir: Path) -> None:
    vp = load("tiny", models_dir)
    src = source_clip("tiny", frames=13)  # not 8k+1: the context is the last 9 frames
    out = vp.run(plan(vp.preset, "the storm passes", seed=5, verb="extend", aspect_ratio="16:9"), video=src)
    assert len(out.frames) == len(src) + vp.preset.extend_frames
    np.testing.assert_array_equal(out.frames[: len(src)], src)
    assert out.frames[len(src) :].std() > 0
    with pytest.raises(InvalidParameters, match="needs the clip"):
        vp.run(plan(vp.preset, "x", verb="extend"))


def test_variations_are_distinct_videos(models_dir: Path) -> None:
    vp = load("tiny", models_dir)
    out = vp.run(plan(vp.preset, "a kite", seed=9, num_videos=2))
    assert len(out.variations) == 2 and out.frames is out.variations[0]
    assert np.abs(out.variations[0].astype(int) - out.variations[1].astype(int)).max() > 0


def test_ltx2_makes_a_stereo_soundtrack_as_long_as_the_video(models_dir: Path) -> None:
    vp = load("tiny-ltx2", models_dir)
    params = plan(vp.preset, "rain on a tin roof", seed=2, duration_s=2)
    out = vp.run(params)
    assert out.audio is not None and out.audio.dtype == np.float32 and out.audio.shape[0] == 2
    assert out.audio_sample_rate == 16000
    assert abs(out.audio.shape[1] / out.audio_sample_rate - params.duration_s) < 0.25 * params.duration_s
    assert np.isfinite(out.audio).all() and out.audio.std() > 0
    assert vp.run(plan(vp.preset, "rain", seed=2, audio=False)).audio is None


# --- each family x verb, a real job through the worker ------------------------------------------------------


@pytest.mark.parametrize(("name", "verb"), CASES)
async def test_job_of_each_family_and_verb_becomes_a_playable_video(
    name: str, verb: str, models_dir: Path, tmp_path: Path
) -> None:
    vp = load(name, models_dir)
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    db = Database(url)
    try:
        q = JobQueue(db, QueueConfig(lease_seconds=5))
        # Inputs travel with the job in the database, as the bot stores them (no file paths).
        refs: dict[str, str] = {}
        stored: dict[str, bytes] = {}
        src = None
        if verb == "image":
            buf = io.BytesIO()
            picture().save(buf, format="PNG")
            stored["image"], refs["image"] = buf.getvalue(), db_ref("image")
        elif verb == "extend":
            clip = encode_mp4(source_clip(name), vp.preset.fps).data
            stored["video"], refs["source_video"] = clip, db_ref("video")
            src = probe_mp4(clip, decode=True)["frames"]
        params = plan(vp.preset, "a fox running through snow", seed=7, verb=verb, aspect_ratio="16:9", **refs)
        sub = await q.submit(
            SubmitRequest(idempotency_key=f"{name}-{verb}", guild_id=1, channel_id=2, user_id=1, model=name,
                          params=params.to_dict(), inputs=stored)
        )  # fmt: skip
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, VIDEOBOT_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=url, VIDEOBOT_MODEL=name,
            VIDEOBOT_POLL_SECONDS=0.05, VIDEOBOT_HEARTBEAT_SECONDS=0.5, VIDEOBOT_LEASE_SECONDS=5,
        )  # fmt: skip
        worker = Worker(settings, q, vp, worker_id="w1", models=[name])
        task = asyncio.create_task(worker.run())
        try:
            deadline = time.monotonic() + 120
            while (job := await q.get(sub.job.id)) is not None and job.status not in ("succeeded", "failed"):
                assert time.monotonic() < deadline, f"stuck in {job.status}"
                await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)
        assert job is not None and job.status == "succeeded", job.error_message if job else None
        result = await q.get_result(sub.job.id)
        assert result is not None
        info = probe_mp4(result.video, decode=True)
        assert info["codec"] == "h264" and info["faststart"]
        assert (info["width"], info["height"]) == (params.width, params.height)
        assert round(float(info["fps"])) == params.fps
        if verb == "extend":
            assert src is not None
            assert abs(info["num_frames"] - (len(src) + vp.preset.extend_frames)) <= 1
            # The posted clip is the source followed by its continuation (both through H.264: compare loosely).
            diff = np.abs(info["frames"][: len(src)].astype(int) - src.astype(int)).mean()
            assert diff < 8, diff
        else:
            assert info["num_frames"] == params.num_frames
        assert info["frames"].std() > 0
        if "audio" in vp.preset.verbs:
            # Sound from the model itself (tiny LTX-2), muxed as AAC: as long as the video, within a frame.
            assert info["audio"] is not None and info["audio"]["codec"] == "aac", info.get("audio")
            assert abs(info["audio"]["duration_s"] - info["video_duration_s"]) <= 1 / params.fps + 1e-6
            assert len(result.video) <= 200_000
        else:
            assert info["audio"] is None
    finally:
        await db.dispose()


async def test_a_job_whose_image_is_gone_fails_cleanly_and_is_refunded(
    models_dir: Path, tmp_path: Path
) -> None:
    vp = load("tiny", models_dir)
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    db = Database(url)
    try:
        q = JobQueue(db, QueueConfig(lease_seconds=5))
        # An image named by path (never written by the bot) or missing from the database: refused, refunded.
        params = plan(vp.preset, "a fox", seed=1, verb="image", image=str(tmp_path / "first.png"))
        (tmp_path / "first.png").write_bytes(b"not read: workers take inputs from the database only")
        sub = await q.submit(
            SubmitRequest(idempotency_key="gone", guild_id=1, channel_id=2, user_id=1, model="tiny",
                          params=params.to_dict())
        )  # fmt: skip
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, VIDEOBOT_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=url, VIDEOBOT_MODEL="tiny",
            VIDEOBOT_POLL_SECONDS=0.05, VIDEOBOT_HEARTBEAT_SECONDS=0.5, VIDEOBOT_LEASE_SECONDS=5,
        )  # fmt: skip
        worker = Worker(settings, q, vp, worker_id="w1", models=["tiny"])
        task = asyncio.create_task(worker.run())
        try:
            deadline = time.monotonic() + 60
            while (job := await q.get(sub.job.id)) is not None and job.status not in ("succeeded", "failed"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)
        assert job is not None and job.status == "failed"
        assert "no longer available" in (job.error_message or "")
        async with db.sessionmaker() as s:
            kinds = (
                (await s.execute(select(LedgerEntry.kind).where(LedgerEntry.job_id == job.id)))
                .scalars()
                .all()
            )
        assert sorted(kinds) == ["charge", "refund"]
    finally:
        await db.dispose()
