"""Texts stored in English (a worker's failure, a delivery problem, a partial result) are shown in the
reader's language: ``i18n.recognize`` finds the catalog message a stored text was rendered from.

Also: the labels Discord limits (form titles and input labels 45, placeholders 100, buttons 80) fit in
every language.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bot.ui import texts as _format
from videobot import i18n
from videobot.errors import InvalidParameters
from videobot.i18n import Msg, msg, recognize
from videobot.jobs import job_error
from videobot.jobs.complete import _partial_message
from videobot.presets import PRESETS, plan

LANGS = [lang for lang in i18n.LANGUAGES if lang != i18n.SOURCE]


def failed_job(message: str, code: str = "invalid_parameters", **kw: Any) -> Any:
    base = dict(
        id=12,
        user_id=5,
        guild_id=1,
        channel_id=2,
        kind="command",
        parent_job_id=None,
        params={"prompt": "a *fox*", "seed": 1},
        status="failed",
        error_code=code,
        error_message=message,
        finished_at=None,
        queued_at=None,
        attempts=1,
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_a_workers_refusal_stored_in_english_is_shown_in_the_servers_language() -> None:
    with pytest.raises(InvalidParameters) as refused:
        plan(PRESETS["tiny"], "a fox", duration_s=999.0)
    stored = str(refused.value)  # what the worker writes in jobs.error_message
    assert stored.startswith("999 s is not possible with `tiny`")
    job = failed_job(stored)
    assert _format.failure_notice("en", job) == (
        f"<@5> your video (job #12) could not be made: {stored} Your credit was refunded."
    )
    italian = _format.failure_notice("it", job)
    assert italian.startswith(
        "<@5> non è stato possibile creare il tuo video (lavoro #12): 999 s non è possibile"
    )
    assert italian.endswith("Il credito ti è stato restituito.")
    japanese = _format.status_failed("ja", job)
    assert "`tiny` では 999 秒の動画は作れません。" in japanese and japanese.endswith(
        "クレジットは返却されました。"
    )


def test_a_worker_message_that_mentions_the_refund_is_not_told_twice() -> None:
    from generator.worker import GENERIC_FAILURE

    job = failed_job(GENERIC_FAILURE, code="error")
    for lang in ("en", *LANGS):
        text = _format.status_failed(lang, job)
        assert text.endswith(i18n.t(lang, GENERIC_FAILURE)), (lang, text)


def test_numbers_and_nested_reasons_come_back_as_values() -> None:
    stored = _partial_message(missing=1, wanted=3, credits=2, why="not enough GPU memory")
    assert stored == (
        "2 of 3 variations were made; 1 could not be (not enough GPU memory). 2 credits for them were refunded."
    )
    found = recognize(stored)
    assert i18n.render("en", found) == stored
    assert i18n.render("de", found) == (
        "Erstellte Varianten: 2 von 3; nicht erstellt: 1 (nicht genug GPU-Speicher). "
        "Dafür wurden dir 2 Credits erstattet."
    )
    one = recognize(_partial_message(missing=1, wanted=2, credits=1, why=None))
    assert i18n.render("it", one) == (
        "Varianti create: 1 su 2; non create: 1. Per quelle mancanti ti è stato restituito 1 credito."
    )
    grouped = recognize(
        str(msg("The seed must be a whole number from 0 to {max}.", max=i18n.Number(4294967295)))
    )
    assert isinstance(grouped, Msg) and i18n.render("de", grouped).endswith("0 bis 4.294.967.295 sein.")


def test_a_text_no_catalog_knows_is_shown_as_it_is() -> None:
    for text in ("", "the GPU caught fire", "Something odd: 42."):
        assert recognize(text) == text
    job = failed_job("the GPU caught fire", code="error")
    assert job_error(job) == "the GPU caught fire"
    assert _format.status_failed("fr", job).endswith("the GPU caught fire Votre crédit a été remboursé.")


@pytest.mark.parametrize("lang", ["en", *LANGS])
def test_discords_label_limits_hold_in_every_language(lang: str) -> None:
    for text in (
        _format.REMIX_TITLE,
        _format.EXTEND_TITLE,
        _format.ANIMATE_TITLE,
        _format.PROMPT_LABEL,
        _format.NEGATIVE_LABEL,
        _format.EXTEND_PROMPT_LABEL,
        _format.ANIMATE_LABEL,
    ):
        assert len(i18n.t(lang, text)) <= _format.MAX_TITLE, (lang, text)
    for text in (_format.PROMPT_PLACEHOLDER, _format.NEGATIVE_PLACEHOLDER, _format.ANIMATE_PLACEHOLDER):
        assert len(i18n.t(lang, text)) <= _format.MAX_PLACEHOLDER, (lang, text)
    for text in (_format.BUTTON_RERUN, _format.BUTTON_REMIX, _format.BUTTON_EXTEND, _format.BUTTON_DELETE):
        assert 0 < len(i18n.t(lang, text)) <= _format.MAX_BUTTON_LABEL, (lang, text)
