"""End frame and loop on the tiny LTX-Video and LTX-2 models: the real condition pipelines run, and what
reaches them is watched (the conditions at the first and the last frame), then the decoded video.

The tiny models have random weights: their VAE does not give a picture back, and the last-frame condition
is a keyframe the model is steered towards (extra tokens), not pixels it must copy. So "the video ends on
the picture" is checked where it is decided: the pipeline gets the picture at the last frame index, and
``close_ending`` makes the final frame the picture; the loop's seam is judged on the decoded H.264 file
against the same video made without a loop.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from generator.encode import encode_mp4, probe_mp4
from generator.pipeline import VideoPipeline, batch_size, close_ending, run_variations
from videobot.errors import InvalidParameters
from videobot.presets import LOOP_START_FRAMES, PRESETS, GenerationParams, plan

FAMILIES = ["tiny-ltx", "tiny-ltx2"]
_loaded: dict[str, VideoPipeline] = {}

RED = (220, 30, 30)
BLUE = (20, 40, 230)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keyframes-data")


def load(name: str, data_dir: Path) -> VideoPipeline:
    if name not in _loaded:
        _loaded[name] = VideoPipeline.load(name, data_dir=data_dir, device="cpu")
    return _loaded[name]


def flat(rgb: tuple[int, int, int], size: tuple[int, int] = (90, 50)) -> Image.Image:
    """A plain picture of another size than the video (the pipeline must fit it)."""
    return Image.new("RGB", size, rgb)


class Seen:
    """The conditions the real pipeline call worked with, recorded by wrapping its own method (which
    still runs): LTX-Video's ``prepare_latents`` (encoded condition tensors and pixel frame indices),
    LTX-2's ``preprocess_conditions`` (condition tensors and the latent indices it resolved)."""

    def __init__(self, pipe: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        self.family = "ltx2" if type(pipe).__name__ == "LTX2ConditionPipeline" else "ltx"
        name = "preprocess_conditions" if self.family == "ltx2" else "prepare_latents"
        original = getattr(pipe, name)

        def spy(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            if self.family == "ltx2":
                frames, _strengths, indices, _pixel_frames = out
                self.calls.append({"tensors": list(frames), "indices": list(indices)})
            else:
                tensors = list(args[0] if args else kwargs["conditions"])
                indices = args[2] if len(args) > 2 else kwargs["condition_frame_index"]
                self.calls.append(
                    {
                        "tensors": tensors,
                        "indices": list(indices) if tensors else [],  # without conditions: the default 0
                        "num_frames": kwargs.get("num_frames"),
                    }
                )
            return out

        self.pipe, self.name, self.original = pipe, name, original
        setattr(pipe, name, spy)

    def close(self) -> None:
        # The instance attribute goes: the class's method is back.
        delattr(self.pipe, self.name)


@pytest.fixture
def watch() -> Any:
    seen: list[Seen] = []

    def start(pipe: Any) -> Seen:
        seen.append(Seen(pipe))
        return seen[-1]

    yield start
    for s in seen:
        s.close()


def last_index(name: str, num_frames: int) -> int:
    """Where the last frame is in each family's terms: LTX-Video a pixel frame index, LTX-2 a latent index."""
    if PRESETS[name].family == "ltx2":
        return (num_frames - 1) // 8  # latent frames: (F - 1) / 8 + 1
    return num_frames - 1


def dominant(tensor: Any) -> str:
    """Which colour a condition tensor [1, 3, F, H, W] in [-1, 1] shows."""
    means = tensor.float().mean(dim=(0, 2, 3, 4)).tolist()
    return ("red", "green", "blue")[int(np.argmax(means))]


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("name", FAMILIES)
def test_first_and_end_picture_reach_the_pipeline_at_the_first_and_last_frame(
    name: str, data_dir: Path, watch: Any
) -> None:
    vp = load(name, data_dir)
    # 17 frames: the last frame's index (16, or latent 2) is not the shortest clip's.
    params = plan(vp.preset, "a fox", seed=3, duration_s=2.0, verb="image", image="a", end_image="b")
    assert params.num_frames == 17 and params.end_image == "b" and params.verb == "image"
    seen = watch(vp.pipes["image"])
    out = vp.run(params, image=flat(RED), end_image=flat(BLUE))
    (call,) = seen.calls
    assert call["indices"] == [0, last_index(name, 17)]
    assert [dominant(t) for t in call["tensors"]] == ["red", "blue"]
    assert out.frames.shape == (17, 32, 64, 3)
    # The video ends on the end picture (fitted to the video's size); the first frame is the model's own.
    assert np.array_equal(out.frames[-1], np.asarray(flat(BLUE).resize((64, 32))))
    assert mean_diff(out.frames[0], out.frames[-1]) > 20


@pytest.mark.parametrize("name", FAMILIES)
def test_an_end_picture_alone_is_one_condition_at_the_last_frame(
    name: str, data_dir: Path, watch: Any
) -> None:
    vp = load(name, data_dir)
    params = plan(vp.preset, "a fox", seed=4, end_image="b")
    assert params.verb == "text"
    seen = watch(vp.pipes["text"])
    out = vp.run(params, end_image=flat(BLUE))
    (call,) = seen.calls
    assert call["indices"] == [last_index(name, params.num_frames)]
    assert [dominant(t) for t in call["tensors"]] == ["blue"]
    assert out.frames.shape[0] == params.num_frames


def encoded_frames(frames: np.ndarray, fps: int) -> np.ndarray:
    return probe_mp4(encode_mp4(frames, fps).data, decode=True)["frames"]


@pytest.mark.parametrize("name", FAMILIES)
def test_a_loop_from_a_picture_ends_where_it_starts(name: str, data_dir: Path, watch: Any) -> None:
    """The start picture is the condition at both ends; in the posted (H.264) file the first and last
    frames differ only by the codec's error, while the same video without a loop jumps."""
    vp = load(name, data_dir)
    params = plan(vp.preset, "a fox", seed=5, duration_s=2.0, verb="image", image="a", loop=True)
    seen = watch(vp.pipes["image"])
    looped = vp.run(params, image=flat(RED))
    (call,) = seen.calls
    assert call["indices"] == [0, last_index(name, params.num_frames)]
    assert [dominant(t) for t in call["tensors"]] == ["red", "red"]
    assert np.array_equal(looped.frames[0], looped.frames[-1])  # the same pixels before encoding
    plain = vp.run(dataclasses.replace(params, loop=False), image=flat(RED))
    # The last-frame condition steers the model itself, not only the dissolve over the last frames.
    seam = vp.preset.frame_rule
    assert mean_diff(looped.frames[1:-seam], plain.frames[1:-seam]) > 0.5

    decoded, decoded_plain = (
        encoded_frames(looped.frames, params.fps),
        encoded_frames(plain.frames, params.fps),
    )
    seam_loop = mean_diff(decoded[0], decoded[-1])
    seam_plain = mean_diff(decoded_plain[0], decoded_plain[-1])
    codec_error = mean_diff(decoded[0], looped.frames[0]) + mean_diff(decoded[-1], looped.frames[-1])
    # Identical pixels before encoding: what differs in the file is at most the codec's error on each.
    assert seam_loop <= codec_error + 1e-6
    # And well under the jump where the same video without a loop starts again (on these noisy 64x32
    # frames H.264 at CRF 20 is off by ~3/255 per frame, so "within the codec's error" is ~6/255).
    assert seam_plain > 2 * seam_loop, (seam_loop, seam_plain)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_loop_without_a_picture_first_makes_its_start_frame(name: str, data_dir: Path, watch: Any) -> None:
    vp = load(name, data_dir)
    params = plan(vp.preset, "a fox", seed=6, loop=True)
    assert params.verb == "text" and params.loop and params.image is None
    seen = watch(vp.pipes["text"])
    steps: list[tuple[int, int]] = []
    out = vp.run(params, lambda k, n: steps.append((k, n)))
    s = params.num_inference_steps
    assert steps == [(k, 2 * s) for k in range(1, 2 * s + 1)]  # both passes, one count
    first, second = seen.calls
    assert first["indices"] == []  # the first pass: text only …
    assert second["indices"] == [0, last_index(name, params.num_frames)]  # … then both ends
    # Both ends hold one picture: the first pass's first frame.
    a, b = second["tensors"]
    assert a.shape == b.shape and bool((a == b).all())
    assert np.array_equal(out.frames[0], out.frames[-1])
    plain = vp.run(dataclasses.replace(params, loop=False))
    assert mean_diff(plain.frames[0], plain.frames[-1]) > 5 * mean_diff(out.frames[0], out.frames[-1]) + 5


def test_the_first_pass_is_the_shortest_clip_with_the_jobs_seed(data_dir: Path, watch: Any) -> None:
    vp = load("tiny-ltx", data_dir)
    params = plan(vp.preset, "a fox", seed=7, duration_s=2.0, loop=True)
    seen = watch(vp.pipes["text"])
    vp.run(params)
    assert [c["num_frames"] for c in seen.calls] == [LOOP_START_FRAMES, 17]
    # The picture both ends hold is the first frame of the 9-frame text video of the job's seed.
    short = vp.run(dataclasses.replace(params, loop=False, num_frames=LOOP_START_FRAMES))
    start = seen.calls[1]["tensors"][0][0, :, 0].float()  # [3, H, W] in [-1, 1]
    expected = torch.from_numpy(short.frames[0]).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(start, expected, atol=1e-3)
    other = vp.run(dataclasses.replace(params, loop=False, num_frames=LOOP_START_FRAMES, seed=70))
    assert mean_diff(other.frames[0], short.frames[0]) > 1


@pytest.mark.parametrize("name", FAMILIES)
def test_variations_of_an_end_picture_each_end_on_it(name: str, data_dir: Path) -> None:
    vp = load(name, data_dir)
    params = plan(vp.preset, "a fox", seed=8, end_image="b", num_videos=2)
    made = run_variations(vp, params, end_image=flat(BLUE))
    assert [v.seed for v in made] == [8, 9]
    end = np.asarray(flat(BLUE).resize((64, 32)))
    videos = [v.output.frames for v in made if v.output is not None]
    assert len(videos) == 2 and all(np.array_equal(v[-1], end) for v in videos)
    assert mean_diff(videos[0][0], videos[1][0]) > 1  # two takes, not one twice
    # Batched (LTX-2) or one at a time (LTX-Video), the second is what its seed makes alone.
    alone = vp.run(dataclasses.replace(params, seed=9, num_videos=1), end_image=flat(BLUE))
    assert mean_diff(videos[1], alone.frames) < 0.5
    assert batch_size(vp.preset, params) == (2 if name == "tiny-ltx2" else 1)


def test_close_ending_dissolves_the_last_frames_into_the_picture() -> None:
    frames = np.zeros((9, 4, 4, 3), np.uint8)
    last = np.full((4, 4, 3), 200, np.uint8)
    out = close_ending(frames, last, 4)
    assert [int(f[0, 0, 0]) for f in out] == [0, 0, 0, 0, 0, 50, 100, 150, 200]
    assert not frames.any()  # the input is not changed


def test_models_without_the_capability_refuse_before_any_work(data_dir: Path) -> None:
    with pytest.raises(InvalidParameters) as err:
        plan(PRESETS["tiny-wan"], "a fox", end_image="b")
    assert "`tiny-wan` cannot end a video on a given picture; it offers: text" in str(err.value)
    with pytest.raises(InvalidParameters, match="cannot make looping videos"):
        plan(PRESETS["tiny-wan22"], "a fox", loop=True)
    with pytest.raises(InvalidParameters, match="cannot also end on another picture"):
        plan(PRESETS["tiny-ltx"], "a fox", loop=True, end_image="b")
    # A job row that asks for it anyway (an old bot, a hand-made row) is refused by the worker's check.
    wan = load("tiny-wan", data_dir)
    row = plan(wan.preset, "a fox", seed=1).to_dict() | {"loop": True}
    with pytest.raises(InvalidParameters, match="cannot make looping videos"):
        wan.check_inputs(GenerationParams.from_dict(row))


def test_an_extension_neither_loops_nor_ends_on_a_picture() -> None:
    params = plan(
        PRESETS["tiny-ltx"], "more", verb="extend", source_video="db:video", loop=True, end_image="b"
    )
    assert params.loop is False and params.end_image is None
