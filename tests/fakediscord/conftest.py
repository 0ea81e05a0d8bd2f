"""Fixtures for tests that drive a bot through the fake Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .server import FakeDiscord


@pytest.fixture
async def fd() -> AsyncIterator[FakeDiscord]:
    """A started fake Discord; fails the test if the fake met an unknown route or broke internally."""
    async with FakeDiscord() as fake:
        yield fake
    assert not fake.unknown_routes, f"requests to routes the fake does not know: {fake.unknown_routes}"
    assert not fake.errors, f"the fake itself failed: {fake.errors}"
