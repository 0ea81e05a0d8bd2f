"""Domain errors. Every message is safe to show a Discord user and says what to do.

A message is a ``videobot.i18n`` message (``msg(...)``): the bot renders it in the member's language
with ``err.render(locale)``; ``str(err)`` and ``err.message`` are the English text, for logs. Plain
strings are still accepted (shown as they are, in every language) for code not yet converted.
"""

from __future__ import annotations

from videobot.i18n import Text, msg, render


class VideobotError(Exception):
    """Base class: ``str(err)`` is a polite, user-safe message (English); ``render(locale)`` translates it."""

    #: A short machine-readable code, stable for tests and metrics.
    code = "error"

    def __init__(self, message: Text) -> None:
        english = render("en", message)
        super().__init__(english)
        #: The English text (logs, tests, the worker's stored ``error_message``).
        self.message = english
        #: The message itself, for rendering in another language.
        self.text = message

    def render(self, locale: object) -> str:
        """The message in ``locale``'s language (English when it has no catalog)."""
        return render(locale, self.text)

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class InvalidParameters(VideobotError):
    """The request's options cannot be turned into a valid generation (never retried)."""

    code = "invalid_parameters"


class UnsafeInput(InvalidParameters):
    """A job's input picture scored above the safety threshold: refused before rendering (refunded)."""

    code = "unsafe_input"


class QuotaExceeded(VideobotError):
    code = "quota_exceeded"

    def __init__(self, message: Text, *, retry_at: float | None = None) -> None:
        super().__init__(message)
        #: Unix time (database clock) when the next credit comes back, if known.
        self.retry_at = retry_at


class TooManyQueued(VideobotError):
    code = "too_many_queued"


class PromptRejected(VideobotError):
    code = "prompt_rejected"


class ChannelNotAllowed(VideobotError):
    code = "channel_not_allowed"


class NotModerator(VideobotError):
    code = "not_moderator"


class JobNotFound(VideobotError):
    code = "job_not_found"


class LeaseLost(VideobotError):
    """A worker tried to finish or update a job it no longer owns (fencing)."""

    code = "lease_lost"


class JobCancelled(VideobotError):
    """Raised inside a denoising-step callback to stop a job whose cancel flag is set."""

    code = "cancelled"

    def __init__(self, message: Text | None = None) -> None:
        super().__init__(message if message is not None else msg("The job was cancelled."))


class GenerationOOM(VideobotError):
    """The GPU ran out of memory for this request; the worker keeps serving."""

    code = "out_of_memory"


class ServiceUnavailable(VideobotError):
    """The database (or another dependency) cannot be reached right now."""

    code = "unavailable"


class TransientJobError(Exception):
    """A job failed for a reason that need not recur (a GPU rank of its group died): the worker queues
    it again while attempts remain, instead of failing it for good."""
