"""The SQLite driver (``videobot.sqlite_driver``): aiosqlite's behaviour, one thread hop per statement,
and connections handed back to the pool never keep a transaction (or SQLite's write lock) open; and
``Database.run_sync``, a whole write transaction in one thread."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import Column, Connection, Float, ForeignKey, Integer, MetaData, Table, insert, text
from sqlalchemy.exc import IntegrityError, OperationalError

from videobot import sqlite_driver
from videobot.db import Database, db_now


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call aiosqlite hands to a connection's thread."""
    calls: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(getattr(fn, "__name__", "?"))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return calls


async def next_write_and_read(db: Database) -> list[int]:
    """Insert id 2 into ``t`` in a new transaction, then read every id back."""
    async with db.transaction() as s:
        await s.execute(text("INSERT INTO t (id) VALUES (2)"))
    async with db.sessionmaker() as s:
        return list((await s.execute(text("SELECT id FROM t"))).scalars())


async def test_cursor_answers_like_aiosqlite(tmp_path: Path) -> None:
    conn = await sqlite_driver.connect(str(tmp_path / "d.db"), isolation_level=None)
    try:
        cur = conn.cursor()
        await cur.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
        await cur.execute("INSERT INTO t (name) VALUES (?)", ("a",))
        assert (cur.rowcount, cur.lastrowid) == (1, 1)
        await cur.executemany("INSERT INTO t (name) VALUES (?)", [("b",), ("c",), ("d",)])
        assert cur.rowcount == 3
        await cur.execute("UPDATE t SET name = name || '!' WHERE id > ?", (2,))
        assert cur.rowcount == 2
        await cur.execute("SELECT id, name FROM t ORDER BY id")
        assert [d[0] for d in cur.description] == ["id", "name"]
        assert await cur.fetchone() == (1, "a")
        assert await cur.fetchmany(2) == [(2, "b"), (3, "c!")]
        assert await cur.fetchall() == [(4, "d!")]
        assert await cur.fetchone() is None
        with pytest.raises(sqlite3.IntegrityError):
            await cur.execute("INSERT INTO t (name) VALUES ('a')")
        await cur.execute("SELECT count(*) FROM t")
        assert await cur.fetchall() == [(4,)]  # the failed insert changed nothing
    finally:
        await conn.close()


async def test_one_thread_hop_per_statement(tmp_path: Path, hops: list[str]) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    try:
        async with db.transaction() as s:  # the first use opens the connection (its set-up hops)
            await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)"))
        hops.clear()
        async with db.transaction() as s:
            for n in range(5):
                await s.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
            rows = (await s.execute(text("SELECT n FROM t ORDER BY n"))).scalars().all()
        assert rows == [0, 1, 2, 3, 4]
        # Six statements (BEGIN IMMEDIATE rides with the first), COMMIT; no rollback when the
        # connection goes back to the pool.
        assert len(hops) == 7, hops
        assert hops[-1] == "commit" and "rollback" not in hops
    finally:
        await db.dispose()


async def test_a_failed_transaction_leaves_no_lock_behind(tmp_path: Path, hops: list[str]) -> None:
    path = tmp_path / "d.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.transaction() as s:
            await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        with pytest.raises(RuntimeError):
            async with db.transaction() as s:
                await s.execute(text("INSERT INTO t (id) VALUES (1)"))
                raise RuntimeError("a bug in the middle of a write")
        assert "rollback" in hops
        # Another process can take the write lock at once, and the insert is gone.
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            assert other.execute("SELECT count(*) FROM t").fetchone() == (0,)
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert await next_write_and_read(db) == [2]  # the pooled connection works for the next one
    finally:
        await db.dispose()


async def test_the_write_lock_is_held_from_the_first_statement(tmp_path: Path, hops: list[str]) -> None:
    """BEGIN IMMEDIATE travels with the first statement: that statement already runs under the write
    lock, and a transaction that runs no statement takes no lock and costs no hop."""
    path = tmp_path / "d.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        async with db.transaction() as s:
            await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        async with db.transaction() as s:
            await s.execute(text("SELECT count(*) FROM t"))  # a read, but in a write transaction
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # released at the commit
        other.execute("ROLLBACK")
        hops.clear()
        async with db.transaction() as s:
            await s.connection()
            other.execute("BEGIN IMMEDIATE")  # no statement yet: no lock taken
            other.execute("ROLLBACK")
        assert hops == []
    finally:
        other.close()
        await db.dispose()


async def test_a_busy_begin_fails_its_statement_and_leaves_the_connection_usable(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.engine.connect() as conn:  # the pool's one connection, with a short busy timeout
            await conn.exec_driver_sql("PRAGMA busy_timeout=50")
        async with db.transaction() as s:
            await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(OperationalError, match="database is locked"):
                async with db.transaction() as s:
                    await s.execute(text("INSERT INTO t (id) VALUES (1)"))
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert await next_write_and_read(db) == [2]
    finally:
        await db.dispose()


async def test_run_sync_is_one_write_transaction_in_a_thread(tmp_path: Path, hops: list[str]) -> None:
    """``Database.run_sync`` on a SQLite file: the whole transaction in one thread (no hand-over per
    statement), under the write lock from its start, with foreign keys and the injected clock, and
    rolled back when the function raises."""
    path = tmp_path / "d.db"
    db = Database(f"sqlite+aiosqlite:///{path}", clock=lambda: 1234.5)
    t = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("at", Float))
    child = Table(
        "child",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("t_id", Integer, ForeignKey(t.c.id)),
    )
    try:
        async with db.transaction() as s:
            await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, at FLOAT)"))
            await s.execute(
                text("CREATE TABLE child (id INTEGER PRIMARY KEY, t_id INTEGER REFERENCES t (id))")
            )
        hops.clear()

        def body(conn: Connection, job_id: int) -> bool:
            other = sqlite3.connect(path, isolation_level=None, timeout=0)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")  # held from the start: BEGIN IMMEDIATE
            finally:
                other.close()
            conn.execute(insert(t).values(id=job_id, at=db_now()))
            return threading.current_thread() is not threading.main_thread()

        assert await db.run_sync(body, 1)
        assert hops == []  # not a single statement handed to an aiosqlite connection

        def broken(conn: Connection) -> None:
            conn.execute(insert(t).values(id=2, at=db_now()))
            raise RuntimeError("a bug after a write")

        with pytest.raises(RuntimeError):
            await db.run_sync(broken)
        with pytest.raises(IntegrityError):  # foreign keys are on
            await db.run_sync(lambda conn: conn.execute(insert(child).values(id=1, t_id=99)))
        async with db.sessionmaker() as s:
            assert (await s.execute(text("SELECT id, at FROM t"))).all() == [(1, 1234.5)]
            assert (await s.execute(text("SELECT count(*) FROM child"))).scalar() == 0
    finally:
        await db.dispose()
