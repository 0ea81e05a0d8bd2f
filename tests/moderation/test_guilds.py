"""Guild configuration service on real databases (SQLite file; PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import select

from videobot import guilds
from videobot.db import Database
from videobot.errors import ChannelNotAllowed, PromptRejected
from videobot.guilds import InvalidConfig
from videobot.models import GuildConfig, ModAction

GUILD = 4242
MOD = 77
ALLOWED = 1001
OTHER = 1002


async def add_blocks(db: Database, *patterns: str) -> guilds.GuildSettingsView:
    async with db.transaction() as s:
        for p in patterns:
            await guilds.add_block(s, GUILD, p, actor_id=MOD, reason="test")
    async with db.sessionmaker() as s:
        return await guilds.get_config(s, GUILD)


async def audit(db: Database) -> list[ModAction]:
    async with db.sessionmaker() as s:
        return list((await s.execute(select(ModAction).order_by(ModAction.id))).scalars())


def refused(view: guilds.GuildSettingsView, prompt: str) -> bool:
    try:
        guilds.check_request(view, ALLOWED, prompt)
    except PromptRejected as exc:
        assert str(exc) == guilds.PROMPT_REJECTED_MESSAGE
        return True
    return False


async def test_defaults_when_guild_has_no_row(db: Database) -> None:
    async with db.sessionmaker() as s:
        view = await guilds.get_config(s, GUILD)
    assert view == guilds.GuildSettingsView(guild_id=GUILD)
    assert view.default_limit is None and view.upload_limit_bytes is None
    guilds.check_request(view, OTHER, "anything at all")  # no channels listed: allowed everywhere


async def test_channel_allow_and_deny(db: Database) -> None:
    async with db.transaction() as s:
        assert await guilds.add_allowed_channel(s, GUILD, ALLOWED, actor_id=MOD, reason="video channel")
        assert not await guilds.add_allowed_channel(s, GUILD, ALLOWED, actor_id=MOD)
        assert await guilds.add_allowed_channel(s, GUILD, 1003, actor_id=MOD)
    async with db.sessionmaker() as s:
        view = await guilds.get_config(s, GUILD)
    assert view.allowed_channel_ids == (ALLOWED, 1003)
    guilds.check_request(view, ALLOWED, "a fox")
    with pytest.raises(ChannelNotAllowed) as err:
        guilds.check_request(view, OTHER, "a fox")
    # Tells the member where to go instead, as clickable channel mentions.
    assert f"<#{ALLOWED}>" in str(err.value) and "<#1003>" in str(err.value)
    # A thread inside an allowed channel counts as that channel.
    guilds.check_request(view, 999_999, "a fox", parent_id=ALLOWED)

    async with db.transaction() as s:
        assert await guilds.remove_allowed_channel(s, GUILD, 1003, actor_id=MOD)
        assert not await guilds.remove_allowed_channel(s, GUILD, 1003, actor_id=MOD)
    async with db.sessionmaker() as s:
        assert (await guilds.get_config(s, GUILD)).allowed_channel_ids == (ALLOWED,)
    async with db.transaction() as s:
        assert await guilds.set_allowed_channels(s, GUILD, [], actor_id=MOD, reason="open again") == ()
    async with db.sessionmaker() as s:
        view = await guilds.get_config(s, GUILD)
    guilds.check_request(view, OTHER, "a fox")

    actions = [(a.action, a.target_id, a.actor_id, a.reason) for a in await audit(db)]
    assert actions == [
        ("config.channel_allow", ALLOWED, MOD, "video channel"),
        ("config.channel_allow", 1003, MOD, None),
        ("config.channel_remove", 1003, MOD, None),
        ("config.channels", None, MOD, "open again"),
    ]


async def test_blocked_word_in_any_case_and_disguise(db: Database) -> None:
    view = await add_blocks(db, "spam")
    for prompt in [
        "a can of SPAM on a table",
        "Spam!",
        "a can of \u0455\u0440\u0430\u043c",  # Cyrillic ѕ р а м
        "\u0405\u0420\u0391\u039c in the sky",  # Cyrillic Ѕ Р, Greek Α Μ
        "s\u200bp\u200da\u2060m",  # zero-width space / joiner / word joiner
        "s\u00adpam",  # soft hyphen
        "\uff53\uff50\uff41\uff4d",  # fullwidth
        "spa\u0301m",  # combining accent
        "\U0001d42c\U0001d429\U0001d41a\U0001d426",  # mathematical bold
        "5p4m",  # leetspeak
    ]:
        assert refused(view, prompt), prompt
    for prompt in ["a spammer", "spamming", "the spa and the ham", "5 apples and 4 pears"]:
        assert not refused(view, prompt), prompt


async def test_whole_words_only_no_false_positive_on_substrings(db: Database) -> None:
    view = await add_blocks(db, "ass")
    assert refused(view, "a wild ass in the desert")
    assert refused(view, "\u0430ss")  # Cyrillic а
    assert refused(view, "a55 hole")
    for prompt in ["a class of students", "assassin", "brass band", "455 tails", "Passau at night"]:
        assert not refused(view, prompt), prompt


async def test_multi_word_entries_match_with_any_spacing(db: Database) -> None:
    view = await add_blocks(db, "red  panda")
    assert refused(view, "a RED panda eating")
    assert refused(view, "red\n\tpanda")
    assert not refused(view, "a red pandas")  # whole words
    assert not refused(view, "red and a panda")


async def test_regex_entries(db: Database) -> None:
    view = await add_blocks(db, r"re:\bgore\w*", r"re:b[l1]ood(y|ied)?\b")
    assert refused(view, "GOREFEST 3000")
    assert refused(view, "a g\u043ere scene")  # Cyrillic о: regexes see the folded prompt too
    assert refused(view, "b1ood on the snow")
    assert refused(view, "a bloody mess")
    assert not refused(view, "a gorilla and a goose")
    assert not refused(view, "bloodhound")


async def test_regex_written_in_another_script_matches_that_script(db: Database) -> None:
    view = await add_blocks(db, "re:пиво")  # has no Latin look-alike reading
    assert refused(view, "холодное ПИВО")
    assert not refused(view, "a pint of beer")


async def test_invalid_or_dangerous_patterns_are_refused_politely(db: Database) -> None:
    cases = {
        "re:(unclosed": "not valid",
        "re:[z-a]": "not valid",
        "re:x?": "empty prompt",
        "re:": "empty",
        "   ": "empty",
        "\u200b\u200d": "no letters",
        "re:" + "a" * 250: "too long",
        # Exponential backtracking, caught by the test run when the pattern is added.
        "re:(a|aa)+$": "too slow",
        "re:(x+x+)+y": "too slow",
    }
    for pattern, why in cases.items():
        async with db.transaction() as s:
            with pytest.raises(InvalidConfig) as err:
                await guilds.add_block(s, GUILD, pattern, actor_id=MOD)
        assert why in str(err.value), (pattern, str(err.value))
        assert "Traceback" not in str(err.value)
    async with db.sessionmaker() as s:
        assert (await guilds.get_config(s, GUILD)).blocklist == ()
    assert await audit(db) == []  # nothing changed, nothing audited


async def test_pattern_checks_run_off_the_event_loop_two_at_a_time(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checking a regular expression probes it for up to ~0.5 s: never on the event loop (every member's
    # command would wait meanwhile), and at most two at once however many moderators add patterns.
    real, lock = guilds.validate_pattern, threading.Lock()
    threads: set[threading.Thread] = set()
    running = most = 0

    def watched(pattern: str) -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            threads.add(threading.current_thread())
        try:
            return real(pattern)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(guilds, "validate_pattern", watched)
    slow = [f"re:(x+x+)+y{i}" for i in range(6)]
    results = await asyncio.gather(*(guilds.check_pattern(p) for p in slow), return_exceptions=True)
    assert all(isinstance(r, InvalidConfig) and "too slow" in str(r) for r in results), results
    view = await add_blocks(db, r"re:\bgore\w*")
    assert view.blocklist == (r"re:\bgore\w*",)
    assert threading.current_thread() not in threads and threads
    assert most == 2  # six checks, two threads


async def test_slow_stored_pattern_fails_closed_within_the_budget(db: Database) -> None:
    # Written straight into the row (an older version, or a hand edit): the check still ends quickly.
    async with db.transaction() as s:
        s.add(GuildConfig(guild_id=GUILD, allowed_channel_ids=[], blocklist=["re:(a|aa)+$"], updated_at=0))
    async with db.sessionmaker() as s:
        view = await guilds.get_config(s, GUILD)
    start = time.monotonic()
    assert refused(view, "a" * 1500 + "!")
    assert time.monotonic() - start < 2 * guilds.CHECK_BUDGET_SECONDS + 0.5
    assert not refused(view, "a short fox")


async def test_long_prompt_is_refused_before_matching(db: Database) -> None:
    view = await add_blocks(db, "spam")
    with pytest.raises(PromptRejected, match="too long"):
        guilds.check_request(view, ALLOWED, "x" * (guilds.MAX_PROMPT_CHARS + 1))


async def test_duplicates_and_removal_by_equivalent_spelling(db: Database) -> None:
    async with db.transaction() as s:
        assert await guilds.add_block(s, GUILD, "  Spam ", actor_id=MOD, reason="r1")
        assert not await guilds.add_block(s, GUILD, "SP\u0410M", actor_id=MOD)  # same word, Cyrillic А
        assert await guilds.add_block(s, GUILD, "re:spam", actor_id=MOD)
    async with db.sessionmaker() as s:
        assert (await guilds.get_config(s, GUILD)).blocklist == ("Spam", "re:spam")
    async with db.transaction() as s:
        assert await guilds.remove_block(s, GUILD, "spam", actor_id=MOD, reason="too strict")
        assert not await guilds.remove_block(s, GUILD, "spam", actor_id=MOD)
    async with db.sessionmaker() as s:
        view = await guilds.get_config(s, GUILD)
    assert view.blocklist == ("re:spam",)
    rows = await audit(db)
    assert [(r.action, r.details, r.actor_id, r.reason) for r in rows] == [
        ("config.block_add", {"pattern": "Spam"}, MOD, "r1"),
        ("config.block_add", {"pattern": "re:spam"}, MOD, None),
        ("config.block_remove", {"patterns": ["Spam"]}, MOD, "too strict"),
    ]
    assert all(r.guild_id == GUILD and r.created_at > 0 for r in rows)


async def test_moderator_role_and_upload_limit(db: Database) -> None:
    async with db.transaction() as s:
        await guilds.set_moderator_role(s, GUILD, 555, actor_id=MOD, reason="mods team")
        await guilds.remember_upload_limit(s, GUILD, 50 * 1024 * 1024)
    async with db.sessionmaker() as s:
        view = await guilds.get_config(s, GUILD)
    assert view.moderator_role_id == 555 and view.upload_limit_bytes == 50 * 1024 * 1024
    async with db.transaction() as s:
        await guilds.set_moderator_role(s, GUILD, None, actor_id=MOD)
        await guilds.remember_upload_limit(s, GUILD, 50 * 1024 * 1024)  # unchanged: no write
        await guilds.remember_upload_limit(s, GUILD, 0)  # nonsense: ignored
    async with db.sessionmaker() as s:
        view = await guilds.get_config(s, GUILD)
    assert view.moderator_role_id is None and view.upload_limit_bytes == 50 * 1024 * 1024
    rows = await audit(db)
    # The upload limit is what Discord told us, not a moderator action: only the role changes are audited.
    assert [(r.action, r.target_id, r.details, r.reason) for r in rows] == [
        ("config.moderator_role", 555, {"old": None, "new": 555}, "mods team"),
        ("config.moderator_role", None, {"old": 555, "new": None}, None),
    ]


async def test_config_changes_keep_other_settings(db: Database) -> None:
    from videobot import quota

    async with db.transaction() as s:
        await quota.set_guild_default(s, GUILD, 9, actor_id=MOD)
        await quota.set_role_limit(s, GUILD, 31, 3, actor_id=MOD)
        await quota.set_role_limit(s, GUILD, 32, 12, actor_id=MOD)
        await guilds.add_block(s, GUILD, "spam", actor_id=MOD)
        await guilds.add_allowed_channel(s, GUILD, ALLOWED, actor_id=MOD)
        await guilds.set_moderator_role(s, GUILD, 555, actor_id=MOD)
    async with db.sessionmaker() as s:
        view = await guilds.get_config(s, GUILD)
        limits = await guilds.role_limits(s, GUILD)
    assert view == guilds.GuildSettingsView(
        guild_id=GUILD,
        default_limit=9,
        moderator_role_id=555,
        allowed_channel_ids=(ALLOWED,),
        blocklist=("spam",),
        upload_limit_bytes=None,
    )
    assert limits == [(32, 12), (31, 3)]
