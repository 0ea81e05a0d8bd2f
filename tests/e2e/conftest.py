"""End-to-end tests: the real bot and worker processes against the fake Discord (select with ``-m e2e``).

Modules share one harness (``module_harness``) where the tests allow it, because starting the bot
(and a worker, which imports torch) is most of the cost. A failing test prints the tail of every
process log.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import BotHarness

_ACTIVE: list[BotHarness] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end tests with the real bot and worker processes (slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def register(harness: BotHarness) -> BotHarness:
    """Make a harness's logs print when a test that uses it fails."""
    _ACTIVE.append(harness)
    return harness


def unregister(harness: BotHarness) -> None:
    if harness in _ACTIVE:
        _ACTIVE.remove(harness)


@pytest.fixture(autouse=True)
def _dump_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for harness in list(_ACTIVE):
            harness.dump_logs()


def assert_schema_clean(harness: BotHarness) -> None:
    """Every request body the bot sent matches Discord's OpenAPI description (when the file is present)."""
    fd = harness.fd
    assert fd.unknown_routes == [], f"the bot called routes the fake does not know: {fd.unknown_routes}"
    assert fd.errors == [], f"the fake itself failed: {fd.errors}"
    if fd.schema_validation:
        assert fd.schema_errors == []
