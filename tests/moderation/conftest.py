"""Moderation tests: the services on real databases, and end to end with the real bot (``-m e2e``)."""

from __future__ import annotations

import pytest

# The end-to-end tests here share the e2e harness's hooks: process logs print when a test fails.
from tests.e2e.conftest import _dump_logs_on_failure, pytest_runtest_makereport  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end tests with the real bot and worker processes (slow)")
