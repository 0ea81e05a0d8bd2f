import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.pipeline import ModelLoadError, VideoPipeline, resolve_auto_model
from generator.tiny import build_tiny_model
from videobot.errors import GenerationOOM, InvalidParameters, JobCancelled
from videobot.presets import PRESETS, plan

TINY = PRESETS["tiny"]


def _params(seed=0, **kw):
    return plan(TINY, "a cat surfing a wave", seed=seed, **kw)


def test_tiny_model_is_small_complete_and_reused(tiny_model_dir: Path):
    index = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert index["_class_name"] == "LTXConditionPipeline"
    size = sum(f.stat().st_size for f in tiny_model_dir.rglob("*") if f.is_file())
    assert size < 2_000_000
    before = (tiny_model_dir / "model_index.json").stat().st_mtime_ns
    assert build_tiny_model(tiny_model_dir) == tiny_model_dir
    assert (tiny_model_dir / "model_index.json").stat().st_mtime_ns == before
    # Nothing half-written is left next to it (other tests may have built other families there).
    assert [p.name for p in tiny_model_dir.parent.iterdir() if p.name.startswith(".")] == []


def test_an_incomplete_model_folder_is_rebuilt(tmp_path: Path):
    target = tmp_path / "tiny"
    target.mkdir()
    (target / "model_index.json").write_text("{}")  # a crash left this behind: no completion marker
    build_tiny_model(target)
    assert json.loads((target / "model_index.json").read_text())["_class_name"] == "LTXConditionPipeline"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_generates_uint8_frames_with_progress(tiny_pipeline: VideoPipeline):
    steps = []
    start = time.perf_counter()
    frames = tiny_pipeline.run(_params(aspect_ratio="16:9"), on_step=lambda s, t: steps.append((s, t))).frames
    assert time.perf_counter() - start < 10
    assert frames.dtype == np.uint8 and frames.shape == (9, 32, 64, 3)
    assert steps == [(1, 2), (2, 2)]
    assert frames.std() > 0  # not a blank video


def test_same_seed_same_video_other_seed_different(tiny_pipeline: VideoPipeline):
    a = tiny_pipeline.run(_params(seed=123)).frames
    b = tiny_pipeline.run(_params(seed=123)).frames
    c = tiny_pipeline.run(_params(seed=124)).frames
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).max() > 0


def test_cancel_at_first_step_stops_before_decoding(tiny_pipeline: VideoPipeline, monkeypatch):
    vae = tiny_pipeline.pipe.vae
    decodes = []
    real_decode = vae.decode
    monkeypatch.setattr(vae, "decode", lambda *a, **k: decodes.append(1) or real_decode(*a, **k))
    calls = []

    def on_step(step: int, total: int) -> None:
        calls.append(step)
        raise JobCancelled()

    with pytest.raises(JobCancelled):
        tiny_pipeline.run(_params(), on_step=on_step)
    assert calls == [1]
    assert decodes == []
    # Still usable, and this time the decoder does run.
    assert tiny_pipeline.run(_params()).frames.shape == (9, 32, 64, 3)
    assert decodes == [1]


def test_out_of_memory_becomes_a_polite_error_and_the_pipeline_recovers(
    tiny_pipeline: VideoPipeline, monkeypatch
):
    transformer = tiny_pipeline.pipe.transformer

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(transformer, "forward", oom)
    with pytest.raises(GenerationOOM) as err:
        tiny_pipeline.run(_params())
    assert "shorter duration" in str(err.value)
    monkeypatch.undo()
    expected = tiny_pipeline.run(_params(seed=5)).frames
    assert expected.shape == (9, 32, 64, 3)


def test_other_errors_are_not_mistaken_for_oom(tiny_pipeline: VideoPipeline, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(tiny_pipeline.pipe.transformer, "forward", boom)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        tiny_pipeline.run(_params())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_frames": 10}, r"8k\+1"),
        ({"num_frames": 33}, "between 9 and 25"),
        ({"width": 40}, "multiple of 32"),
        ({"num_inference_steps": 0}, "steps"),
        ({"prompt": "  "}, "empty"),
    ],
)
def test_check_inputs_rejects_bad_params_before_running(
    tiny_pipeline: VideoPipeline, change, message, monkeypatch
):
    from dataclasses import replace

    monkeypatch.setattr(
        tiny_pipeline.pipe.transformer, "forward", lambda *a, **k: pytest.fail("ran the model")
    )
    with pytest.raises(InvalidParameters, match=message):
        tiny_pipeline.run(replace(_params(), **change))


def test_memory_options_load_and_generate(tiny_data_dir: Path, tiny_model_dir: Path):
    pipe = VideoPipeline.load("tiny", data_dir=tiny_data_dir, layerwise_fp8=True, vae_tiling=True)
    assert pipe.pipe.vae.use_tiling
    assert torch.float8_e4m3fn in {p.dtype for p in pipe.pipe.transformer.parameters()}
    frames = pipe.run(_params()).frames
    assert frames.shape == (9, 32, 64, 3)


def test_loading_a_local_diffusers_folder(tiny_model_dir: Path, tiny_data_dir: Path):
    pipe = VideoPipeline.load(str(tiny_model_dir), data_dir=tiny_data_dir, device="cpu")
    assert pipe.preset.family == "ltx" and pipe.preset.name == str(tiny_model_dir)
    assert pipe.verbs == {"text", "image", "extend"}  # an LTXConditionPipeline folder does all three


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU behaviour")
def test_gpu_model_without_gpu_says_what_to_do(tmp_path: Path):
    with pytest.raises(ModelLoadError) as err:
        VideoPipeline.load("wan2.1-1.3b", data_dir=tmp_path)
    assert "wan2.1-1.3b" in str(err.value) and "VIDEOBOT_MODEL=tiny" in str(err.value)
    assert resolve_auto_model("auto") == "tiny"
    assert resolve_auto_model("ltx-video") == "ltx-video"


def test_model_not_downloadable_offline(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(ModelLoadError) as err:
        VideoPipeline.load("someorg/wan-does-not-exist", data_dir=tmp_path, device="cpu")
    text = str(err.value)
    assert "someorg/wan-does-not-exist" in text and "internet" in text


def test_unknown_model_and_options(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="tiny"):
        VideoPipeline.load("not a model", data_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="offload"):
        VideoPipeline.load("tiny", data_dir=tmp_path, offload="everything")


def test_an_image_job_reports_which_picture_conditioned_it(tiny_pipeline: VideoPipeline):
    """The digest is of the exact first frame given to diffusers: the picture centre-cropped to the size."""
    from PIL import Image

    from videobot.images import fit, pixel_digest

    picture = Image.new("RGB", (100, 40), (250, 120, 0))
    picture.paste((0, 0, 255), (0, 0, 20, 40))  # a blue band on the left, cropped away for 16:9
    params = plan(PRESETS["tiny"], "it glows", seed=5, aspect_ratio="16:9", verb="image", image="db:image")
    out = tiny_pipeline.run(params, image=picture)
    assert out.conditioning_digest == pixel_digest(fit(picture, params.width, params.height))
    assert out.conditioning_digest != pixel_digest(picture.resize((params.width, params.height)))
    assert tiny_pipeline.run(_params()).conditioning_digest is None
