"""Logging: configured once at the entry point; one line per event; secrets never logged."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

# Discord bot tokens (three base64url parts) and interaction/webhook tokens in URLs.
_SECRET_PATTERNS = [
    re.compile(r"[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}"),
    re.compile(r"(/(?:interactions/\d+|webhooks/\d+)/)[A-Za-z0-9_.-]{20,}"),
    re.compile(r"(Bot |Bearer )[A-Za-z0-9_.-]{10,}"),
    # Interaction tokens inside payload dicts/JSON that libraries log at DEBUG.
    re.compile(r"""(['"]token['"]:\s*['"])[A-Za-z0-9_.-]{20,}"""),
]


class RedactingFilter(logging.Filter):
    """Replaces known secrets, and anything shaped like a Discord token, with ``[redacted]``."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = [s for s in (secrets or []) if s and len(s) >= 8]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        for pat in _SECRET_PATTERNS:
            text = pat.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (+ job_id when the message names a job)."""

    _job = re.compile(r"\bjob #?(\d+)")

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        m = self._job.search(out["msg"])
        if m:
            out["job_id"] = int(m.group(1))
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def setup_logging(
    level: str = "INFO", *, secrets: list[str] | None = None, process: str = "videobot"
) -> None:
    """Configure the root logger once: JSON lines on stderr with secrets redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter that is not ours stays at INFO or above even at DEBUG, except discord's gateway
    # payloads, which are useful but carry interaction tokens: the filter redacts those.
    for noisy in ("asyncio", "aiosqlite", "PIL", "urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
