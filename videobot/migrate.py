"""Schema migrations (alembic). ``videobot db upgrade`` is the only way the schema is made outside tests."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _blocking(fn, *args) -> None:  # type: ignore[no-untyped-def]
    """Run an alembic command; its async env starts an event loop, so never on a thread that has one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(fn, *args).result()


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (blocking)."""
    _blocking(command.upgrade, alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    _blocking(command.downgrade, alembic_config(url), revision)


def revision(url: str, message: str) -> None:
    """Autogenerate a new migration from the models (developers)."""
    command.revision(alembic_config(url), message=message, autogenerate=True)


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(url: str) -> str | None:
    from videobot.db import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()
