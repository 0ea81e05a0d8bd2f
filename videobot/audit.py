"""The moderator audit trail: who changed what, when and why (``mod_actions``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from videobot.db import db_now
from videobot.models import ModAction


async def audit(
    session: AsyncSession,
    guild_id: int,
    actor_id: int,
    action: str,
    target_id: int | None,
    details: dict[str, Any],
    reason: str | None,
) -> None:
    """Record a moderator action in the caller's transaction."""
    session.add(
        ModAction(
            guild_id=guild_id,
            actor_id=actor_id,
            action=action,
            target_id=target_id,
            details=details,
            reason=reason,
            created_at=db_now(),
        )
    )
    await session.flush()
