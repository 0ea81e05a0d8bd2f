"""A server whose model has no trained size for an aspect ratio does not offer that ratio: Wan 2.1 1.3B was
trained at 832x480 and 480x832, so /video offers 16:9 and 9:16 only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.e2e.harness import BotHarness

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    # The bot alone: it plans the request with the configured preset before any worker sees it.
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-sizes"), bot_env={"VIDEOBOT_MODEL": "wan2.1-1.3b"}
    ) as harness:
        yield harness


async def test_only_the_models_trained_ratios_are_offered_and_another_is_refused(h: BotHarness) -> None:
    [video] = [c for c in h.fd.commands(h.guild_id) if c["name"] == "video"]
    [ratio] = [o for o in video["options"] if o["name"] == "aspect_ratio"]
    assert [c["value"] for c in ratio["choices"]] == ["16:9", "9:16"]

    # Discord sends only a registered choice: 1:1 never reaches the bot (planning refuses it too, politely,
    # for a request from elsewhere: tests/generator/test_presets.py).
    with pytest.raises(ValueError, match="not one of the command's choices"):
        await h.slash(h.member_id, "video", prompt="a red fox", aspect_ratio="1:1")
    assert await h.jobs() == []
