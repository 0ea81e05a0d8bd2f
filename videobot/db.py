"""Engine and session factory, with the SQLite settings a multi-process queue needs.

Two kinds of transaction:

- ``Database.transaction()`` writes. On SQLite it starts with ``BEGIN IMMEDIATE``, so a
  read-then-write transaction never has to upgrade its lock (that upgrade is what produces
  "database is locked" even with a busy timeout; see shared/NOTES.md).
- ``Database.sessionmaker()`` reads. A deferred ``BEGIN`` under WAL reads the last committed state
  beside a writer instead of queueing behind it (``/healthz``, ``/queue``, the change feed). It is
  read-only (SQLite: connections of their own with ``PRAGMA query_only``; PostgreSQL: ``READ
  ONLY`` transactions on the writer's pool): a write in a read session fails at once instead of
  attempting the lock upgrade above.

- ``Database.run_sync(fn)`` writes too: ``fn(connection)`` is a synchronous function, the whole
  transaction in one hand-over to a thread on SQLite (a synchronous ``pysqlite`` engine on the same
  file, set up the same way), where the async engine hands each statement to the connection's
  thread. For the transaction a busy worker runs for every job (``complete_and_claim``); on
  PostgreSQL (and an in-memory SQLite) ``fn`` runs through the async engine's ``run_sync``.

SQLite: WAL journal, ``busy_timeout``, foreign keys on. PostgreSQL (asyncpg): claims use
``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Float

from videobot import sqlite_driver

log = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000

#: Where an injected clock (tests) puts its time for PostgreSQL statements to read.
_PG_CLOCK_SETTING = "videobot.now"


class db_now(FunctionElement):  # noqa: N801 - reads like a SQL function
    """The database clock as Unix seconds (float): leases are measured on it, not on a worker's clock."""

    type = Float()
    inherit_cache = True


def _clocked(compiler: object) -> bool:
    """True when the statement is for an engine whose clock a test controls (see ``create_engine``)."""
    return getattr(getattr(compiler, "dialect", None), "videobot_clock", None) is not None


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: object, **kw: object) -> str:
    if _clocked(compiler):
        return "videobot_now()"
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(db_now, "postgresql")
def _db_now_pg(element: db_now, compiler: object, **kw: object) -> str:
    if _clocked(compiler):
        return f"current_setting('{_PG_CLOCK_SETTING}')::float8"
    return "EXTRACT(EPOCH FROM clock_timestamp())::float8"


@compiles(db_now)
def _db_now_default(element: db_now, compiler: object, **kw: object) -> str:  # pragma: no cover
    return "CURRENT_TIMESTAMP"


def dialect_insert(session: AsyncSession):  # type: ignore[no-untyped-def]
    """The dialect's ``insert`` (PostgreSQL or SQLite), for ``ON CONFLICT`` clauses."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for in-memory)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


#: Options in a PostgreSQL URL that SQLAlchemy's asyncpg dialect consumes itself (not asyncpg's).
_SQLALCHEMY_ONLY_OPTIONS = (
    "async_creator_fn",
    "prepared_statement_cache_size",
    "prepared_statement_name_func",
)


def asyncpg_connect_args(url: str) -> dict[str, Any]:
    """Keyword arguments for ``asyncpg.connect()`` that reach the server exactly as the engine for ``url``
    does: SQLAlchemy's asyncpg dialect reads the URL (``?host=/var/run/postgresql`` for a unix
    socket, ``?ssl=require``, several hosts), for connections the engine's pool cannot serve (LISTEN)."""
    u = make_url(url)
    _, kwargs = u.get_dialect()().create_connect_args(u)
    for key in _SQLALCHEMY_ONLY_OPTIONS:
        kwargs.pop(key, None)
    return kwargs


def create_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 5,
    clock: Callable[[], float] | None = None,
    read_only: bool = False,
) -> AsyncEngine:
    """Create the async engine for ``url`` with the right per-dialect connection setup.

    Its transactions write (``BEGIN IMMEDIATE`` on SQLite); ``read_engine()`` gives one for reads.
    ``read_only`` (SQLite): connections opened with ``PRAGMA query_only`` and deferred ``BEGIN``.
    ``clock`` (tests only) replaces the database clock ``db_now()``: a callable returning Unix
    seconds, read at each transaction's start on PostgreSQL and at each use on SQLite.
    """
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            echo=echo,
            # One thread hop per statement instead of four (videobot.sqlite_driver).
            connect_args={
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "async_creator_fn": sqlite_driver.connect,
            },
            # A connection going back to the pool is rolled back only if still in a transaction (see
            # _setup_sqlite), not after every commit: one thread hop less per transaction.
            pool_reset_on_return=None,
        )
        _setup_sqlite(engine, clock, read_only=read_only)
    else:
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            pool_recycle=1800,
        )
        if clock is not None:
            _setup_pg_clock(engine, clock)
    # Read by the db_now() compilers; each engine has its own dialect and statement cache.
    engine.dialect.videobot_clock = clock  # type: ignore[attr-defined]
    return engine


def read_engine(engine: AsyncEngine, url: str, *, clock: Callable[[], float] | None = None) -> AsyncEngine:
    """The engine for reads beside ``engine`` (the writer for ``url``): read-only transactions.

    SQLite: its own small pool of ``query_only`` connections with deferred ``BEGIN``, so that a
    connection never switches between reading and writing. PostgreSQL: the writer's pool, with
    ``READ ONLY`` transactions (no extra connections on the server).
    """
    if engine.dialect.name == "sqlite":
        if sqlite_path(url) is None:
            return engine  # an in-memory database exists only on the writer's connection
        return create_engine(url, echo=bool(engine.echo), clock=clock, read_only=True)
    return engine.execution_options(postgresql_readonly=True)


def _setup_sqlite(engine: AsyncEngine, clock: Callable[[], float] | None, *, read_only: bool) -> None:
    _on_sqlite_connect(engine.sync_engine, clock, read_only=read_only)

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_conn, _record, _state) -> None:  # type: ignore[no-untyped-def]
        # The pool's reset, done only when needed: reading the flag needs no hop to the connection's
        # thread, which is idle here (the connection is being returned).
        if sqlite_driver.returned_to_pool(dbapi_conn):
            dbapi_conn.rollback()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        # A read takes no lock until it reads, and under WAL never waits for a writer. The BEGIN runs
        # in the same hop to the connection's thread as the transaction's first statement.
        conn.connection.driver_connection.begin_with_next("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _on_sqlite_connect(engine: Engine, clock: Callable[[], float] | None, *, read_only: bool) -> None:
    """Every SQLite connection, async or not: WAL, busy timeout, foreign keys, the test clock."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Take transaction control away from the driver so we can emit BEGIN IMMEDIATE ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        if read_only:
            cur.execute("PRAGMA query_only=ON")
        cur.close()
        if clock is not None:
            dbapi_conn.create_function("videobot_now", 0, clock)


def sqlite_thread_engine(
    path: Path, *, echo: bool = False, clock: Callable[[], float] | None = None
) -> Engine:
    """A synchronous engine on the SQLite file ``path`` for ``Database.run_sync``: the same connection
    set-up as the async engine's, ``BEGIN IMMEDIATE`` for each transaction, used from threads."""
    engine = sqlalchemy.create_engine(
        f"sqlite:///{path}",
        echo=echo,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )
    _on_sqlite_connect(engine, clock, read_only=False)

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dialect.videobot_clock = clock  # type: ignore[attr-defined]
    return engine


def _setup_pg_clock(engine: AsyncEngine, clock: Callable[[], float]) -> None:
    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql(f"SELECT set_config('{_PG_CLOCK_SETTING}', '{float(clock())!r}', true)")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class Database:
    """The engine and session factories, built once at the entry point and passed down.

    ``transaction()`` for anything that writes; ``sessionmaker()`` for reads only (a write there
    raises). ``clock`` is for tests: see ``create_engine``.
    """

    def __init__(
        self, url: str, *, echo: bool = False, clock: Callable[[], float] | None = None, pool_size: int = 5
    ) -> None:
        self.url = url
        self.engine = create_engine(url, echo=echo, clock=clock, pool_size=pool_size)
        self.reader = read_engine(self.engine, url, clock=clock)
        #: Read-only sessions (deferred transactions: on SQLite they run beside a writer).
        self.sessionmaker = create_sessionmaker(self.reader)
        self._writer = create_sessionmaker(self.engine)
        self.dialect = make_url(url).get_backend_name()
        path = sqlite_path(url) if self.dialect == "sqlite" else None
        #: SQLite file: the synchronous engine ``run_sync`` uses in a thread (None: it uses ``engine``).
        self.thread_engine = sqlite_thread_engine(path, echo=echo, clock=clock) if path is not None else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed on success, rolled back on error."""
        async with self._writer() as session, session.begin():
            yield session

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)``, a synchronous function, in one write transaction: committed
        when it returns, rolled back when it raises.

        SQLite (a file): in a thread, on ``thread_engine`` (one hand-over for the whole transaction).
        Otherwise on the async engine (``AsyncConnection.run_sync``).
        """
        if self.thread_engine is not None:
            return await asyncio.to_thread(self._in_thread, fn, *args)
        async with self.engine.begin() as conn:
            return await conn.run_sync(fn, *args)

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        assert self.thread_engine is not None
        conn: Connection
        with self.thread_engine.begin() as conn:
            return fn(conn, *args)

    async def ping(self) -> None:
        """Raise if the database cannot be reached (a read: it does not wait for a writer)."""
        from sqlalchemy import text

        async with self.reader.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self.thread_engine is not None:
            self.thread_engine.dispose()
        await self.engine.dispose()
        if self.reader.sync_engine.pool is not self.engine.sync_engine.pool:
            await self.reader.dispose()
