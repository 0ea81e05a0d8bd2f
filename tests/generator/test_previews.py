"""Live previews on every family's tiny model: a preview decodes as a picture, and previews never change
the video (same seed, previews on or off, identical frames)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator import preview
from generator.pipeline import VideoPipeline
from videobot.presets import TINY_FAMILIES, plan

_loaded: dict[str, VideoPipeline] = {}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("preview-data")


def load(name: str, data_dir: Path) -> VideoPipeline:
    if name not in _loaded:
        _loaded[name] = VideoPipeline.load(name, data_dir=data_dir, device="cpu")
    return _loaded[name]


class Every:
    """A sink that wants a preview at every step and keeps them all."""

    def __init__(self) -> None:
        self.got: list[tuple[int, bytes, str]] = []

    def due(self, step: int, total: int) -> bool:
        return True

    def put(self, step: int, data: bytes, content_type: str) -> None:
        self.got.append((step, data, content_type))


@pytest.mark.parametrize("name", [f"tiny-{f}" for f in TINY_FAMILIES])
def test_previews_decode_and_leave_the_video_unchanged(name: str, models_dir: Path) -> None:
    vp = load(name, models_dir)
    assert vp.previews_supported()
    params = plan(vp.preset, "a red boat on the sea", seed=1234)
    params = params.__class__.from_dict({**params.to_dict(), "num_inference_steps": 3})
    plain = vp.run(params)
    sink = Every()
    watched = vp.run(params, previews=sink)
    np.testing.assert_array_equal(plain.frames, watched.frames)
    # Every step but the last (the result itself comes right after it).
    assert [s for s, _, _ in sink.got] == [1, 2]
    for _, data, content_type in sink.got:
        assert content_type == "image/webp" and len(data) <= preview.MAX_BYTES
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            assert img.format == "WEBP" and min(img.size) >= 8, img.size
            assert max(img.size) <= preview.MAX_SIDE
    # Not a blank picture: the decoded latents vary.
    pixels = np.asarray(Image.open(io.BytesIO(sink.got[-1][1])).convert("RGB"))
    assert pixels.std() > 1.0


def test_a_pipeline_of_unknown_layout_shows_no_preview() -> None:
    class SomeOtherPipeline:
        pass

    assert preview.latent_layout(SomeOtherPipeline()) is None


def test_an_oversized_picture_is_shrunk_under_the_byte_cap() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    data = preview.encode_webp(noise)
    assert data is not None and len(data) <= preview.MAX_BYTES
    assert max(Image.open(io.BytesIO(data)).size) == preview.MAX_SIDE


def test_the_timer_waits_its_interval_and_keeps_previews_under_their_share_of_the_time() -> None:
    now = [0.0]
    timer = preview.PreviewTimer(10.0, clock=lambda: now[0])
    now[0] = 9.9
    assert not timer.due(1, 50)  # the first one comes an interval after the start
    now[0] = 10.0
    assert timer.due(2, 50)
    now[0] = 12.0  # that preview took 2 s: a slow VAE
    timer.put(2, b"x", "image/webp")
    now[0] = 22.0
    # 10 s since the last one, but 2 s + the next 2 s would be over 4 % of 22 s: not yet.
    assert not timer.due(3, 50)
    now[0] = 100.0
    assert timer.due(4, 50)
    assert (timer.spent + timer.cost) / now[0] <= preview.MAX_SHARE


def test_a_large_video_gets_a_small_preview(models_dir: Path) -> None:
    """832x480 on an 8x VAE: the latent frame is shrunk before the decode, the picture fits MAX_SIDE."""
    import torch

    pipe = load("tiny-wan", models_dir).pipe
    latents = torch.randn(
        1, pipe.vae.config.z_dim, 3, 480 // 8, 832 // 8, generator=torch.Generator().manual_seed(0)
    )
    data = preview.preview_image(pipe, latents, {"width": 832, "height": 480, "num_frames": 9})
    assert data is not None
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (208, 120)  # the latent (104x60) averaged 4x, decoded 8x: never the full 832x480


class DecodeCounter:
    """Counts the calls of a VAE's ``decode`` (and still decodes)."""

    def __init__(self, vae) -> None:  # type: ignore[no-untyped-def]
        self.calls = 0
        self.inner = vae.decode

    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner(*args, **kwargs)


@pytest.mark.parametrize("offload", ["model", "sequential", "group"])
@pytest.mark.parametrize("name", [f"tiny-{f}" for f in TINY_FAMILIES])
def test_previews_appear_under_every_offload_mode_without_the_vae(
    name: str, offload: str, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offloaded models used to show no previews at all; now they project the latents instead of
    decoding them: previews at every step, the VAE called no more often than without previews, and the
    video unchanged."""
    vp = VideoPipeline.load(name, data_dir=models_dir, device="cpu", offload=offload)
    assert vp.previews_supported()
    assert vp.preview_plan().method == preview.PROJECTION
    counter = DecodeCounter(vp.pipe.vae)
    monkeypatch.setattr(vp.pipe.vae, "decode", counter)
    params = plan(vp.preset, "a red boat on the sea", seed=1234)
    params = params.__class__.from_dict({**params.to_dict(), "num_inference_steps": 3})
    plain = vp.run(params)
    plain_decodes, counter.calls = counter.calls, 0
    sink = Every()
    watched = vp.run(params, previews=sink)
    assert counter.calls == plain_decodes  # the final video only: no preview touched the VAE
    np.testing.assert_array_equal(plain.frames, watched.frames)
    assert [s for s, _, _ in sink.got] == [1, 2]
    for _, data, content_type in sink.got:
        assert content_type == "image/webp" and len(data) <= preview.MAX_BYTES
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            assert img.format == "WEBP" and max(img.size) <= preview.MAX_SIDE
            # Upscaled from the latent frame towards the video's size.
            assert min(img.size) >= min(params.width, params.height) // 2, img.size
    pixels = np.asarray(Image.open(io.BytesIO(sink.got[-1][1])).convert("RGB"))
    assert pixels.std() > 1.0


def test_the_preview_plan_names_its_method_for_every_memory_option() -> None:
    assert preview.preview_plan("wan", "none").method == preview.VAE
    for family, channels in (("wan", 16), ("wan22", 48), ("ltx", 128), ("ltx2", 128)):
        for offload in ("model", "sequential", "group"):
            shown = preview.preview_plan(family, offload, channels)
            assert shown.method == preview.PROJECTION and "published" in shown.why, shown
    # No published factors (CogVideoX), or latents of another width (the tiny models): the fallback.
    assert "fixed per-channel" in preview.preview_plan("cogvideox", "model", 16).why
    assert "fixed per-channel" in preview.preview_plan("wan", "group", 4).why
    assert preview.preview_plan(None, "model").method is None


@pytest.mark.parametrize(
    ("family", "channels", "bias"),
    [
        ("wan", 16, (-0.1835, -0.0868, -0.3360)),
        ("wan22", 48, (0.0317, -0.0878, -0.1388)),
        ("ltx", 128, (-0.0571, -0.1657, -0.2512)),
        ("ltx2", 128, (-0.347892, -0.363814, -0.370287)),
    ],
)
def test_a_real_familys_latents_use_its_published_factors(
    family: str, channels: int, bias: tuple[float, float, float]
) -> None:
    """A latent of the real channel count goes through the family's table: an all-zero latent shows the
    table's bias colour (ComfyUI's numbers), upscaled by the VAE's factor."""
    import torch

    class WanPipeline:  # a Wan-like layout [B, C, F, h, w] with an 8x VAE
        vae_scale_factor_spatial = 8

    latents = torch.zeros(1, channels, 3, 6, 10)
    data = preview.preview_image(WanPipeline(), latents, {}, preview.PROJECTION, family)
    assert data is not None
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (80, 48)
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(pixels, [(b + 1) * 127.5 for b in bias], atol=3)
