"""Helpers shared by the test packages (fixtures that use them live in tests/conftest.py)."""

from __future__ import annotations

from videobot.db import asyncpg_connect_args

#: The PostgreSQL server the database tests use; ``.ci/run`` sets it to the local server.
PG_ENV = "VIDEOBOT_TEST_POSTGRES_URL"
PG_SKIP = f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test); .ci/run sets it"

#: Every table, for emptying a PostgreSQL test database between tests.
TABLES = [
    "job_results",
    "credit_ledger",
    "jobs",
    "member_quotas",
    "guild_configs",
    "role_limits",
    "styles",
    "mod_actions",
    "workers",
    "bot_lock",
    "job_inputs",
    "intakes",
]


async def pg_exec(url: str, sql: str) -> None:
    """Run one statement on PostgreSQL outside a transaction (CREATE/DROP DATABASE, TRUNCATE)."""
    import asyncpg

    args = asyncpg_connect_args(url)
    args.setdefault("user", "postgres")
    conn = await asyncpg.connect(**args)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class FakeClock:
    """A clock the test moves by hand: pass it as ``Database(url, clock=...)`` to drive ``db_now()``."""

    def __init__(self, start: float) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def at(seconds: float) -> object:
    """Compares equal to a Unix time within a millisecond (``pytest.approx``'s relative default
    would allow half an hour at today's timestamps)."""
    import pytest

    return pytest.approx(seconds, abs=1e-3)
