"""Shared fixtures: real databases (a temporary SQLite file; PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.engine import make_url

from videobot.db import Database
from videobot.migrate import upgrade

PG_ENV = "VIDEOBOT_TEST_POSTGRES_URL"
PG_SKIP = f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test); .ci/run sets it"


def _pg_admin_url() -> str | None:
    return os.environ.get(PG_ENV) or None


async def _pg_exec(url: str, sql: str) -> None:
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username or "postgres",
        password=u.password,
        database=u.database,
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head, dropped at the end."""
    admin = _pg_admin_url()
    if admin is None:
        pytest.skip(PG_SKIP)
    name = f"videobot_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_exec(admin, f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    asyncio.run(_pg_exec(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


TABLES = [
    "job_results",
    "credit_ledger",
    "jobs",
    "member_quotas",
    "guild_configs",
    "role_limits",
    "mod_actions",
    "workers",
]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A migrated, empty database: a real SQLite file, and the real PostgreSQL server when configured."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'videobot.db'}"
        upgrade(url)
        return url
    url = request.getfixturevalue("pg_database_url")
    asyncio.run(_pg_exec(url, "TRUNCATE " + ", ".join(TABLES) + " RESTART IDENTITY CASCADE"))
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()
