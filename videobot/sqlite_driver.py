"""aiosqlite with one thread hop per statement, for SQLAlchemy's ``sqlite+aiosqlite`` dialect.

aiosqlite runs each SQLite call in the connection's own thread and hands the result back to the
event loop (a queue put, a thread wake-up, ``call_soon_threadsafe``, a loop wake-up). SQLAlchemy's
adapter makes four such calls per statement (open a cursor, execute, fetch all, close), so a short
transaction of three statements spent most of its ~3 ms in hand-overs, not in SQLite. Here the
cursor does all four in one call: ``execute`` runs the statement, fetches its rows and closes the
sqlite3 cursor in the thread, and ``fetchall``/``description``/``rowcount`` answer from what it
brought back. A transaction's ``BEGIN`` (``begin_with_next``) rides in the same hop as its first
statement, and a transaction that ran no statement commits or rolls back without a hop. Everything
else (the thread, close) is aiosqlite's own.

Used through ``connect_args={"async_creator_fn": connect}``, which SQLAlchemy's aiosqlite dialect
calls instead of ``aiosqlite.connect`` with the same arguments (``videobot.db.create_engine``).
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterable
from typing import Any

import aiosqlite


def _run(
    conn: sqlite3.Connection, sql: str, parameters: Any, many: bool, begin: str | None
) -> tuple[Any, int, int | None, list[Any]]:
    if begin is not None:
        conn.execute(begin)
    cur = conn.cursor()
    try:
        if many:
            cur.executemany(sql, parameters)
        elif parameters is None:
            cur.execute(sql)
        else:
            cur.execute(sql, parameters)
        rows = cur.fetchall() if cur.description else []
        return cur.description, cur.rowcount, cur.lastrowid, rows
    finally:
        cur.close()


class Cursor:
    """The part of ``aiosqlite.Cursor`` that SQLAlchemy uses, with the rows fetched by ``execute``."""

    arraysize = 1

    def __init__(self, conn: OneHopConnection) -> None:
        self._conn = conn
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: deque[Any] = deque()

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.__aenter__().__await__()

    async def _go(self, sql: str, parameters: Any, many: bool) -> Cursor:
        conn = self._conn
        begin, conn.pending_begin = conn.pending_begin, None
        self.description, self.rowcount, self.lastrowid, rows = await conn._execute(
            lambda: _run(conn._conn, sql, parameters, many, begin)
        )
        self._rows = deque(rows)
        return self

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        return await self._go(sql, parameters, False)

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        return await self._go(sql, parameters, True)

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        n = self.arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(n, len(self._rows)))]

    async def fetchall(self) -> list[Any]:
        rows, self._rows = list(self._rows), deque()
        return rows

    async def close(self) -> None:
        self._rows.clear()


class OneHopConnection(aiosqlite.Connection):
    """An ``aiosqlite.Connection`` whose cursors make one thread hop per statement."""

    #: The ``BEGIN`` to run just before the next statement, in its hop (``begin_with_next``).
    pending_begin: str | None = None

    def cursor(self) -> Cursor:  # type: ignore[override]
        return Cursor(self)

    def begin_with_next(self, sql: str) -> None:
        """Start a transaction with ``sql`` (``BEGIN IMMEDIATE``, say) in the next statement's hop.

        The lock it takes is taken before that statement runs, as if ``BEGIN`` had run on its own; an
        error it raises (a busy database) is that statement's.
        """
        self.pending_begin = sql

    async def commit(self) -> None:
        if self.pending_begin is not None:  # no statement ran: there is no transaction to end
            self.pending_begin = None
            return
        await super().commit()

    async def rollback(self) -> None:
        if self.pending_begin is not None:
            self.pending_begin = None
            return
        await super().rollback()


def returned_to_pool(dbapi_conn: Any) -> bool:
    """SQLAlchemy's adapted connection is going back to the pool: forget a ``BEGIN`` still waiting
    for a statement (no transaction was started), and say whether a transaction is open to roll back
    (sqlite3's ``in_transaction``, read without a hop; true too when it cannot tell, e.g. closed)."""
    try:
        conn = dbapi_conn._connection
        conn.pending_begin = None
        return bool(conn._conn.in_transaction)
    except Exception:
        return True


def connect(database: str | bytes, *, iter_chunk_size: int = 64, **kwargs: Any) -> OneHopConnection:
    """``aiosqlite.connect`` returning a ``OneHopConnection`` (its thread a daemon, as SQLAlchemy sets)."""
    loc = database.decode() if isinstance(database, bytes) else str(database)
    conn = OneHopConnection(lambda: sqlite3.connect(loc, **kwargs), iter_chunk_size)
    conn._thread.daemon = True
    return conn
