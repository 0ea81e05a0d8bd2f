"""Every setting is discoverable: in .env.example (with a comment) and in the README's settings notes."""

from __future__ import annotations

from pathlib import Path

from videobot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_in_env_example_with_a_comment() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    for name, field in Settings.model_fields.items():
        alias = field.alias or name.upper()
        [index] = [i for i, line in enumerate(lines) if line.startswith(f"{alias}=")]
        assert lines[index - 1].startswith("#"), f"{alias} has no comment line above it in .env.example"


def test_readme_starts_with_the_run_and_test_commands_ci_uses() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    run = next(line for line in readme[:6] if line.startswith("Run:"))
    test = next(line for line in readme[:6] if line.startswith("Test:"))
    assert "videobot run" in run
    test_cmd = test.split("`")[1]
    assert test_cmd in (ROOT / ".ci" / "run").read_text()
