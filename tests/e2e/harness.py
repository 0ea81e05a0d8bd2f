"""End-to-end harness: the real bot and worker processes against the fake Discord on loopback.

    async with BotHarness(tmp_path, worker=True) as h:
        interaction = await h.slash(h.member_id, "video", prompt="a fox")
        ...

It creates a data dir and a migrated database (SQLite, or a fresh PostgreSQL database with
``db="postgresql"`` when ``VIDEOBOT_TEST_POSTGRES_URL`` is set), starts ``FakeDiscord`` with one
guild, one channel and a few members, then ``python -m videobot.cli bot`` (and optionally
``videobot worker`` with the tiny model) with their logs in files. ``restart_bot()``,
``kill_bot()``, ``start_worker()``/``stop_worker()`` drive the processes; on exit everything is
terminated, and ``dump_logs()`` prints the tail of each log (tests/conftest.py calls it for every
harness in ``ACTIVE`` when a test fails: ``register()`` or ``shared_harness()`` put one there).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from tests.fakediscord import FakeDiscord, Interaction
from tests.fakediscord.world import MANAGE_GUILD
from tests.helpers import PG_ENV, pg_exec
from videobot.db import Database
from videobot.jobs import JobQueue, QueueConfig
from videobot.migrate import upgrade
from videobot.models import GuildConfig, Job, LedgerEntry

#: Marker lines the processes log once they can serve (bot: commands synced and gateway ready).
BOT_READY = "videobot ready"
WORKER_READY = "ready: model"
_STRIP_ENV_PREFIXES = ("VIDEOBOT_", "DISCORD_")
_STRIP_ENV = {"DATABASE_URL"}


class ProcessFailed(AssertionError):
    """A process exited (or never became ready) when the test needed it."""


class _Proc:
    """One subprocess with its log file."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self._log_file: Any = None
        self.log_offset = 0
        self.started_at = 0.0
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    async def start(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self._log_file = open(self.log_path, "ab")  # noqa: ASYNC230, SIM115 - tiny local file, closed in _closed()
        self._log_file.write(f"\n===== {self.name} start #{self.starts + 1} =====\n".encode())
        self._log_file.flush()
        self.log_offset = self.log_path.stat().st_size
        self.started_at = time.monotonic()
        self.starts += 1
        self.proc = await asyncio.create_subprocess_exec(
            *args, env=env, cwd=str(cwd), stdout=self._log_file, stderr=asyncio.subprocess.STDOUT
        )

    def log(self, *, since_start: bool = False) -> str:
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        if since_start:
            data = data[self.log_offset :]
        return data.decode("utf-8", "replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    async def wait_log(self, marker: str, timeout: float) -> float:
        """Wait until the current run logged ``marker``; returns seconds since the process started."""
        deadline = time.monotonic() + timeout
        while True:
            if marker in self.log(since_start=True):
                return time.monotonic() - self.started_at
            if not self.running:
                raise ProcessFailed(
                    f"{self.name} exited with {self.proc and self.proc.returncode} before logging "
                    f"{marker!r}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise ProcessFailed(f"{self.name} did not log {marker!r} within {timeout} s:\n{self.tail()}")
            await asyncio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Send ``sig`` and wait; SIGKILL if it does not exit in ``timeout``. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self._closed()
        return proc.returncode

    def _closed(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class BotHarness:
    """The fake Discord, a database, the bot process and (optionally) a worker process."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        worker: bool = False,
        db: str = "sqlite",
        bot_env: dict[str, str] | None = None,
        worker_env: dict[str, str] | None = None,
        common_env: dict[str, str] | None = None,
        extra_members: int = 0,
        fake_options: dict[str, Any] | None = None,
        pg_admin_url: str | None = None,
    ) -> None:
        self.tmp_path = Path(tmp_path)
        self.data_dir = self.tmp_path / "data"
        self.want_worker = worker
        self.db_kind = db
        #: The PostgreSQL server to create the test database on (default: ``VIDEOBOT_TEST_POSTGRES_URL``).
        self.pg_admin_url = pg_admin_url
        self.bot_env = dict(bot_env or {})
        self.worker_env = dict(worker_env or {})
        self.common_env = dict(common_env or {})
        self.extra_members = extra_members
        self.fd = FakeDiscord(**(fake_options or {}))
        self.bot = _Proc("bot", self.tmp_path / "bot.log")
        self.worker = _Proc("worker", self.tmp_path / "worker.log")
        self.db_url = ""
        self.db: Database | None = None
        self.queue: JobQueue | None = None
        self._pg_admin: str | None = None
        self._pg_name: str | None = None
        self.bot_ready_seconds: float | None = None
        # World (set in __aenter__).
        self.guild_id = 0
        self.channel_id = 0
        self.moderator_role_id = 0
        self.mod_id = 0  # Manage Server permission
        self.member_id = 0  # a plain member
        self.other_id = 0  # another plain member
        self.rolemod_id = 0  # has the moderator role (set in guild config by tests that need it)
        self.members: list[int] = []  # extra plain members

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> BotHarness:
        try:
            await self._setup()
        except BaseException:
            await self.close()
            self.dump_logs()
            raise
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.close()
        if exc is not None:
            self.dump_logs()

    async def _setup(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_url = await self._make_database()
        self.db = Database(self.db_url)
        self.queue = JobQueue(self.db, QueueConfig())
        await self.fd.start()
        guild = self.fd.add_guild("Videobot Test Server")
        self.guild_id = guild.id
        self.channel_id = self.fd.add_channel(guild.id, "videos")
        self.moderator_role_id = self.fd.add_role(guild.id, "Video Mods")
        self.mod_id = self.fd.add_member(guild.id, name="mod", permissions=MANAGE_GUILD)
        self.member_id = self.fd.add_member(guild.id, name="alice")
        self.other_id = self.fd.add_member(guild.id, name="bob")
        self.rolemod_id = self.fd.add_member(guild.id, name="carol", roles=[self.moderator_role_id])
        self.members = [self.fd.add_member(guild.id, name=f"user{i}") for i in range(self.extra_members)]
        await self.start_bot()
        if self.want_worker:
            await self.start_worker()

    async def close(self) -> None:
        await self.stop_worker()
        await self.stop_bot()
        await self.fd.close()
        if self.db is not None:
            await self.db.dispose()
        if self._pg_name and self._pg_admin:
            await pg_exec(self._pg_admin, f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)')
            self._pg_name = None

    async def _make_database(self) -> str:
        if self.db_kind == "sqlite":
            url = f"sqlite+aiosqlite:///{self.data_dir / 'videobot.db'}"
        elif self.db_kind == "postgresql":
            admin = self.pg_admin_url or os.environ.get(PG_ENV)
            if not admin:
                import pytest

                pytest.skip(f"PostgreSQL e2e tests need {PG_ENV}")
            name = f"videobot_e2e_{uuid.uuid4().hex[:10]}"
            await pg_exec(admin, f'CREATE DATABASE "{name}"')
            self._pg_admin, self._pg_name = admin, name
            url = make_url(admin).set(database=name).render_as_string(hide_password=False)
        else:
            raise ValueError(f"unknown database kind {self.db_kind!r}")
        await asyncio.to_thread(upgrade, url)
        return url

    # ------------------------------------------------------------------ processes
    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_STRIP_ENV_PREFIXES) and k not in _STRIP_ENV
        }
        env.update(
            {
                **self.fd.env(),
                "DATABASE_URL": self.db_url,
                "VIDEOBOT_DATA_DIR": str(self.data_dir),
                "VIDEOBOT_GUILD_IDS": str(self.guild_id),
                "VIDEOBOT_HEALTH_PORT": "0",
                "VIDEOBOT_LOG_LEVEL": "DEBUG",
                "VIDEOBOT_POLL_SECONDS": "0.2",
                "VIDEOBOT_MODEL": "tiny",
                "PYTHONUNBUFFERED": "1",
                "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                **self.common_env,
                **extra,
            }
        )
        return env

    async def start_bot(self, timeout: float = 30.0, **env: str) -> float:
        """Start the bot and wait until it logged that it is ready; returns its start-up time in seconds."""
        await self.bot.start(
            [sys.executable, "-m", "videobot.cli", "bot"], self._env({**self.bot_env, **env}), self.tmp_path
        )
        self.bot_ready_seconds = await self.bot.wait_log(BOT_READY, timeout)
        await self.fd.wait_until_ready(timeout)
        return self.bot_ready_seconds

    async def stop_bot(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Stop the bot (SIGTERM: graceful); returns its exit code."""
        return await self.bot.stop(sig, timeout)

    async def kill_bot(self) -> int | None:
        return await self.bot.stop(signal.SIGKILL, 5.0)

    async def restart_bot(self, **env: str) -> float:
        await self.stop_bot()
        return await self.start_bot(**env)

    async def start_worker(self, timeout: float = 90.0, **env: str) -> float:
        await self.worker.start(
            [sys.executable, "-m", "videobot.cli", "worker"],
            self._env(
                {"VIDEOBOT_HEARTBEAT_SECONDS": "2", "VIDEOBOT_LEASE_SECONDS": "30", **self.worker_env, **env}
            ),
            self.tmp_path,
        )
        return await self.worker.wait_log(WORKER_READY, timeout)

    async def stop_worker(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        return await self.worker.stop(sig, timeout)

    def dump_logs(self, lines: int = 80) -> None:
        """Print the tail of every process log (shown by pytest for a failing test)."""
        for proc in (self.bot, self.worker):
            if proc.log_path.exists():
                print(f"\n----- {proc.name} log (last {lines} lines): {proc.log_path}", file=sys.stderr)
                print(proc.tail(lines), file=sys.stderr)
        problems = self.fd.problems()
        if problems:
            print(f"\n----- fake discord problems: {problems}", file=sys.stderr)

    # ------------------------------------------------------------------ Discord actions
    async def slash(
        self, user_id: int, name: str, subcommand: str | list[str] | None = None, **options: Any
    ) -> Interaction:
        """A member runs ``/name`` in the test channel."""
        return await self.fd.slash(self.guild_id, self.channel_id, user_id, name, options or None, subcommand)

    async def react(self, user_id: int, message_id: int, emoji: str) -> None:
        await self.fd.add_reaction(user_id, self.channel_id, message_id, emoji)

    def messages(self, *, include_ephemeral: bool = False) -> list[dict[str, Any]]:
        return self.fd.messages(self.channel_id, include_ephemeral=include_ephemeral)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
        """Wait for a condition on the fake's state (re-checked on every change and every 0.5 s)."""
        try:
            return await self.fd.wait_for(predicate, timeout, what=what)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n--- bot log tail:\n{self.bot.tail(40)}") from None

    # ------------------------------------------------------------------ database views
    async def jobs(self, user_id: int | None = None) -> list[Job]:
        assert self.db is not None
        async with self.db.sessionmaker() as s:
            q = select(Job).order_by(Job.id)
            if user_id is not None:
                q = q.where(Job.user_id == user_id)
            return list((await s.execute(q)).scalars())

    async def job(self, job_id: int) -> Job:
        assert self.db is not None
        async with self.db.sessionmaker() as s:
            job = await s.get(Job, job_id)
            assert job is not None, f"no job {job_id}"
            return job

    async def wait_job(self, job_id: int, statuses: str | tuple[str, ...], timeout: float = 60.0) -> Job:
        """Poll the database until the job reaches one of ``statuses``."""
        wanted = (statuses,) if isinstance(statuses, str) else statuses
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job.status in wanted:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"job {job_id} is {job.status}, not {wanted}, after {timeout} s\n"
                    f"--- bot log tail:\n{self.bot.tail(30)}\n--- worker log tail:\n{self.worker.tail(30)}"
                )
            await asyncio.sleep(0.1)

    async def with_status_message(self, job_id: int, timeout: float = 60.0) -> Job:
        """The job once its public status message is recorded: the bot posts it after answering the
        member, in the background, at the channel's pace (~5 messages per 5 s under a burst)."""
        deadline = time.monotonic() + timeout
        while not (job := await self.job(job_id)).status_message_id:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"job {job_id} has no status message after {timeout} s\n"
                    f"--- bot log tail:\n{self.bot.tail(30)}"
                )
            await asyncio.sleep(0.1)
        return job

    async def ledger(self, user_id: int | None = None) -> list[LedgerEntry]:
        assert self.db is not None
        async with self.db.sessionmaker() as s:
            q = select(LedgerEntry).order_by(LedgerEntry.id)
            if user_id is not None:
                q = q.where(LedgerEntry.user_id == user_id)
            return list((await s.execute(q)).scalars())

    async def balance_used(self, user_id: int) -> int:
        """Net credits a member has spent (charges minus refunds) in this guild."""
        assert self.db is not None
        async with self.db.sessionmaker() as s:
            total = (
                await s.execute(
                    select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                        LedgerEntry.guild_id == self.guild_id, LedgerEntry.user_id == user_id
                    )
                )
            ).scalar_one()
        return -int(total)

    async def set_guild_config(self, **values: Any) -> None:
        """Write the guild's configuration row directly (e.g. ``moderator_role_id``, ``default_limit``)."""
        assert self.db is not None
        async with self.db.transaction() as s:
            row = await s.get(GuildConfig, self.guild_id)
            if row is None:
                row = GuildConfig(
                    guild_id=self.guild_id, allowed_channel_ids=[], blocklist=[], updated_at=time.time()
                )
                s.add(row)
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = time.time()


# ------------------------------------------------------------------ harnesses in use
#: Started harnesses whose logs print when a test fails (tests/conftest.py does the printing).
ACTIVE: list[BotHarness] = []


def register(harness: BotHarness) -> BotHarness:
    """Make a harness's logs print when a test that uses it fails."""
    ACTIVE.append(harness)
    return harness


def unregister(harness: BotHarness) -> None:
    if harness in ACTIVE:
        ACTIVE.remove(harness)


@contextlib.asynccontextmanager
async def shared_harness(harness: BotHarness) -> AsyncIterator[BotHarness]:
    """Start a harness for a module and print its logs when one of its tests fails."""
    async with harness as h:
        register(h)
        try:
            yield h
        finally:
            unregister(h)
    problems = harness.fd.problems()
    assert problems == [], problems


def assert_schema_clean(harness: BotHarness) -> None:
    """Every request body the bot sent matches Discord's OpenAPI description (when the file is present)."""
    fd = harness.fd
    assert fd.unknown_routes == [], f"the bot called routes the fake does not know: {fd.unknown_routes}"
    assert fd.errors == [], f"the fake itself failed: {fd.errors}"
    if fd.schema_validation:
        assert fd.schema_errors == []
