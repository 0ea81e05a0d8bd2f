"""Every change of a job's status: submit and charge (``submit``), claim, heartbeat and release
(``claim``), complete and fail (``complete``), cancel (``cancel``), the bot's delivery marks
(``delivered``) and the upkeep (``maintenance``). Each method is one transaction whose conditional
``UPDATE … WHERE status = …`` row count is checked (the SQL: ``statements``); a worker's writes are
fenced by its lease (owner + attempt, ``changes``).
"""

from __future__ import annotations

from videobot.jobs.claim import MAX_PREVIEW_BYTES
from videobot.jobs.complete import Completing
from videobot.jobs.delivered import Delivering
from videobot.jobs.maintenance import Upkeep
from videobot.jobs.records import CANCEL_MESSAGE
from videobot.jobs.review import Reviewing
from videobot.jobs.statements import LEASE_CLEARED, NOTIFY_CHANNEL
from videobot.jobs.submit import Submitting

__all__ = ["CANCEL_MESSAGE", "LEASE_CLEARED", "MAX_PREVIEW_BYTES", "NOTIFY_CHANNEL", "Transitions"]


class Transitions(Submitting, Completing, Delivering, Reviewing, Upkeep):
    """The status-changing half of ``JobQueue`` (on top of the reads: a submit answers with a position)."""
