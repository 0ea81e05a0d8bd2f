"""End frame and loop in planning (no Discord, no torch): which models offer them, the job's parameters,
what a rerun, remix or extension keeps, and what a loop costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from videobot.errors import InvalidParameters
from videobot.images import prepare
from videobot.planning import (
    END_IMAGE_REF,
    IMAGE_REF,
    build_params,
    check_end,
    extend_params,
    job_cost,
    offered_verbs,
    queue_target,
    remix_params,
    rerun_params,
)
from videobot.presets import PRESETS, GenerationParams, cost_weight, resolve_preset
from videobot.settings import Settings

from .test_images import png_bytes

KEYFRAME_PRESETS = {
    "ltx-video-distilled",
    "ltx-video-0.9.8-distilled",
    "ltx-2.3-distilled",
    "tiny",
    "tiny-ltx",
    "tiny-ltx2",
}


def settings(model: str, **kw: str) -> Settings:
    return Settings(_env_file=None, VIDEOBOT_MODEL=model, **kw)  # type: ignore[call-arg]


def test_the_condition_pipeline_presets_declare_keyframes_and_loop() -> None:
    have = {name for name, p in PRESETS.items() if {"keyframes", "loop"} <= p.verbs}
    assert have == KEYFRAME_PRESETS
    # Every one of them runs a pipeline that conditions at any frame (LTX-Video's or LTX-2's).
    for name in have:
        for verb in ("text", "image"):
            assert PRESETS[name].pipeline_for(verb) in {"LTXConditionPipeline", "LTX2ConditionPipeline"}
    # A repo id of an LTX condition checkpoint gets them; an LTX-2 repo id (LTX2Pipeline) does not.
    assert {"keyframes", "loop"} <= offered_verbs(settings("auto"))
    assert not {"keyframes", "loop"} & resolve_preset("someone/LTX-2-finetune").verbs
    assert not {"keyframes", "loop"} & offered_verbs(settings("wan2.1-1.3b"))


def test_a_folder_or_repo_of_a_condition_pipeline_gets_them(tmp_path: Path) -> None:
    folder = tmp_path / "my-ltx"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "LTXConditionPipeline"}))
    assert {"keyframes", "loop"} <= resolve_preset(str(folder)).verbs
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "LTXPipeline"}))
    assert not {"keyframes", "loop"} & resolve_preset(str(folder)).verbs  # LTX-Video 0.9.0's pipeline


def test_image_and_end_image_make_an_image_job_that_ends_on_the_second_picture() -> None:
    target = queue_target(settings("tiny"))
    params = build_params(
        target, "a fox", image=prepare(png_bytes(160, 90)), end_image=prepare(png_bytes(90, 160))
    )
    assert params["verb"] == "image" and params["image"] == IMAGE_REF and params["end_image"] == END_IMAGE_REF
    assert (params["width"], params["height"]) == PRESETS["tiny"].sizes["16:9"]  # the first picture's ratio
    alone = build_params(target, "a fox", end_image=prepare(png_bytes(90, 160)))
    assert alone["verb"] == "text" and alone["end_image"] == END_IMAGE_REF and alone["image"] is None
    assert (alone["width"], alone["height"]) == PRESETS["tiny"].sizes["9:16"]  # else the end picture's
    loop = GenerationParams.from_dict(build_params(target, "waves", loop=True))
    assert loop.loop and loop.end_image is None and loop.verb == "text"
    # Old job rows (before these fields) still load, as neither.
    old = {k: v for k, v in loop.to_dict().items() if k not in ("loop", "end_image")}
    assert GenerationParams.from_dict(old).loop is False and GenerationParams.from_dict(old).end_image is None


def test_auto_carries_them_in_the_bare_request_and_the_worker_plans_them() -> None:
    from generator.worker import params_for

    raw = build_params(queue_target(settings("auto")), "waves", end_image=prepare(png_bytes(160, 90)))
    assert raw["end_image"] == END_IMAGE_REF and "num_frames" not in raw
    assert params_for(PRESETS["tiny"], raw).end_image == END_IMAGE_REF
    raw = build_params(queue_target(settings("auto")), "waves", loop=True)
    assert params_for(PRESETS["tiny"], raw).loop is True


def test_a_model_that_cannot_is_refused_with_the_reason_before_any_download() -> None:
    wan = settings("wan2.1-1.3b")
    with pytest.raises(InvalidParameters) as err:
        check_end(wan, end_image=True, loop=None)
    assert str(err.value) == (
        "The model `wan2.1-1.3b` cannot end a video on a given picture; it offers: text."
    )
    with pytest.raises(InvalidParameters, match="`wan2.1-1.3b` cannot make looping videos"):
        check_end(wan, end_image=False, loop=True)
    check_end(wan, end_image=False, loop=False)  # asking for neither is fine anywhere
    with pytest.raises(InvalidParameters, match="cannot also end on another picture"):
        check_end(settings("tiny"), end_image=True, loop=True)
    check_end(settings("tiny"), end_image=True, loop=None)
    with pytest.raises(InvalidParameters, match="cannot make looping videos"):
        build_params(queue_target(wan), "waves", loop=True)


def test_rerun_and_remix_keep_them_an_extension_drops_them() -> None:
    target = queue_target(settings("tiny"))
    params = build_params(
        target, "a fox", image=prepare(png_bytes(64, 32)), end_image=prepare(png_bytes(64, 32))
    )
    assert rerun_params(params)["end_image"] == END_IMAGE_REF
    assert remix_params(params, "a wolf", "")["end_image"] == END_IMAGE_REF
    looped = build_params(target, "a fox", loop=True)
    assert rerun_params(looped)["loop"] is True and remix_params(looped, "a wolf", "")["loop"] is True
    for source in (params, looped):
        extension = extend_params(target, source, "more")
        assert extension["verb"] == "extend" and not extension["loop"] and extension["end_image"] is None
    bare = build_params(queue_target(settings("auto")), "a fox", loop=True)
    assert extend_params(queue_target(settings("auto")), bare, "more")["loop"] is False


def test_a_loop_without_a_picture_costs_its_first_pass_too() -> None:
    preset = PRESETS["ltx-video-0.9.8-distilled"]
    target = queue_target(settings("ltx-video-0.9.8-distilled"))
    plain = GenerationParams.from_dict(build_params(target, "a fox", duration=1.0))
    looped = GenerationParams.from_dict(build_params(target, "a fox", duration=1.0, loop=True))
    # 25 frames, plus the 9-frame first pass at the same size and steps.
    assert cost_weight(looped, preset) == pytest.approx(cost_weight(plain, preset) * (25 + 9) / 25)
    from_picture = GenerationParams.from_dict(
        build_params(target, "a fox", duration=1.0, loop=True, image=prepare(png_bytes(160, 90)))
    )
    assert cost_weight(from_picture, preset) == pytest.approx(cost_weight(plain, preset))
    weighted = settings("ltx-video-0.9.8-distilled", VIDEOBOT_COST_MODE="weighted")
    long_plain = build_params(target, "a fox", duration=10)
    long_loop = build_params(target, "a fox", duration=10, loop=True)
    assert job_cost(weighted, target, long_loop) >= job_cost(weighted, target, long_plain)
    # One credit a video in the default mode, loop or not.
    assert (
        job_cost(
            settings("tiny"),
            queue_target(settings("tiny")),
            build_params(queue_target(settings("tiny")), "x", loop=True),
        )
        == 1
    )
