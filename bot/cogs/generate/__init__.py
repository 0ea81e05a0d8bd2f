"""/video, Apps → Animate (a video from a message's picture), the buttons on posted videos (Rerun, Remix,
Extend, Delete) and their reactions (🔁 rerun, ❌ delete)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._cancel import register as register_cancel
from ._cog import GenerateCog

if TYPE_CHECKING:
    from bot.app import VideoBot


async def setup(bot: VideoBot) -> None:
    await bot.add_cog(GenerateCog(bot))
    register_cancel(bot)
