"""What members read when every new option is on at once (issue 22): a rerun of a video with an end
picture, a style, an enhanced prompt and four variations, one of them not made. In every language the
result stays within Discord's 2,000 characters with its footer whole and its spoiler closed, names
each option once, and ``/queue`` lists every tag once with one separator."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bot.cogs.jobs import format_queue
from bot.ui import texts
from videobot.i18n import DISCORD_LOCALES, t
from videobot.presets import MAX_PROMPT_CHARS
from videobot.styles import MAX_NAME_CHARS

STYLE = "s" * MAX_NAME_CHARS
LANGUAGES = sorted(DISCORD_LOCALES)


def everything(**kw: object) -> SimpleNamespace:
    base = dict(
        id=123456,
        user_id=987654321098765432,
        guild_id=111111111111111111,
        channel_id=222222222222222222,
        kind="rerun",
        parent_job_id=123455,
        reply_to_message_id=333333333333333333,
        model="ltx-video-0.9.8-distilled",
        params={
            "prompt": ("a *very* long prompt " * 60)[:MAX_PROMPT_CHARS],
            "seed": 4294967290,
            "num_videos": 4,
            "enhance": True,
            "end_image": "job_inputs:end_image",
            "style": STYLE,
            "style_trigger": "inkwash",
        },
        generation_seconds=3725.5,
        error_code="partial",
        error_message="3 of 4 videos were made; the credit for the other one was refunded.",
        enhanced_prompt=("An enhanced _prompt_ with many words " * 40)[:MAX_PROMPT_CHARS],
        enhance_note=None,
        status="queued",
        progress_total=0,
        progress_step=0,
    )
    base.update(kw)
    return SimpleNamespace(**base)


RESULTS = [SimpleNamespace(duration_s=10.0, variant=v) for v in (0, 1, 3)]


@pytest.mark.parametrize("kind", ["command", "rerun", "remix", "extend", "animate", "hd"])
@pytest.mark.parametrize("locale", LANGUAGES)
def test_every_kind_of_result_with_every_option_fits(locale: str, kind: str) -> None:
    job = everything(kind=kind)
    content = texts.result_content(locale, job, RESULTS, extension=3 if kind == "extend" else 0)
    assert len(content) <= texts.MAX_CONTENT, len(content)
    footer = content.split("\n")[-1]
    assert footer.endswith(t(locale, "react {emoji} for another take", emoji="🔁")), footer
    assert content.count("||") == 2 and content.count(STYLE) == 1


@pytest.mark.parametrize("locale", LANGUAGES)
def test_a_result_with_every_option_fits_and_says_each_once(locale: str) -> None:
    job = everything()
    content = texts.result_content(locale, job, RESULTS)
    assert len(content) <= texts.MAX_CONTENT, len(content)
    lines = content.split("\n")
    footer = lines[-1]
    # The footer is whole: the seeds, the style and the 🔁 hint at its end.
    assert footer.startswith("-# ") and footer.endswith(
        t(locale, "react {emoji} for another take", emoji="🔁")
    )
    assert f"`{STYLE}`" in footer and content.count(STYLE) == 1
    assert "4294967290, 4294967291, 4294967293" in footer  # the variations that were made
    # The lineage line names the source and the end frame once; the enhanced prompt is collapsed.
    lineage = t(locale, "Rerun of job #{job}", job=123455)
    assert content.count(lineage) == 1 and content.count(t(locale, "end frame")) == 1
    assert content.count("||") == 2 and t(locale, texts.ENHANCED_LONG_LABEL) in content
    assert "inkwash" not in content  # trigger words are for the model
    # The member's words keep at least half the room.
    mine = next(line for line in lines if line.startswith("> "))
    assert len(mine) >= 600, len(mine)


@pytest.mark.parametrize("locale", LANGUAGES)
def test_a_loop_instead_of_an_end_frame_and_a_fallback_note_fit_too(locale: str) -> None:
    params = {**everything().params, "end_image": None, "loop": True}
    job = everything(
        params=params,
        enhanced_prompt=None,
        enhance_note="Prompt enhancement failed, so your prompt was used as written.",
    )
    content = texts.result_content(locale, job, RESULTS)
    assert len(content) <= texts.MAX_CONTENT
    assert content.count(t(locale, "loop")) >= 1 and t(locale, "end frame") not in content
    assert content.split("\n")[-1].startswith("-# ")


@pytest.mark.parametrize("locale", LANGUAGES)
def test_queue_lists_every_tag_once_with_one_separator(locale: str) -> None:
    params = {**everything().params, "end_image": None, "loop": True}
    text = format_queue(locale, 3, [(everything(params=params), 1)])
    line = next(x for x in text.split("\n") if "123456" in x)
    tags = [
        t(locale, "Rerun of job #{job}", job=123455),
        t(locale, "loop"),
        t(locale, "style {style}", style=f"`{STYLE}`"),
        t(locale, "prompt enhanced"),
    ]
    assert " (" + " · ".join(tags) + ")" in line, line
    assert ";" not in line.split(" (", 1)[1].split(")")[0]
    assert len(text) <= texts.MAX_CONTENT
