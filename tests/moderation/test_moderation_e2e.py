"""/quota and /videoconfig end to end: the real bot process against the fake Discord (no worker).

The fake delivers a moderator command from an ordinary member exactly as Discord does once a
server admin has opened the command to everyone (``default_member_permissions`` is only a
default): the bot's run-time check is what refuses it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.checks import CONFIG_REFUSAL, QUOTA_REFUSAL
from tests.e2e.harness import BotHarness, assert_schema_clean, register, unregister
from tests.fakediscord.world import MANAGE_GUILD
from videobot.guilds import PROMPT_REJECTED_MESSAGE
from videobot.models import ModAction

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

QUOTA = 3


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def h(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[BotHarness]:
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-moderation"),
        db=request.param,
        worker=False,
        bot_env={"VIDEOBOT_DEFAULT_QUOTA": str(QUOTA)},
        extra_members=3,
    ) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)


async def answer(h: BotHarness, user_id: int, name: str, sub: str | None = None, **options: Any) -> str:
    """Run a slash command; return the text its ephemeral deferred response became."""
    interaction = await h.slash(user_id, name, sub, **options)
    body = await interaction.acknowledged(3)
    assert body["data"]["flags"] & 64, "acknowledged ephemerally"
    await h.wait_for(
        lambda: (interaction.original or {}).get("content"), 15, f"answer to /{name} {sub or ''}"
    )
    message = interaction.original
    assert message is not None and message["ephemeral"]
    assert message["mentions"] == [], "replies show mentions but ping nobody"
    return message["content"]


async def mod_actions(h: BotHarness) -> list[ModAction]:
    assert h.db is not None
    async with h.db.sessionmaker() as s:
        return list((await s.execute(select(ModAction).order_by(ModAction.id))).scalars())


async def test_commands_are_registered_with_the_documented_names(h: BotHarness) -> None:
    cmds = {c["name"]: c for c in h.fd.commands(h.guild_id)}
    quota = cmds["quota"]
    subs = {o["name"]: [p["name"] for p in o.get("options", [])] for o in quota["options"]}
    assert subs == {
        "show": ["user"],
        "set": ["user", "limit", "reason"],
        "grant": ["user", "credits", "reason"],
        "reset": ["user", "reason"],
    }
    # /quota show is for everyone, so /quota carries no default permissions (Discord has none per
    # subcommand); /videoconfig is hidden from non-moderators by default.
    assert quota["default_member_permissions"] is None
    assert int(cmds["videoconfig"]["default_member_permissions"]) == MANAGE_GUILD
    assert {o["name"] for o in cmds["videoconfig"]["options"]} == {
        "show",
        "default-quota",
        "role-limit",
        "channel-allow",
        "channel-remove",
        "channel-clear",
        "block-add",
        "block-remove",
        "moderator-role",
        "language",
        "safety",
        "review-channel",
        "enhance",
        "style",
    }


async def test_quota_show_for_yourself(h: BotHarness) -> None:
    text = await answer(h, h.member_id, "quota", "show")
    assert "Your video credits" in text
    assert f"**{QUOTA}** left of {QUOTA}" in text
    assert f"Limit: {QUOTA} per 24 hours (the bot's default)" in text
    assert "Used in the last 24 hours: 0" in text


async def test_moderator_commands_refused_for_an_ordinary_member(h: BotHarness) -> None:
    alice, bob = h.member_id, h.other_id
    before = await h.ledger(bob)
    refusals = [
        (("quota", "grant"), {"user": bob, "credits": 5}, QUOTA_REFUSAL),
        (("quota", "set"), {"user": bob, "limit": 100}, QUOTA_REFUSAL),
        (("quota", "reset"), {"user": alice}, QUOTA_REFUSAL),
        (("videoconfig", "block-add"), {"pattern": "fox"}, CONFIG_REFUSAL),
        (("videoconfig", "moderator-role"), {}, CONFIG_REFUSAL),
        (("videoconfig", "show"), {}, CONFIG_REFUSAL),
    ]
    for (name, sub), options, expected in refusals:
        text = await answer(h, alice, name, sub, **options)
        assert text == expected, (name, sub, text)
    text = await answer(h, alice, "quota", "show", user=bob)
    assert "Only moderators" in text and "/quota show without a user" in text
    assert await h.ledger(bob) == before
    assert await mod_actions(h) == []
    assert h.messages() == [], "refusals are private"


async def test_grant_then_show_reflects_it_and_is_audited(h: BotHarness) -> None:
    alice = h.members[0]
    text = await answer(h, h.mod_id, "quota", "grant", user=alice, credits=2, reason="contest winner")
    assert f"<@{alice}>" in text and "**2** extra" in text and "contest winner" in text
    assert f"they have **{QUOTA + 2}** left" in text

    text = await answer(h, alice, "quota", "show")
    assert f"**{QUOTA + 2}** left of {QUOTA + 2}" in text
    assert "Granted by moderators in this window: +2" in text

    grants = [e for e in await h.ledger(alice) if e.kind == "grant"]
    assert [(g.amount, g.actor_id, g.reason) for g in grants] == [(2, h.mod_id, "contest winner")]
    audit = [a for a in await mod_actions(h) if a.target_id == alice]
    assert [(a.action, a.actor_id, a.reason, a.details) for a in audit] == [
        ("quota.grant", h.mod_id, "contest winner", {"credits": 2})
    ]


async def test_moderator_role_members_can_moderate(h: BotHarness) -> None:
    carol, target = h.rolemod_id, h.members[1]
    # Without a configured moderator role, carol's role means nothing.
    assert await answer(h, carol, "quota", "set", user=target, limit=1) == QUOTA_REFUSAL

    text = await answer(h, h.mod_id, "videoconfig", "moderator-role", role=h.moderator_role_id)
    assert f"<@&{h.moderator_role_id}>" in text
    text = await answer(h, carol, "quota", "set", user=target, limit=1, reason="spamming")
    assert f"<@{target}>'s limit is now **1**" in text

    text = await answer(h, carol, "quota", "show", user=target)
    assert f"Video credits for <@{target}>" in text
    assert "Limit: 1 per 24 hours (a personal limit set by a moderator)" in text

    text = await answer(h, carol, "quota", "reset", user=target)
    assert "Fresh start" in text and f"**{QUOTA}** of {QUOTA}" in text

    audit = [(a.action, a.actor_id, a.target_id, a.reason) for a in await mod_actions(h)]
    assert ("quota.set", carol, target, "spamming") in audit
    assert ("quota.reset", carol, target, None) in audit
    assert ("config.moderator_role", h.mod_id, h.moderator_role_id, None) in audit

    # Clearing the role takes effect at once: the check reads the configuration on every use.
    await answer(h, h.mod_id, "videoconfig", "moderator-role")
    assert await answer(h, carol, "quota", "grant", user=target, credits=1) == QUOTA_REFUSAL


async def test_blocked_word_in_look_alike_letters_is_refused_and_charges_nothing(h: BotHarness) -> None:
    user = h.members[2]
    text = await answer(h, h.mod_id, "videoconfig", "block-add", pattern="kraken", reason="sea monsters")
    assert "Blocked `kraken`" in text

    shown = await answer(h, h.mod_id, "videoconfig", "show")
    assert "Blocklist: 1 entry" in shown and "`kraken`" in shown

    ledger_before = await h.ledger(user)
    public_before = len(h.messages())
    # Cyrillic к, а, е and a zero-width space: looks like "kraken" to a reader.
    disguised = "a giant \u043ar\u0430\u200bk\u0435n attacking a ship"
    text = await answer(h, user, "video", prompt=disguised)
    assert text == PROMPT_REJECTED_MESSAGE
    assert "kraken" not in text.lower()
    assert await h.ledger(user) == ledger_before
    assert await h.jobs(user) == []
    assert len(h.messages()) == public_before

    # The same member with an innocent prompt is queued and charged: the refusal was the blocklist.
    text = await answer(h, user, "video", prompt="a giant squid attacking a ship")
    assert re.match(r"Queued as job #\d+", text), text
    assert [e.kind for e in await h.ledger(user)] == ["charge"]

    text = await answer(h, h.mod_id, "videoconfig", "block-remove", pattern="KRAKEN")
    assert "no longer blocked" in text
    audit = [
        (a.action, a.actor_id, a.reason) for a in await mod_actions(h) if a.action.startswith("config.block")
    ]
    assert audit == [("config.block_add", h.mod_id, "sea monsters"), ("config.block_remove", h.mod_id, None)]


async def test_channel_allow_list_and_invalid_regex(h: BotHarness) -> None:
    other_channel = h.fd.add_channel(h.guild_id, "elsewhere")
    text = await answer(h, h.mod_id, "videoconfig", "channel-allow", channel=other_channel)
    assert f"<#{other_channel}> is now allowed" in text
    text = await answer(h, h.member_id, "video", prompt="a lighthouse at dusk")
    assert "can't be made in this channel" in text and f"<#{other_channel}>" in text
    text = await answer(h, h.mod_id, "videoconfig", "channel-clear")
    assert "every channel" in text

    text = await answer(h, h.mod_id, "videoconfig", "block-add", pattern="re:(a|aa)+$")
    assert "too slow" in text
    text = await answer(h, h.mod_id, "videoconfig", "block-add", pattern="re:([unclosed")
    assert "not valid" in text and "Traceback" not in text


async def test_default_quota_and_role_limits(h: BotHarness) -> None:
    alice, carol, mods = h.member_id, h.rolemod_id, h.moderator_role_id
    assert "**4** videos per member" in await answer(h, h.mod_id, "videoconfig", "default-quota", limit=4)
    assert "Limit: 4 per 24 hours (this server's default)" in await answer(h, alice, "quota", "show")

    text = await answer(h, h.mod_id, "videoconfig", "role-limit", role=mods, limit=10, reason="trusted")
    assert f"<@&{mods}>" in text and "**10**" in text
    assert "Limit: 10 per 24 hours (a role limit)" in await answer(h, carol, "quota", "show")
    shown = await answer(h, h.mod_id, "videoconfig", "show")
    assert "Default quota: 4 per member" in shown and f"<@&{mods}> 10" in shown

    assert "no longer has its own limit" in await answer(h, h.mod_id, "videoconfig", "role-limit", role=mods)
    assert "back to the bot's default" in await answer(h, h.mod_id, "videoconfig", "default-quota")
    assert f"Limit: {QUOTA} per 24 hours (the bot's default)" in await answer(h, carol, "quota", "show")
    audit = [(a.action, a.target_id, a.details, a.reason) for a in await mod_actions(h)]
    assert ("quota.role_limit", mods, {"limit": 10}, "trusted") in audit
    assert ("quota.guild_default", None, {"limit": None}, None) in audit
