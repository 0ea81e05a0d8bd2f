"""Shared fixtures and hooks for every test package.

- Databases: a real temporary SQLite file, and the real PostgreSQL server when configured; with
  ``clocked_db`` the database clock is a ``FakeClock`` the test moves (no sleeping in tests).
- The tiny random Wan model, built once per session (no network: it loads from disk alone).
- End-to-end tests (``-m e2e``): everything under tests/e2e/ and tests/faults/ carries the mark;
  when one fails, the tail of every running harness's process logs is printed.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.helpers import PG_ENV, PG_SKIP, TABLES, FakeClock, pg_exec
from videobot.db import Database
from videobot.migrate import upgrade

# No network in tests: the tiny model must load from disk alone.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Folders whose tests run the real bot and worker processes (slow; select or skip with ``-m e2e``).
E2E_DIRS = ("tests/e2e/", "tests/faults/")


# ------------------------------------------------------------------ end-to-end tests
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end tests with the real bot and worker processes (slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.replace("\\", "/")
        if any(d in path for d in E2E_DIRS):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _dump_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the tail of every running harness's logs when an end-to-end test fails."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed or request.node.get_closest_marker("e2e") is None:
        return
    from tests.e2e.harness import ACTIVE

    for harness in list(ACTIVE):
        harness.dump_logs()


# ------------------------------------------------------------------ databases
@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head, dropped at the end."""
    admin = os.environ.get(PG_ENV) or None
    if admin is None:
        pytest.skip(PG_SKIP)
    name = f"videobot_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(pg_exec(admin, f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    asyncio.run(pg_exec(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url(pg_database_url: str) -> str:
    """The session's PostgreSQL test database, emptied (skips without VIDEOBOT_TEST_POSTGRES_URL)."""
    asyncio.run(pg_exec(pg_database_url, "TRUNCATE " + ", ".join(TABLES) + " RESTART IDENTITY CASCADE"))
    return pg_database_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a real SQLite file, and the real PostgreSQL server when configured."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'videobot.db'}"
        upgrade(url)
        return url
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> FakeClock:
    """A stopped clock, started at the real time; the test moves it with ``clock.advance(seconds)``."""
    return FakeClock(time.time())


@pytest.fixture
async def clocked_db(db_url: str, clock: FakeClock) -> AsyncIterator[Database]:
    """Like ``db``, but the database clock (``db_now()``: leases, quota windows) is ``clock``."""
    database = Database(db_url, clock=clock)
    yield database
    await database.dispose()


# ------------------------------------------------------------------ the tiny model
@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose models/tiny holds the built tiny model."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_data_dir: Path) -> Path:
    """The tiny random Wan pipeline on disk, built once per session."""
    from generator.tiny import build_tiny_model

    return build_tiny_model(tiny_data_dir / "models" / "tiny")


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_data_dir: Path, tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    """The tiny model loaded on CPU, shared by the session's tests."""
    from generator.pipeline import VideoPipeline

    return VideoPipeline.load("tiny", data_dir=tiny_data_dir, device="cpu")
