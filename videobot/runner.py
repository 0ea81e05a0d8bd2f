"""``videobot run``: pre-flight checks, migrations, then the bot plus a supervised local worker.

The worker is a child process (``videobot worker``) restarted with exponential backoff when it
dies; a worker that cannot load its model (exit code 3: a configuration problem, not a crash)
stops everything with its message instead of restarting forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from videobot.settings import Settings

log = logging.getLogger(__name__)

MODEL_LOAD_FAILED = 3  # exit code of `videobot worker` when its model cannot be loaded
TOKEN_HELP = (
    "DISCORD_TOKEN is not set. Create an application at https://discord.com/developers/applications, "
    "open Bot -> Reset Token, and put the token in .env as DISCORD_TOKEN=... (see .env.example). "
    "No privileged intents are needed. Invite the bot with the scopes `bot applications.commands` "
    "(see README)."
)


class PreflightError(Exception):
    """A configuration problem found before start-up; the message says what to do."""


def check_data_dir(settings: Settings) -> None:
    path = Path(settings.data_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{uuid.uuid4().hex[:6]}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise PreflightError(
            f"VIDEOBOT_DATA_DIR={path} is not writable ({exc.strerror or type(exc).__name__}). "
            "Choose a folder this user owns, e.g. VIDEOBOT_DATA_DIR=./data."
        ) from None


def check_token(settings: Settings) -> None:
    if settings.discord_token is None or not settings.discord_token.get_secret_value().strip():
        raise PreflightError(TOKEN_HELP)


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def _check_database(settings: Settings, *, need_schema: bool) -> None:
    from videobot import migrate
    from videobot.db import Database

    db = Database(settings.db_url)
    try:
        try:
            await asyncio.wait_for(db.ping(), timeout=15)
        except Exception as exc:
            raise PreflightError(
                f"Cannot reach the database at {safe_url(settings.db_url)} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'no answer'}). Check DATABASE_URL and that the "
                "server is running and accepts connections; leave DATABASE_URL empty to use the built-in SQLite file."
            ) from None
        if need_schema:
            current = await migrate.current_revision(settings.db_url)
            if current != migrate.head_revision():
                raise PreflightError(
                    f"The database at {safe_url(settings.db_url)} is at schema revision {current or '(empty)'}, "
                    f"not {migrate.head_revision()}. Run `videobot db upgrade` (or `videobot run`, which does it)."
                )
    finally:
        await db.dispose()


def check_database(settings: Settings, *, need_schema: bool = True) -> None:
    asyncio.run(_check_database(settings, need_schema=need_schema))


class WorkerSupervisor:
    """Runs `videobot worker` as a child process and restarts it with backoff when it dies."""

    def __init__(self, settings: Settings, *, max_backoff: float = 60.0) -> None:
        self.settings = settings
        self.max_backoff = max_backoff
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.fatal: str | None = None
        self.restarts = 0
        self._thread = threading.Thread(target=self._loop, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "videobot.cli", "worker"], env=os.environ.copy())

    def _loop(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            started = time.monotonic()
            self.proc = self._spawn()
            log.info("worker process %s started", self.proc.pid)
            code = self.proc.wait()
            if self.stopping.is_set():
                return
            if code == MODEL_LOAD_FAILED:
                self.fatal = (
                    "the worker cannot load its model or safety classifier (see the message above); stopping"
                )
                log.error(self.fatal)
                os.kill(os.getpid(), signal.SIGTERM)  # stop the bot too: nobody would serve its jobs
                return
            if time.monotonic() - started > 60:
                backoff = 1.0
            self.restarts += 1
            log.error("worker process exited with code %s; restarting in %.0f s", code, backoff)
            if self.stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self.max_backoff)

    def stop(self, grace: float) -> None:
        """SIGTERM the worker (it hands back or finishes its job) and wait for it."""
        self.stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace + 15)
            except subprocess.TimeoutExpired:
                log.error(
                    "worker did not stop in time; killing it (its job returns to the queue when the lease expires)"
                )
                proc.kill()
                proc.wait()
        self._thread.join(timeout=5)


def run_all(settings: Settings) -> int:
    """The main job: migrate, then the bot in this process and a supervised worker beside it."""
    from videobot import migrate

    try:
        check_data_dir(settings)
        check_token(settings)
        check_database(settings, need_schema=False)
    except PreflightError as exc:
        print(f"videobot: {exc}", file=sys.stderr)
        return 2
    migrate.upgrade(settings.db_url)
    log.info("database %s is at revision %s", safe_url(settings.db_url), migrate.head_revision())
    supervisor = WorkerSupervisor(settings)
    supervisor.start()
    try:
        from bot.app import main as bot_main

        rc = bot_main(settings)
    finally:
        supervisor.stop(settings.shutdown_grace_seconds)
    if supervisor.fatal:
        return MODEL_LOAD_FAILED
    return rc
