"""Safety levels: what a result's (or an input picture's) safety score means for posting it.

The worker scores every video it makes (and every picture a job starts from) with an image safety
classifier (``generator.safety``) and stores the score with the result: the highest probability of
"unsafe" over the sampled frames, from 0 (clearly safe) to 1 (clearly unsafe). A level is a threshold
on that score, written here once for the worker (input pictures) and the bot (results, per server and
channel). No torch here: the bot imports this module.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from videobot.i18n import N_


class SafetyLevel(enum.StrEnum):
    #: Flags what the classifier gives even a modest chance of being unsafe (the default).
    STRICT = "strict"
    #: Flags only what the classifier is fairly sure about.
    STANDARD = "standard"
    #: Flags nothing (the score is still stored).
    OFF = "off"


#: The score above which a level flags a picture or video; None: never. The classifier's own decision
#: point is 0.5 (its two classes' softmax); strict looks below it to miss less, standard above it to
#: flag less. A judgement, not a measurement: no labelled set was available to tune them on.
THRESHOLDS: dict[SafetyLevel, float | None] = {
    SafetyLevel.STRICT: 0.3,
    SafetyLevel.STANDARD: 0.7,
    SafetyLevel.OFF: None,
}

#: A server's level until it chooses another.
DEFAULT_LEVEL = SafetyLevel.STRICT

#: A picture a job starts from (``/video image:``, Animate) is refused above this level's threshold,
#: whatever the server's level: the worker decides before rendering, without the server's settings.
INPUT_LEVEL = SafetyLevel.STRICT

#: What the requester reads when the worker refuses a job's picture (stored in English, shown in their
#: language by the bot through ``videobot.jobs.job_error``). It says the credit came back, so the bot
#: adds nothing.
UNSAFE_INPUT = N_(
    "This picture did not pass the safety check, so no video was made from it. "
    "Your credit was refunded; please try another picture."
)


def threshold(level: SafetyLevel | str) -> float | None:
    """The score above which ``level`` flags; None when it flags nothing."""
    return THRESHOLDS[SafetyLevel(level)]


def flagged(score: float | None, level: SafetyLevel | str = DEFAULT_LEVEL) -> bool:
    """Whether a stored score is above ``level``'s threshold. An unchecked result (``None``: the check
    was off on the worker that made it) is never flagged."""
    limit = threshold(level)
    return score is not None and limit is not None and score > limit


def job_score(scores: Iterable[float | None]) -> float | None:
    """A job's score: the highest of its videos' (``JobResult.safety_score`` of each variation); None
    when none was checked."""
    checked = [s for s in scores if s is not None]
    return max(checked) if checked else None


def holds(
    score: float | None,
    level: SafetyLevel | str | None,
    *,
    channel_nsfw: bool,
    everywhere: bool = False,
) -> bool:
    """Whether a result is held for review instead of posted: its score is flagged at the server's
    ``level`` (None: ``DEFAULT_LEVEL``), and the channel is not age-restricted — unless the server
    chose to check there too (``everywhere``)."""
    if channel_nsfw and not everywhere:
        return False
    return flagged(score, level or DEFAULT_LEVEL)
