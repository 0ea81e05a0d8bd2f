"""What members read about a video made with an end frame or as a loop: /queue, the "Queued as…" note and
the result say so, in the reader's language, beside the lineage (a remix of …)."""

from __future__ import annotations

from typing import Any

from bot.cogs.jobs import format_queue
from bot.ui.texts import queued_note, result_content
from videobot.models import Job


def job(job_id: int, prompt: str, *, status: str = "queued", **params: Any) -> Job:
    kind = params.pop("kind", "command")
    parent = params.pop("parent", None)
    return Job(
        id=job_id,
        user_id=5,
        guild_id=1,
        channel_id=2,
        status=status,
        kind=kind,
        parent_job_id=parent,
        model="tiny",
        params={"prompt": prompt, "seed": 1, **params},
    )


def test_queue_shows_end_frame_and_loop_beside_the_lineage() -> None:
    mine = [
        (job(7, "waves", loop=True), 1),
        (job(8, "day to night", image="db:image", end_image="db:end_image", kind="remix", parent=3), 2),
        (job(9, "a fox"), 3),
    ]
    lines = format_queue("en-US", 3, mine).splitlines()
    assert lines[1] == "• job #7 (loop): #1 in the queue — waves"
    assert lines[2] == "• job #8 (Remix of job #3 · end frame): #2 in the queue — day to night"
    assert lines[3] == "• job #9: #3 in the queue — a fox"
    italian = format_queue("it", 3, mine)
    assert "(Remix del lavoro #3 · fotogramma finale)" in italian and "(loop)" in italian


def test_the_queued_note_and_the_result_say_what_it_was_made_with() -> None:
    looped = job(7, "waves", loop=True)
    assert queued_note("en-US", looped, 1, 4).startswith("Queued as job #7 (loop) (#1 in the queue).")
    assert "(bucle)" in queued_note("es-ES", looped, 1, 4)
    ended = job(8, "day to night", status="succeeded", end_image="db:end_image")
    content = result_content("fr", ended, [])
    assert content.splitlines()[1] == "-# image de fin"
    plain = result_content("en-US", job(9, "a fox", status="succeeded"), [])
    assert "-#" not in plain.splitlines()[1]  # nothing to say: no note line
