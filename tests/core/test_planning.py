"""From a member's request to a job's parameters, as the bot plans it (no Discord, no torch)."""

from __future__ import annotations

import pytest

from videobot.errors import InvalidParameters
from videobot.planning import build_params, check_audio, offered_verbs, queue_target
from videobot.settings import Settings


def settings(model: str) -> Settings:
    return Settings(_env_file=None, VIDEOBOT_MODEL=model)  # type: ignore[call-arg]


def test_the_bot_offers_what_the_configured_model_does() -> None:
    assert offered_verbs(settings("tiny")) == {"text", "image", "extend", "keyframes", "loop", "hd"}
    assert offered_verbs(settings("tiny-ltx2")) >= {"text", "image", "audio"}
    assert "extend" not in offered_verbs(settings("wan2.1-1.3b"))
    assert offered_verbs(settings("auto")) >= {"text", "image", "extend"}


def test_sound_is_on_by_default_where_the_model_has_it_and_refused_where_it_has_none() -> None:
    with_sound = settings("tiny-ltx2")
    assert build_params(queue_target(with_sound), "waves on rocks")["audio"] is True
    assert build_params(queue_target(with_sound), "waves on rocks", audio=False)["audio"] is False
    silent = settings("tiny")
    assert build_params(queue_target(silent), "waves on rocks")["audio"] is False
    check_audio(silent, None)
    check_audio(silent, False)
    with pytest.raises(InvalidParameters, match="without sound"):
        check_audio(silent, True)


def test_a_picture_makes_an_image_job_in_the_offered_ratio_nearest_to_it() -> None:
    from videobot.images import prepare
    from videobot.planning import IMAGE_REF, NATURAL_MOTION_PROMPT, check_image
    from videobot.presets import PRESETS, GenerationParams

    from .test_images import png_bytes

    tiny = settings("tiny")
    check_image(tiny)
    portrait = prepare(png_bytes(90, 160))
    params = build_params(queue_target(tiny), "it blinks", image=portrait)
    assert params["verb"] == "image" and params["image"] == IMAGE_REF and params["prompt"] == "it blinks"
    assert (params["width"], params["height"]) == PRESETS["tiny"].sizes["9:16"]
    # The member's ratio wins over the picture's; no motion described means natural motion.
    square = build_params(queue_target(tiny), "", aspect_ratio="1:1", image=prepare(png_bytes(160, 90)))
    assert (square["width"], square["height"]) == PRESETS["tiny"].sizes["1:1"]
    assert square["prompt"] == NATURAL_MOTION_PROMPT
    assert GenerationParams.from_dict(square).verb == "image"
    # Without a picture nothing changes: text, and an empty prompt is still refused.
    assert build_params(queue_target(tiny), "a fox")["verb"] == "text"
    with pytest.raises(InvalidParameters, match="empty"):
        build_params(queue_target(tiny), "  ")


def test_auto_carries_the_bare_image_request_and_the_worker_plans_it() -> None:
    from generator.worker import params_for
    from videobot.images import prepare
    from videobot.planning import IMAGE_REF
    from videobot.presets import PRESETS

    from .test_images import png_bytes

    raw = build_params(queue_target(settings("auto")), "waves", image=prepare(png_bytes(160, 90)))
    assert raw["verb"] == "image" and raw["image"] == IMAGE_REF and raw["aspect_ratio"] == "16:9"
    planned = params_for(PRESETS["tiny"], raw)
    assert planned.verb == "image" and planned.image == IMAGE_REF


def test_a_model_without_the_image_verb_refuses_pictures_politely() -> None:
    from videobot.images import prepare
    from videobot.planning import check_image

    from .test_images import png_bytes

    text_only = settings("wan2.1-1.3b")
    with pytest.raises(InvalidParameters, match="cannot start a video from a picture") as info:
        check_image(text_only)
    assert "wan2.1-1.3b" in str(info.value) and "Leave the image out" in str(info.value)
    with pytest.raises(InvalidParameters, match="cannot make videos from an image"):
        build_params(queue_target(text_only), "x", image=prepare(png_bytes(32, 32)))


def test_variations_are_in_the_params_and_cost_n_times_one_video() -> None:
    from videobot.planning import job_cost

    for model in ("tiny", "auto"):  # planned by the bot / a bare request the worker plans
        s = settings(model)
        target = queue_target(s)
        one = build_params(target, "a fox", seed=3)
        three = build_params(target, "a fox", seed=3, num_videos=3)
        assert one["num_videos"] == 1 and three["num_videos"] == 3 and three["seed"] == 3
        assert job_cost(s, target, one) == 1 and job_cost(s, target, three) == 3
        for bad in (0, 5):
            with pytest.raises(InvalidParameters, match="from 1 to 4"):
                build_params(target, "a fox", num_videos=bad)
    weighted = Settings(_env_file=None, VIDEOBOT_MODEL="ltx-video", VIDEOBOT_COST_MODE="weighted")  # type: ignore[call-arg]
    target = queue_target(weighted)
    single = job_cost(weighted, target, build_params(target, "a fox", duration=10))
    assert single > 1
    assert job_cost(weighted, target, build_params(target, "a fox", duration=10, num_videos=4)) == 4 * single


def test_an_hd_job_is_its_source_at_twice_the_size_and_costs_like_one_video_unless_set() -> None:
    from videobot.planning import hd_params, job_cost

    s = settings("tiny")
    target = queue_target(s)
    source = build_params(target, "a fox", seed=3, num_videos=3)
    hd = hd_params(source)
    assert (hd["width"], hd["height"]) == (2 * source["width"], 2 * source["height"])
    assert hd["seed"] == 3 and hd["prompt"] == "a fox" and hd["hd"] is True and hd["num_videos"] == 1
    assert job_cost(s, target, hd) == 1  # like one video of its source
    priced = Settings(_env_file=None, VIDEOBOT_MODEL="tiny", VIDEOBOT_HD_COST="3")  # type: ignore[call-arg]
    assert job_cost(priced, target, hd) == 3
    # Weighted: what the source's single video cost, not four times the pixels.
    weighted = Settings(_env_file=None, VIDEOBOT_MODEL="ltx-video", VIDEOBOT_COST_MODE="weighted")  # type: ignore[call-arg]
    target = queue_target(weighted)
    one = build_params(target, "a fox", duration=10)
    assert job_cost(weighted, target, hd_params(one)) == job_cost(weighted, target, one) > 1
    # An empty setting is "like one video".
    assert Settings(_env_file=None, VIDEOBOT_HD_COST="").hd_cost is None  # type: ignore[call-arg]


def test_hd_of_an_enhanced_video_keeps_its_words_and_a_remix_of_that_asks_again() -> None:
    from videobot.planning import extend_params, hd_params, remix_params, rerun_params
    from videobot.presets import GenerationParams

    target = queue_target(settings("tiny"))
    source = build_params(target, "a fox", seed=3) | {"enhance": True, "style": "ink", "loop": False}
    hd = hd_params(source, "A red fox trots through deep snow at dawn.")
    assert hd["enhance"] is True and hd["enhanced_prompt"] == "A red fox trots through deep snow at dawn."
    assert hd["prompt"] == "a fox" and hd["style"] == "ink"  # the member's words are what they see
    assert GenerationParams.from_dict(hd).enhanced_prompt == hd["enhanced_prompt"]
    # Its enhancement fell back to the member's prompt: so does the HD version (no second opinion).
    fell_back = hd_params(source, None)
    assert fell_back["enhance"] is False and fell_back.get("enhanced_prompt") is None
    assert hd_params(build_params(target, "a fox"), "ignored").get("enhanced_prompt") is None
    # New words are enhanced anew; the same words keep theirs.
    remix = remix_params(hd, "a wolf", "")
    assert remix["enhance"] is True and "enhanced_prompt" not in remix
    assert rerun_params(hd)["enhanced_prompt"] == hd["enhanced_prompt"]
    assert extend_params(target, hd, "a wolf").get("enhanced_prompt") is None
