"""Members and moderators read the bot in their own language: the real bot process, the fake Discord.

The fake sends each interaction with the member's client language (``locale``) and the server's
(``guild_locale``), as Discord does; every request the bot makes is checked against Discord's
OpenAPI description at the end (when the file is present).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.checks import QUOTA_REFUSAL
from tests.e2e.harness import BotHarness, assert_schema_clean, register, unregister
from videobot.i18n import t
from videobot.models import GuildConfig, ModAction

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

QUOTA = 3
LOCALIZED = {"it", "es-ES", "es-419", "fr", "de", "pt-BR", "ja"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-i18n"), worker=False, bot_env={"VIDEOBOT_DEFAULT_QUOTA": str(QUOTA)}
    ) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)


async def answer(
    h: BotHarness, user_id: int, locale: str, name: str, sub: str | None = None, **options: Any
) -> str:
    """Run a slash command as a member whose Discord is in ``locale``; return the ephemeral answer."""
    interaction = await h.fd.slash(
        h.guild_id, h.channel_id, user_id, name, options or None, sub, locale=locale
    )
    body = await interaction.acknowledged(3)
    assert body["data"]["flags"] & 64, "acknowledged ephemerally"
    await h.wait_for(
        lambda: (interaction.original or {}).get("content"), 15, f"answer to /{name} {sub or ''}"
    )
    message = interaction.original
    assert message is not None and message["ephemeral"]
    assert message["mentions"] == []
    return message["content"]


async def test_the_registered_commands_carry_every_supported_locale(h: BotHarness) -> None:
    cmds = {c["name"]: c for c in h.fd.commands(h.guild_id)}
    video = cmds["video"]
    assert set(video["description_localizations"]) == LOCALIZED
    assert video["description_localizations"]["ja"] == "テキストのプロンプト（と画像）から短い動画を作成"
    prompt = next(o for o in video["options"] if o["name"] == "prompt")
    assert prompt["description_localizations"]["pt-BR"].startswith("O que o vídeo mostra")
    # Options carry their names in each language; members' interactions still use the English ones.
    job = next(o for o in cmds["cancel"]["options"] if o["name"] == "job")
    assert job["name_localizations"]["it"] == "lavoro" and job["name_localizations"]["ja"] == "ジョブ"
    ratio = next(o for o in video["options"] if o["name"] == "aspect_ratio")
    assert {c["name_localizations"]["de"] for c in ratio["choices"]} == {
        "16:9 Querformat",
        "9:16 Hochformat",
        "1:1 quadratisch",
    }
    language = next(o for o in cmds["videoconfig"]["options"] if o["name"] == "language")
    choices = {c["value"]: c for c in language["options"][0]["choices"]}
    assert set(choices) == {"default", "en", "it", "es", "fr", "de", "pt_BR", "ja"}
    assert choices["default"]["name_localizations"]["it"].startswith("Predefinita del server")
    assert choices["ja"]["name"] == "日本語"
    for cmd in cmds.values():
        assert not cmd.get("name_localizations"), "command names stay as documented"
        if cmd.get("type", 1) != 1:
            continue  # Apps → Animate: a message command has no description to localize
        assert set(cmd.get("description_localizations") or {}) == LOCALIZED, cmd["name"]


@pytest.mark.parametrize(
    ("locale", "title", "limit_line"),
    [
        ("it", "**I tuoi crediti video**", f"Limite: {QUOTA} ogni 24 ore (il valore predefinito del bot)"),
        ("ja", "**あなたの動画クレジット**", f"上限：24 時間ごとに {QUOTA}（ボットの既定値）"),
        (
            "es-419",
            "**Tus créditos de vídeo**",
            f"Límite: {QUOTA} cada 24 horas (el valor predeterminado del bot)",
        ),
        ("ko", "**Your video credits**", f"Limit: {QUOTA} per 24 hours (the bot's default)"),
    ],
)
async def test_quota_show_in_the_members_language(
    h: BotHarness, locale: str, title: str, limit_line: str
) -> None:
    lines = (await answer(h, h.member_id, locale, "quota", "show")).splitlines()
    assert lines[0] == title
    assert limit_line in lines


@pytest.mark.parametrize("locale", ["it", "ja", "fr", "pt-BR", "ko", "en-GB"])
async def test_a_refusal_in_the_members_language(h: BotHarness, locale: str) -> None:
    text = await answer(h, h.member_id, locale, "quota", "set", user=h.other_id, limit=100)
    assert text == t(locale, QUOTA_REFUSAL)
    expected_start = {
        "it": "Solo i moderatori",
        "ja": "クォータを変更できるのは",
        "fr": "Seuls les modérateurs",
        "pt-BR": "Só moderadores",
        "ko": "Only moderators",  # no Korean catalog: English
        "en-GB": "Only moderators",
    }[locale]
    assert text.startswith(expected_start), text


async def test_cancel_with_nothing_to_cancel_in_japanese_and_italian(h: BotHarness) -> None:
    assert await answer(h, h.member_id, "ja", "cancel") == (
        "待機中・生成中の動画はありません。自分のジョブは /queue で確認できます。"
    )
    assert await answer(h, h.member_id, "it", "queue") == (
        "0 video in attesa nella coda.\nNon hai video in attesa o in lavorazione. Creane uno con /video."
    )


async def guild_language(h: BotHarness) -> str | None:
    assert h.db is not None
    async with h.db.sessionmaker() as s:
        return (
            await s.execute(select(GuildConfig.language).where(GuildConfig.guild_id == h.guild_id))
        ).scalar_one_or_none()


async def test_videoconfig_language_sets_and_clears_the_servers_public_language(h: BotHarness) -> None:
    # Only moderators: the refusal itself is in the member's language.
    refused = await answer(h, h.member_id, "de", "videoconfig", "language", language="it")
    assert refused.startswith("Nur Moderatoren")
    assert await guild_language(h) is None

    text = await answer(
        h, h.mod_id, "de", "videoconfig", "language", language="it", reason="italienischer Server"
    )
    assert text == (
        "Öffentliche Nachrichten (Status, Fortschritt, Ergebnisse) sind jetzt auf Italiano. "
        "Private Antworten bleiben in der Sprache jedes Mitglieds.\nGrund: italienischer Server"
    )
    assert await guild_language(h) == "it"
    shown = await answer(h, h.mod_id, "en-US", "videoconfig", "show")
    assert "Language of public messages: Italiano" in shown.splitlines()

    guild = h.fd._guild(h.guild_id)
    guild.locale = "ja"  # the server's preferred locale in Discord (sent as guild_locale)
    try:
        text = await answer(h, h.mod_id, "en-US", "videoconfig", "language", language="default")
        assert text == (
            "Public messages (status, progress, results) now follow the server's language in Discord: 日本語."
        )
        assert await guild_language(h) is None
        shown = await answer(h, h.mod_id, "fr", "videoconfig", "show")
        assert "Langue des messages publics : la langue du serveur (日本語)" in shown.splitlines()
    finally:
        guild.locale = "en-US"

    assert h.db is not None
    async with h.db.sessionmaker() as s:
        actions = list(
            (
                await s.execute(
                    select(ModAction).where(ModAction.action == "config.language").order_by(ModAction.id)
                )
            )
            .scalars()
            .all()
        )
    assert [(a.actor_id, a.details) for a in actions] == [
        (h.mod_id, {"old": None, "new": "it"}),
        (h.mod_id, {"old": "it", "new": None}),
    ]
    assert actions[0].reason == "italienischer Server"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("it", "In questo canale non si possono creare video. Usa <#{c}>."),
        ("ja", "このチャンネルでは動画を作成できません。<#{c}> を使ってください。"),
        ("ko", "Videos can't be made in this channel. Please use <#{c}>."),
    ],
)
async def test_a_video_refused_by_the_core_is_explained_in_the_members_language(
    h: BotHarness, locale: str, expected: str
) -> None:
    other = h.fd.add_channel(h.guild_id, f"elsewhere-{locale}")
    await h.set_guild_config(allowed_channel_ids=[other])
    try:
        text = await answer(h, h.member_id, locale, "video", prompt="una volpe **nella** neve")
    finally:
        await h.set_guild_config(allowed_channel_ids=[])
    assert text == expected.format(c=other)
    assert await h.jobs(h.member_id) == [], "refused: no job, no charge"
