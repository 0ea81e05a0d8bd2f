"""The result buttons and forms as Discord receives them, and the lineage text (no Discord needed)."""

from __future__ import annotations

from types import SimpleNamespace

from bot.ui import buttons as _buttons
from bot.ui import forms as _modals
from bot.ui import texts as _format


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
        params={"prompt": "a fox", "seed": 3},
        generation_seconds=None,
        error_code=None,
        error_message=None,
    )
    base.update(kw)
    return SimpleNamespace(**base)


async def test_extend_is_shown_only_where_the_model_extends() -> None:
    with_extend = _buttons.result_view("en", job(), frozenset({"text", "extend"}))  # type: ignore[arg-type]
    ids = [c["custom_id"] for row in with_extend.to_components() for c in row["components"]]
    assert ids == ["videobot:rerun:42", "videobot:remix:42", "videobot:extend:42", "videobot:delete:42"]
    text_only = _buttons.result_view("en", job(), frozenset({"text"}))  # type: ignore[arg-type]
    ids = [c["custom_id"] for row in text_only.to_components() for c in row["components"]]
    assert ids == ["videobot:rerun:42", "videobot:remix:42", "videobot:delete:42"]
    # Nothing is kept in memory per message: the registered dynamic items answer the clicks.
    assert with_extend.is_finished()
    # Each class answers its own prefix only (the previews' Cancel button has its own).
    for cls, action in zip(_buttons.DYNAMIC_ITEMS, ("rerun", "remix", "extend", "hd", "delete"), strict=True):
        template = cls.__discord_ui_compiled_template__
        assert template.fullmatch(f"videobot:{action}:42") and not template.fullmatch("videobot:cancel:42")


async def test_hd_is_shown_where_the_model_has_an_upsampler_and_the_video_can_be_made_larger() -> None:
    def ids(j: SimpleNamespace, verbs: set[str]) -> list[str]:
        view = _buttons.result_view("en", j, frozenset(verbs))  # type: ignore[arg-type]
        return [c["custom_id"] for row in view.to_components() for c in row["components"]]

    assert ids(job(), {"text", "hd"}) == [
        "videobot:rerun:42",
        "videobot:remix:42",
        "videobot:hd:42",
        "videobot:delete:42",
    ]
    assert "videobot:hd:42" not in ids(job(), {"text"})  # no upsampler
    # Not on a video already in HD (nor on its reruns and remixes), nor on an extended clip.
    assert "videobot:hd:42" not in ids(job(kind="hd", parent_job_id=41), {"text", "hd"})
    assert "videobot:hd:42" not in ids(job(kind="rerun", params={"prompt": "a", "hd": True}), {"text", "hd"})
    assert "videobot:hd:42" not in ids(
        job(kind="extend", params={"prompt": "a", "verb": "extend"}), {"text", "hd"}
    )
    hd = job(id=46, kind="hd", parent_job_id=42, reply_to_message_id=99)
    assert _format.lineage_note("en", hd) == "HD of job #42"  # type: ignore[arg-type]
    content = _format.result_content("en", hd, None)  # type: ignore[arg-type]
    assert content.startswith("<@7> here is your HD version")
    assert "HD of job #42 · https://discord.com/channels/1/2/99" in content
    assert "asked for an HD version of job #42" in _format.status_header("en", hd)  # type: ignore[arg-type]
    note = _format.queued_note("en", hd, 1, 5, first_of=3)  # type: ignore[arg-type]
    assert "(HD of job #42)" in note and "the first of the 3 videos, in HD" in note


async def test_forms_carry_the_job_id_and_prefill_the_text() -> None:
    form = _modals.remix_form("en", 42, "a fox", "blur")
    payload = form.to_dict()
    assert payload["custom_id"] == "videobot:remix-form:42" and len(payload["title"]) <= 45
    inputs = {c["custom_id"]: c for row in payload["components"] for c in row["components"]}
    assert inputs["prompt"]["value"] == "a fox" and inputs["negative_prompt"]["value"] == "blur"
    assert inputs["negative_prompt"]["required"] is False
    extend = _modals.extend_form("en", 42, "a fox").to_dict()
    assert _modals.FORM_ID.fullmatch(extend["custom_id"])["kind"] == "extend"  # type: ignore[index]
    # A submission, in action rows or in labels.
    data = {
        "custom_id": "videobot:remix-form:42",
        "components": [
            {"type": 1, "components": [{"type": 4, "custom_id": "prompt", "value": "a wolf"}]},
            {"type": 18, "component": {"type": 4, "custom_id": "negative_prompt", "value": ""}},
        ],
    }
    assert _modals.submitted_values(data) == {"prompt": "a wolf", "negative_prompt": ""}


def test_lineage_text() -> None:
    assert _format.lineage_note("en", job()) == ""  # type: ignore[arg-type]
    remix = job(id=43, kind="remix", parent_job_id=42, reply_to_message_id=99)
    assert _format.lineage_note("en", remix) == "Remix of job #42"  # type: ignore[arg-type]
    ext = job(id=45, kind="extend", parent_job_id=44, reply_to_message_id=99)
    assert _format.lineage_note("en", ext, extension=2, origin_id=42) == "Extension 2 of job #42"  # type: ignore[arg-type]
    content = _format.result_content("en", ext, None, extension=2, origin_id=42)  # type: ignore[arg-type]
    assert content.startswith("<@7> here is your extended clip")
    assert "Extension 2 of job #42 · https://discord.com/channels/1/2/99" in content
    assert "asked for an extension of job #44" in _format.status_header("en", ext)  # type: ignore[arg-type]
