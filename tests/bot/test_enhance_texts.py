"""What members read about prompt enhancement: the result's enhanced prompt (collapsed when long), the
note when it failed (in the server's language), the tag in /queue, all within Discord's 2,000 chars."""

from __future__ import annotations

from types import SimpleNamespace

from bot.cogs.jobs import format_queue
from bot.ui import texts
from generator.enhance import ENHANCE_FAILED
from videobot.presets import MAX_PROMPT_CHARS


def job(**kw: object) -> SimpleNamespace:
    base = dict(
        id=42,
        user_id=7,
        guild_id=1,
        channel_id=2,
        kind="command",
        parent_job_id=None,
        reply_to_message_id=None,
        model="tiny",
        params={"prompt": "a fox", "seed": 3, "enhance": True},
        generation_seconds=None,
        error_code=None,
        error_message=None,
        enhanced_prompt=None,
        enhance_note=None,
        status="queued",
        progress_total=0,
        progress_step=0,
    )
    base.update(kw)
    return SimpleNamespace(**base)


RESULT = [SimpleNamespace(duration_s=1.0, variant=0)]


def test_a_short_enhanced_prompt_is_shown_under_the_members_prompt() -> None:
    content = texts.result_content("en", job(enhanced_prompt="A red *fox* leaps."), RESULT)
    lines = content.split("\n")
    assert lines[1] == "> a fox"
    assert lines[2] == "-# ✨ Enhanced prompt: A red \\*fox\\* leaps."  # escaped like every prompt


def test_a_long_one_is_collapsed_in_a_spoiler_and_everything_fits() -> None:
    long = ("word " * 400)[:MAX_PROMPT_CHARS].strip()
    content = texts.result_content(
        "it", job(params={"prompt": "x" * 1000, "seed": 1}, enhanced_prompt=long), RESULT
    )
    assert len(content) <= texts.MAX_CONTENT
    assert "✨ Prompt migliorato (clicca per vederlo): ||word word" in content
    assert content.count("||") == 2 and content.rstrip().split("\n")[-1].startswith("-# lavoro #42")
    # The member's own prompt keeps at least half the room.
    assert content.count("x") >= (texts.MAX_CONTENT - 300) // 2 - 100


def test_a_failed_enhancement_says_so_in_the_servers_language() -> None:
    content = texts.result_content("de", job(enhance_note=ENHANCE_FAILED), RESULT)
    assert "ℹ️ Die Prompt-Verbesserung ist fehlgeschlagen" in content
    assert "Enhanced" not in texts.result_content("en", job(params={"prompt": "a fox", "seed": 3}), RESULT)


def test_queue_tags_jobs_that_ask_for_it() -> None:
    text = format_queue("en", 2, [(job(), 1), (job(id=43, params={"prompt": "a cat", "seed": 1}), 2)])
    assert "job #42 (prompt enhanced): #1 in the queue" in text
    assert "job #43: #2 in the queue" in text
