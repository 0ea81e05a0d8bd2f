"""From a member's request to a job's parameters, as the bot plans it (no Discord, no torch)."""

from __future__ import annotations

import pytest

from videobot.errors import InvalidParameters
from videobot.planning import build_params, check_audio, offered_verbs, queue_target
from videobot.settings import Settings


def settings(model: str) -> Settings:
    return Settings(_env_file=None, VIDEOBOT_MODEL=model)  # type: ignore[call-arg]


def test_the_bot_offers_what_the_configured_model_does() -> None:
    assert offered_verbs(settings("tiny")) == {"text", "image", "extend"}
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
