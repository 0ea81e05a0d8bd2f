"""/video, Apps → Animate, the buttons on posted videos (Rerun, Remix, Extend, Delete) and on status
messages (Cancel), and the reactions on results (🔁 rerun, ❌ delete)."""

from __future__ import annotations

from bot.ports import CommandHost

from ._cog import GenerateCog


async def setup(bot: CommandHost) -> None:
    await bot.add_cog(GenerateCog(bot))
