"""Fixtures for the generator tests: the tiny random Wan model, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No network in tests: the tiny model must load from disk alone.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose models/tiny holds the built tiny model."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_data_dir: Path) -> Path:
    from generator.tiny import build_tiny_model

    return build_tiny_model(tiny_data_dir / "models" / "tiny")


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_data_dir: Path, tiny_model_dir: Path):
    from generator.pipeline import VideoPipeline

    return VideoPipeline.load("tiny", data_dir=tiny_data_dir, device="cpu")
