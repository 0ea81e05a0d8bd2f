"""The status message's time left (from the model's measured speed, then the job's own pace) and a queued
job's estimated start."""

from __future__ import annotations

from bot.ui import texts as _format
from videobot.models import Job


def job(**kw) -> Job:  # type: ignore[no-untyped-def]
    base = dict(id=7, user_id=1, kind="command", params={"prompt": "a fox"}, cancel_requested=False)
    base.update(kw)
    return Job(**base)


def test_a_job_that_is_starting_shows_the_time_from_the_models_speed() -> None:
    j = job(status="running", progress_step=0, progress_total=30, started_at=100.0)
    assert "⚙️ starting… · about 1 min left" in _format.status_text("en", j, None, per_step=2.0)
    assert _format.status_text("en", j, None).endswith("⚙️ starting…")  # nothing measured yet: no guess


def test_the_first_steps_use_the_models_speed_then_the_jobs_own_pace() -> None:
    # Step 1 took 20 s (text encoding included): the model's 2 s/step says more than that.
    first = job(
        status="running", progress_step=1, progress_total=30, started_at=100.0, progress_updated_at=120.0
    )
    assert "about 58 sec left" in _format.status_text("en", first, None, per_step=2.0)
    later = job(
        status="running", progress_step=10, progress_total=30, started_at=100.0, progress_updated_at=130.0
    )
    assert "about 1 min left" in _format.status_text("en", later, None, per_step=2.0)  # 3 s/step of its own


def test_a_queued_job_shows_its_estimated_start() -> None:
    j = job(status="queued")
    assert _format.status_text("en", j, 3, starts_in=150.0).endswith(
        "#3 in the queue · starts in about 2 min"
    )
    assert _format.status_text("en", j, 1, starts_in=0.0).endswith("#1 in the queue · starts now")
    assert _format.status_text("en", j, 2).endswith("#2 in the queue")


def test_the_preview_file_name_has_no_user_text() -> None:
    assert _format.preview_filename(7, "image/webp") == "preview-7.webp"
