"""Discord extensions (one per feature), loaded by ``bot.app``."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


async def is_moderator(bot: Any, who: Any) -> bool:
    """``bot.checks.is_moderator`` (Manage Server or the configured moderator role, checked now).

    Until that module exists, Manage Server alone counts.
    """
    try:
        from bot.checks import is_moderator as check
    except ImportError:
        log.warning("bot.checks is not available; only Manage Server counts as moderator")
        member = getattr(who, "user", who)
        perms = getattr(member, "guild_permissions", None)
        return bool(perms and perms.manage_guild)
    return bool(await check(bot, who))
