"""One ``videobot bot`` per database, enforced.

The bot is the one process that posts results: two bots on one database would post every video
twice. The bot takes this lock before it connects to Discord and keeps it while it runs:

* PostgreSQL: a session-level advisory lock on a connection the bot holds open. It is released by
  the server the moment that connection ends (a crashed bot frees it at once). After a lost
  connection (a database restart) the bot takes it again; if another bot took it meanwhile, this
  one stops.
* SQLite: a row with a lease (``bot_lock``), renewed every few seconds. A bot that stops renewing
  loses it when the lease passes; on the same machine a holder whose process is gone loses it at
  once (SQLite is one machine only), so a restarted bot does not wait. "Gone" compares the process's
  start time too, not only its pid: a container restarted after a hard kill runs its new bot as pid 1
  again, and that bot must not take its own predecessor's row for a live bot.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

import psutil
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from videobot.db import Database, db_now
from videobot.models import BotLock as BotLockRow

log = logging.getLogger(__name__)

LOCK_NAME = "bot"
#: ``pg_try_advisory_lock`` key ("vbot"): below 2**32, so it shows as ``objid`` in ``pg_locks``.
PG_LOCK_KEY = 0x76626F74
LEASE_SECONDS = 30.0
#: How often the holder renews (and, on PostgreSQL, checks its connection).
RENEW_SECONDS = 5.0

ONE_BOT = (
    "Run exactly one `videobot bot` (or `videobot run`) per database: stop the other one first. "
    "Several GPU workers are fine; several bots would post every video twice."
)


class AnotherBotRunning(Exception):
    """Another bot holds the lock; the message says which and what to do."""


def _started(pid: int) -> str | None:
    """When process ``pid`` started (seconds since the epoch, as the owner string records it), or None."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return None


def default_owner() -> str:
    """``host:pid:started:nonce``: the process, told apart from a later one with the same pid."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_started(pid)}:{uuid.uuid4().hex[:6]}"


def _holder(owner: str) -> str:
    """The owner as a person reads it: ``host, pid N``."""
    host, _, rest = owner.partition(":")
    return f"{host}, pid {rest.partition(':')[0]}"


def _gone(owner: str) -> bool:
    """True when ``owner`` is a process on this machine that no longer runs (its pid is free, or taken
    by a process that started at another time)."""
    host, *fields = owner.split(":")
    if host != socket.gethostname() or not fields or not fields[0].isdigit():
        return False
    pid = int(fields[0])
    started = _started(pid)
    if started is None:
        return True
    # Owners written before the start time was recorded (``host:pid:nonce``) compare the pid alone.
    return len(fields) >= 3 and "." in fields[1] and fields[1] != started


class BotLock:
    """Take with ``acquire()``, keep with ``renew()`` every ``RENEW_SECONDS``, give back with ``release()``."""

    def __init__(
        self, db: Database, *, owner: str | None = None, lease_seconds: float = LEASE_SECONDS
    ) -> None:
        self.db = db
        self.owner = owner or default_owner()
        self.lease_seconds = lease_seconds
        self._conn: AsyncConnection | None = None
        self.held = False

    async def acquire(self) -> None:
        """Take the lock or raise ``AnotherBotRunning``."""
        if self.db.dialect == "postgresql":
            await self._acquire_pg()
        else:
            await self._acquire_row()
        self.held = True
        log.info("bot lock taken (%s)", self.owner)

    async def renew(self) -> None:
        """Keep the lock. Raises ``AnotherBotRunning`` if another bot has it now; database errors propagate
        (the caller retries at the next renewal)."""
        if self.db.dialect == "postgresql":
            if self._conn is not None:
                try:
                    await self._conn.execute(text("SELECT 1"))
                    return
                except Exception:
                    log.warning("bot lock: the database connection holding it was lost; taking it again")
                    await self._drop_conn()
            self.held = False
            await self._acquire_pg()
            self.held = True
            return
        async with self.db.transaction() as s:
            res = await s.execute(
                update(BotLockRow)
                .where(BotLockRow.name == LOCK_NAME, BotLockRow.owner == self.owner)
                .values(expires_at=db_now() + self.lease_seconds)
            )
        if res.rowcount != 1:
            self.held = False
            await self._acquire_row()
            self.held = True

    async def release(self) -> None:
        try:
            if self.db.dialect == "postgresql":
                await self._drop_conn()
            elif self.held:
                async with self.db.transaction() as s:
                    await s.execute(
                        delete(BotLockRow).where(BotLockRow.name == LOCK_NAME, BotLockRow.owner == self.owner)
                    )
        except Exception as exc:  # shutting down anyway: the lease or the closed connection frees it
            log.warning("bot lock: could not release it (%s)", type(exc).__name__)
        self.held = False

    # ------------------------------------------------------------------ PostgreSQL
    async def _acquire_pg(self) -> None:
        conn = await self.db.engine.connect()
        try:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PG_LOCK_KEY})).scalar()
            await conn.commit()  # a session-level lock outlives the transaction
            if not got:
                holder = (
                    await conn.execute(
                        text(
                            "SELECT a.client_addr, a.application_name, a.backend_start FROM pg_locks l "
                            "JOIN pg_stat_activity a ON a.pid = l.pid "
                            "WHERE l.locktype = 'advisory' AND l.objid = :k AND l.granted "
                            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                        ),
                        {"k": PG_LOCK_KEY},
                    )
                ).first()
                where = ""
                if holder is not None:
                    where = f" (connected from {holder.client_addr or 'a local socket'} since {holder.backend_start:%Y-%m-%d %H:%M:%S})"
                raise AnotherBotRunning(
                    f"Another videobot bot is already running against this database{where}. {ONE_BOT}"
                )
        except BaseException:
            await conn.invalidate()
            await conn.close()
            raise
        self._conn = conn

    async def _drop_conn(self) -> None:
        """Close the lock's connection for good: a pooled connection would keep the lock held."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.invalidate()
            finally:
                await conn.close()

    # ------------------------------------------------------------------ SQLite
    async def _acquire_row(self) -> None:
        async with self.db.transaction() as s:
            now = float((await s.execute(select(db_now()))).scalar_one())
            row = await s.get(BotLockRow, LOCK_NAME)
            if row is None:
                s.add(
                    BotLockRow(
                        name=LOCK_NAME, owner=self.owner, acquired_at=now, expires_at=now + self.lease_seconds
                    )
                )
                return
            if row.owner != self.owner and row.expires_at > now and not _gone(row.owner):
                seen = max(0.0, now - (row.expires_at - self.lease_seconds))
                raise AnotherBotRunning(
                    f"Another videobot bot is already running against this database "
                    f"({_holder(row.owner)}, seen {seen:.0f} s ago). {ONE_BOT} "
                    f"If it was stopped just now, its lock frees itself within {self.lease_seconds:.0f} s."
                )
            if row.owner != self.owner:
                log.info("bot lock: taking it over from %s (gone or lease expired)", row.owner)
            row.owner = self.owner
            row.acquired_at = now
            row.expires_at = now + self.lease_seconds
