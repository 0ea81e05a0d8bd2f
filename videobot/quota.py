"""Quotas: an append-only credit ledger over a rolling window.

A member's balance is ``limit + Σ amount`` over the ledger rows whose ``window_at`` falls inside
the window ``[max(now - window, reset_at), now]``. Charges are negative and written in the same
transaction as their job; a refund carries its charge's ``window_at`` and is unique per job, so it
is written exactly once and gives back exactly what was taken. A job that made only some of its
variations gets a ``partial_refund`` (also once) for the missing ones; a later full refund of that
job gives back only the rest. Grants add credits for one window.

The limit: a moderator's per-member override, else the highest limit among the member's roles,
else the guild default, else the ``VIDEOBOT_DEFAULT_QUOTA`` setting.

Every function takes an ``AsyncSession`` inside a write transaction; the caller commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Float, and_, bindparam, case, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from videobot.audit import audit
from videobot.db import db_now, dialect_insert
from videobot.models import GuildConfig, LedgerEntry, LedgerKind, MemberQuota, RoleLimit


@dataclass(frozen=True)
class QuotaStatus:
    """What ``/quota show`` tells a member."""

    limit: int
    #: Where the limit comes from: "override", "role", "guild" or "default".
    source: str
    #: Net credits spent in the window (charges minus refunds).
    used: int
    #: One-off credits granted in the window.
    granted: int
    balance: int
    window_seconds: float
    now: float
    #: When the oldest charge in the window expires and gives a credit back (None: nothing to wait for).
    next_credit_at: float | None


async def now(session: AsyncSession) -> float:
    """The database clock, in Unix seconds."""
    return float((await session.execute(select(db_now()))).scalar_one())


_MQ = MemberQuota.__table__
_RL = RoleLimit.__table__
_GC = GuildConfig.__table__
_L = LedgerEntry.__table__
_GUILD = bindparam("q_guild", type_=BigInteger)
_USER = bindparam("q_user", type_=BigInteger)
_MEMBER = and_(_MQ.c.guild_id == _GUILD, _MQ.c.user_id == _USER)


class _Stmt:
    """The statements a submit runs (a burst runs hundreds), built once with bound parameters: building
    them again at each call cost more Python than the database spends on them."""

    #: The clock and every source of the member's limit, in one row.
    limits = select(
        db_now().label("now"),
        select(_MQ.c.limit_override).where(_MEMBER).scalar_subquery().label("override"),
        select(_MQ.c.reset_at).where(_MEMBER).scalar_subquery().label("reset_at"),
        select(func.max(_RL.c.limit))
        .where(_RL.c.guild_id == _GUILD, _RL.c.role_id.in_(bindparam("q_roles", expanding=True)))
        .scalar_subquery()
        .label("role_best"),
        select(_GC.c.default_limit).where(_GC.c.guild_id == _GUILD).scalar_subquery().label("guild_default"),
    )
    #: The window's ledger in one pass: net spent, granted, and the oldest charge not refunded.
    _r = _L.alias("r")
    _refunded = (
        select(_r.c.job_id).where(_r.c.job_id == _L.c.job_id, _r.c.kind == LedgerKind.REFUND.value).exists()
    )
    ledger = select(
        func.coalesce(
            func.sum(
                case(
                    (
                        _L.c.kind.in_(
                            [
                                LedgerKind.CHARGE.value,
                                LedgerKind.REFUND.value,
                                LedgerKind.PARTIAL_REFUND.value,
                            ]
                        ),
                        _L.c.amount,
                    ),
                    else_=0,
                )
            ),
            0,
        ).label("net"),
        func.coalesce(func.sum(case((_L.c.kind == LedgerKind.GRANT.value, _L.c.amount), else_=0)), 0).label(
            "granted"
        ),
        func.min(
            case(
                (
                    and_(_L.c.kind == LedgerKind.CHARGE.value, _L.c.job_id.is_not(None), ~_refunded),
                    _L.c.window_at,
                )
            )
        ).label("oldest"),
    ).where(
        _L.c.guild_id == _GUILD, _L.c.user_id == _USER, _L.c.window_at >= bindparam("q_start", type_=Float)
    )
    lock_member = select(_MQ.c.user_id).where(_MEMBER).with_for_update()
    charge = insert(_L).values(
        guild_id=_GUILD,
        user_id=_USER,
        job_id=bindparam("q_job"),
        kind=LedgerKind.CHARGE.value,
        amount=bindparam("q_amount"),
        window_at=db_now(),
        created_at=db_now(),
    )
    #: The account row, by dialect (``ON CONFLICT`` is spelled by each).
    ensure_member: dict[str, Any] = {}


def _ensure_member_stmt(session: AsyncSession) -> Any:
    name = session.bind.dialect.name
    stmt = _Stmt.ensure_member.get(name)
    if stmt is None:
        stmt = _Stmt.ensure_member[name] = (
            dialect_insert(session)(_MQ)
            .values(guild_id=_GUILD, user_id=_USER, updated_at=db_now())
            .on_conflict_do_nothing(index_elements=["guild_id", "user_id"])
        )
    return stmt


async def lock_account(session: AsyncSession, guild_id: int, user_id: int) -> MemberQuota:
    """Create the member's account row if needed and lock it for the rest of the transaction.

    SQLite transactions here are ``BEGIN IMMEDIATE`` and already serialise writers; on PostgreSQL
    the row lock makes concurrent charges for one member take turns, so the balance is read and
    charged atomically.
    """
    await lock_member(session, guild_id, user_id)
    stmt = select(MemberQuota).where(MemberQuota.guild_id == guild_id, MemberQuota.user_id == user_id)
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one()


async def lock_member(session: AsyncSession, guild_id: int, user_id: int) -> None:
    """``lock_account`` without loading the account (what a submit needs: statements built once)."""
    conn = await session.connection()
    member = {"q_guild": guild_id, "q_user": user_id}
    await conn.execute(_ensure_member_stmt(session), member)
    if session.bind.dialect.name == "postgresql":
        await conn.execute(_Stmt.lock_member, member)


async def effective_limit(
    session: AsyncSession,
    guild_id: int,
    user_id: int,
    role_ids: Iterable[int],
    default_limit: int,
) -> tuple[int, str]:
    """The member's limit and where it comes from (override > highest role > guild > setting)."""
    row = await _limits(session, guild_id, user_id, role_ids)
    return _limit_of(row, default_limit)


async def _limits(session: AsyncSession, guild_id: int, user_id: int, role_ids: Iterable[int]) -> Any:
    params = {"q_guild": guild_id, "q_user": user_id, "q_roles": [int(r) for r in role_ids]}
    return (await session.execute(_Stmt.limits, params)).one()


def _limit_of(row: Any, default_limit: int) -> tuple[int, str]:
    if row.override is not None:
        return row.override, "override"
    if row.role_best is not None:
        return row.role_best, "role"
    if row.guild_default is not None:
        return row.guild_default, "guild"
    return default_limit, "default"


async def status(
    session: AsyncSession,
    guild_id: int,
    user_id: int,
    *,
    role_ids: Iterable[int] = (),
    default_limit: int,
    window_seconds: float,
) -> QuotaStatus:
    """Balance, limit, usage and the time the next credit comes back (two statements)."""
    row = await _limits(session, guild_id, user_id, role_ids)
    t = float(row.now)
    limit, source = _limit_of(row, default_limit)
    start = t - window_seconds
    if row.reset_at is not None and row.reset_at > start:
        start = row.reset_at
    conn = await session.connection()
    ledger = (
        await conn.execute(_Stmt.ledger, {"q_guild": guild_id, "q_user": user_id, "q_start": start})
    ).one()
    used = -int(ledger.net)
    granted = int(ledger.granted)
    oldest = ledger.oldest
    return QuotaStatus(
        limit=limit,
        source=source,
        used=used,
        granted=granted,
        balance=limit + granted - used,
        window_seconds=window_seconds,
        now=t,
        next_credit_at=(oldest + window_seconds) if oldest is not None else None,
    )


async def charge(session: AsyncSession, guild_id: int, user_id: int, job_id: int, amount: int) -> None:
    """Write the charge for a job (call inside the job's own insert transaction)."""
    conn = await session.connection()
    await conn.execute(
        _Stmt.charge, {"q_guild": guild_id, "q_user": user_id, "q_job": job_id, "q_amount": -abs(amount)}
    )


async def _charged(session: AsyncSession, job_id: int) -> LedgerEntry | None:
    return (
        await session.execute(
            select(LedgerEntry).where(LedgerEntry.job_id == job_id, LedgerEntry.kind == LedgerKind.CHARGE)
        )
    ).scalar_one_or_none()


async def _give_back(
    session: AsyncSession, charged: LedgerEntry, kind: LedgerKind, amount: int, reason: str | None
) -> bool:
    """Insert the job's one row of ``kind`` (a no-op when it exists already); True if it was written."""
    stmt = (
        dialect_insert(session)(LedgerEntry)
        .values(
            guild_id=charged.guild_id,
            user_id=charged.user_id,
            job_id=charged.job_id,
            kind=kind.value,
            amount=amount,
            window_at=charged.window_at,
            reason=reason,
            created_at=db_now(),
        )
        .on_conflict_do_nothing(index_elements=["job_id", "kind"])
    )
    result = await session.execute(stmt)
    return (result.rowcount or 0) > 0


async def refund(session: AsyncSession, job_id: int, *, reason: str | None = None) -> bool:
    """Give back a job's charge, exactly once (less what a partial refund already gave back).

    Returns False if it was refunded already (or never charged, or nothing is left to give back).
    """
    charged = await _charged(session, job_id)
    if charged is None:
        return False
    already = (
        await session.execute(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                LedgerEntry.job_id == job_id, LedgerEntry.kind == LedgerKind.PARTIAL_REFUND
            )
        )
    ).scalar_one()
    left = -charged.amount - int(already)
    if left <= 0:
        return False
    return await _give_back(session, charged, LedgerKind.REFUND, left, reason)


async def refund_part(
    session: AsyncSession, job_id: int, missing: int, of: int, *, reason: str | None = None
) -> int:
    """Give back the share of a job's charge for ``missing`` of its ``of`` videos, once.

    Returns the credits given back (0 if already done, never charged, or the share rounds to nothing).
    Call before any full ``refund`` of the job: that one then gives back only the rest.
    """
    charged = await _charged(session, job_id)
    if charged is None or missing <= 0 or of <= 0:
        return 0
    amount = -charged.amount * min(missing, of) // of
    if amount <= 0 or not await _give_back(session, charged, LedgerKind.PARTIAL_REFUND, amount, reason):
        return 0
    return amount


async def set_limit(
    session: AsyncSession,
    guild_id: int,
    user_id: int,
    limit: int | None,
    *,
    actor_id: int,
    reason: str | None = None,
) -> None:
    """A moderator sets (or with None clears) a member's personal limit."""
    if limit is not None and limit < 0:
        raise ValueError("limit must be 0 or more")
    account = await lock_account(session, guild_id, user_id)
    old = account.limit_override
    account.limit_override = limit
    account.updated_at = db_now()  # type: ignore[assignment]
    await audit(session, guild_id, actor_id, "quota.set", user_id, {"old": old, "new": limit}, reason)


async def grant(
    session: AsyncSession,
    guild_id: int,
    user_id: int,
    credits: int,
    *,
    actor_id: int,
    reason: str | None = None,
) -> None:
    """A moderator grants one-off credits, valid for one window."""
    if credits <= 0:
        raise ValueError("credits must be positive")
    await lock_account(session, guild_id, user_id)
    session.add(
        LedgerEntry(
            guild_id=guild_id,
            user_id=user_id,
            job_id=None,
            kind=LedgerKind.GRANT.value,
            amount=credits,
            window_at=db_now(),
            actor_id=actor_id,
            reason=reason,
            created_at=db_now(),
        )
    )
    await audit(session, guild_id, actor_id, "quota.grant", user_id, {"credits": credits}, reason)


async def reset(
    session: AsyncSession, guild_id: int, user_id: int, *, actor_id: int, reason: str | None = None
) -> None:
    """A moderator gives a member a fresh start: usage and grants so far stop counting, override cleared."""
    account = await lock_account(session, guild_id, user_id)
    old = account.limit_override
    account.limit_override = None
    account.reset_at = db_now()  # type: ignore[assignment]
    account.updated_at = db_now()  # type: ignore[assignment]
    await audit(session, guild_id, actor_id, "quota.reset", user_id, {"old_override": old}, reason)


async def set_role_limit(
    session: AsyncSession,
    guild_id: int,
    role_id: int,
    limit: int | None,
    *,
    actor_id: int,
    reason: str | None = None,
) -> None:
    """Set (or with None remove) the limit for members with a role; the highest role limit wins."""
    from videobot.guilds import config_for_update

    await config_for_update(session, guild_id)  # the guild's configuration lock
    existing = await session.get(RoleLimit, (guild_id, role_id))
    if limit is None:
        if existing is not None:
            await session.delete(existing)
    elif existing is None:
        session.add(RoleLimit(guild_id=guild_id, role_id=role_id, limit=limit))
    else:
        existing.limit = limit
    await audit(session, guild_id, actor_id, "quota.role_limit", role_id, {"limit": limit}, reason)


async def set_guild_default(
    session: AsyncSession, guild_id: int, limit: int | None, *, actor_id: int, reason: str | None = None
) -> None:
    """Set (or with None clear) the guild's default limit."""
    from videobot.guilds import config_for_update

    config = await config_for_update(session, guild_id)
    config.default_limit = limit
    config.updated_at = db_now()  # type: ignore[assignment]
    await audit(session, guild_id, actor_id, "quota.guild_default", None, {"limit": limit}, reason)


async def ledger_sum(session: AsyncSession, guild_id: int, user_id: int) -> int:
    """Σ of all of a member's ledger rows (for audits and tests)."""
    return int(
        (
            await session.execute(
                select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                    LedgerEntry.guild_id == guild_id, LedgerEntry.user_id == user_id
                )
            )
        ).scalar_one()
    )
