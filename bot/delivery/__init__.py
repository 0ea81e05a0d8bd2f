"""Delivery: status/progress edits, posting finished videos, telling requesters about failures.

``service`` runs the loop and owns its tasks; ``feed`` reads job changes; ``status`` posts each job's
public status message after the member was answered; ``editor`` throttles status edits; ``budget``
shares one channel's message budget by priority; ``posting`` posts a result exactly once; ``notify``
tells requesters how a job ended.

One background loop (``DeliveryService``) reads the job feed (``JobQueue.changes_since`` with a
cursor on the database clock). It wakes when this bot submits or cancels a job (``wake()``),
on PostgreSQL when a worker's transition commits (``LISTEN``/``NOTIFY videobot_jobs``, whose payload
names the jobs, read by id whatever the cursor says), and every ``VIDEOBOT_POLL_SECONDS``. Every minute (and at
start-up) it also sweeps for anything still owed: jobs ``succeeded`` but not posted, failed or
cancelled jobs whose requester was not told yet, and jobs that wait for a delivery retry.

Slow Discord calls never hold up the loop: results are posted by a small bounded set of tasks
(one per job at most), status messages by ``StatusPoster`` (one task per channel), and edits go
through ``StatusEditor`` (one task per channel), which edits a message at most every 3 s, never once
it is about an hour old, and at most ten times a second overall. Every message create and edit in a
channel takes a slot of that channel's budget (``ChannelBudget``: ~5 per 5 s each, as Discord
allows), served by priority: results, final texts and failure notices first, then the running
jobs' progress, then status posts and queue positions, which keep a slot free for the others. When
Discord answers 429 anyway, discord.py waits in that task only.

Exactly once across restarts
----------------------------
A video must be posted once, even if the bot dies at any point. The steps for a ``succeeded`` job:

1. If a post of this job may already exist, look for it: the bot's own message, among the newest
   100 in the channel, with the attachment ``videobot-<job id>.mp4`` (the file name never contains
   user text; a status message mentions the job too, so content alone is not a reliable marker).
   "May exist" means: the job finished before this process started (an earlier process may have
   posted it and died before step 3), or an earlier attempt in this process ended without a
   definite answer (timeout, 5xx, connection reset).
2. Otherwise post it: as the interaction follow-up while the token is valid (no channel
   permission needed), else as a channel message with ``nonce="job-<id>"`` and
   ``enforce_nonce`` so Discord itself drops a duplicate sent within a few minutes (discord.py
   resends after a 5xx: Discord answers with the message it made). A follow-up has no nonce, so
   after a 5xx it is not resent blindly (``SendOnce``): the bot looks as in step 1 between tries.
3. ``mark_delivered(job, message id)`` — only ``succeeded`` jobs can move, so a second marker loses.

A crash between 2 and 3 leaves the job ``succeeded`` with a message in the channel; the next
process finds it in step 1 and only marks it. If marking fails (database down) the message id
is kept in memory and marking is retried without posting again. The window that remains: a
channel so busy that the post scrolled out of its newest 100 messages while the bot was down
(then, in a channel message, the nonce still covers the first minutes). If the bot cannot read
the channel history (no Read Message History), step 1 is skipped with a warning.

A 403/404/413 (missing permission, channel gone, file too large even after the worker fitted it)
cannot get better by retrying: the job becomes ``undeliverable`` with a log line and the status
message says so. 5xx and network errors (after discord.py's own retries) are retried at later
wake-ups with exponential backoff, at most ``MAX_ATTEMPTS`` times.
"""

from __future__ import annotations

from bot.delivery.editor import StatusEditor, message_age_seconds
from bot.delivery.posting import Undeliverable
from bot.delivery.service import DeliveryService

__all__ = ["DeliveryService", "StatusEditor", "Undeliverable", "message_age_seconds"]
