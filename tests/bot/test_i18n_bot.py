"""The bot's side of the languages: the command translator, who reads which language, the replies.

The commands are built from the real cogs (no Discord connection): their translated payloads are
what ``tree.sync`` sends, checked against Discord's OpenAPI description when it is present.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import discord
import pytest
import pytest_asyncio
from discord.ext import commands

from bot import catalogs
from bot.cogs.config import LANGUAGE_CHOICES, format_config
from bot.cogs.jobs import format_queue
from bot.cogs.quota import format_status
from bot.i18n import CatalogTranslator, GuildLanguages
from bot.ui.texts import cancel_answer
from tests.fakediscord.schema import load_validator
from videobot import guilds, i18n
from videobot.db import Database
from videobot.models import Job
from videobot.quota import QuotaStatus
from videobot.settings import Settings

#: Discord's codes for the languages we ship (English is the base text, not a localization).
DISCORD_CODES = {"it", "es-ES", "es-419", "fr", "de", "pt-BR", "ja"}
LANGUAGE_NAMES = {c.name for c in LANGUAGE_CHOICES if c.value != "default"}


@pytest_asyncio.fixture
async def payloads() -> AsyncIterator[list[dict[str, Any]]]:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.none(), help_command=None)
    bot.settings = Settings(_env_file=None)  # type: ignore[attr-defined]  # the defaults, as VideoBot carries them
    for cls in catalogs.cog_classes():
        await bot.add_cog(cls(bot))
    await bot.tree.set_translator(CatalogTranslator())
    translator = bot.tree.translator
    assert translator is not None
    yield [await c.get_translated_payload(bot.tree, translator) for c in bot.tree.get_commands()]
    await bot.close()


def walk(payload: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every command, subcommand and option of a payload, with a readable path."""
    here = f"{path} {payload['name']}".strip()
    yield here, payload
    for option in payload.get("options", []):
        yield from walk(option, here)


async def test_every_description_and_choice_is_localized_for_every_supported_locale(
    payloads: list[dict[str, Any]],
) -> None:
    names = {p["name"] for p in payloads}
    assert {"video", "queue", "cancel", "quota", "videoconfig"} <= names
    checked = 0
    for payload in payloads:
        if payload.get("type", 1) != 1:
            # A message command (Apps → Animate) has a name and no description; its name is fixed.
            assert payload.get("description", "") == "" and not payload.get("name_localizations")
            continue
        for path, item in walk(payload):
            english = item["description"]
            localized = item.get("description_localizations") or {}
            assert set(localized) == DISCORD_CODES, (path, sorted(localized))
            for code, text in localized.items():
                assert text == i18n.t(code, english) != english, (path, code)
                assert 1 <= len(text) <= 100, (path, code, len(text))
            if item.get("type", 1) in (1, 2):
                # Command and subcommand names are the product's words, the same in every language.
                assert not item.get("name_localizations"), path
            else:
                # Options are named in the member's language, by Discord's rule for names.
                names = item.get("name_localizations") or {}
                assert set(names) == DISCORD_CODES, (path, sorted(names))
                for code, name in names.items():
                    assert name == i18n.lookup(code, item["name"], i18n.OPTION_NAME), (path, code)
                    assert re.fullmatch(r"[-_\w]{1,32}", name) and name == name.lower(), (path, name)
            for choice in item.get("choices", []):
                if choice["name"] in LANGUAGE_NAMES:
                    continue  # a language is named in its own language for everyone
                names = choice.get("name_localizations") or {}
                assert set(names) == DISCORD_CODES, (path, choice["name"])
                assert all(1 <= len(n) <= 100 for n in names.values())
            checked += 1
    assert checked > 40


async def test_the_command_payloads_validate_against_discords_openapi(payloads: list[dict[str, Any]]) -> None:
    validator = load_validator()
    if validator is None:
        pytest.skip("Discord's OpenAPI description is not present (../shared/discord-openapi.json)")
    assert validator.validate("PUT", "/applications/1/commands", payloads) == []
    assert validator.validate("PUT", "/applications/1/guilds/2/commands", payloads) == []


async def test_no_localization_for_english_or_unsupported_locales() -> None:
    translator = CatalogTranslator()
    text = discord.app_commands.locale_str("Make a short video from a text prompt (and a picture)")
    ctx = discord.app_commands.TranslationContext(
        discord.app_commands.TranslationContextLocation.command_description, None
    )
    assert (
        await translator.translate(text, discord.Locale.italian, ctx)
        == "Crea un breve video da un prompt di testo (e da un'immagine)"
    )
    for locale in (discord.Locale.american_english, discord.Locale.british_english, discord.Locale.korean):
        assert await translator.translate(text, locale, ctx) is None
    name = discord.app_commands.TranslationContext(
        discord.app_commands.TranslationContextLocation.command_name, None
    )
    assert (
        await translator.translate(discord.app_commands.locale_str("video"), discord.Locale.italian, name)
        is None
    )


# ---------------------------------------------------------------------------------------- who reads what
class StubBot:
    def __init__(self, db: Database, preferred: dict[int, str]) -> None:
        self.db = db
        self.preferred = preferred

    def get_guild(self, guild_id: int) -> Any:
        if guild_id not in self.preferred:
            return None
        return SimpleNamespace(preferred_locale=discord.Locale(self.preferred[guild_id]))


async def test_public_messages_follow_the_configured_language_then_discords(db: Database) -> None:
    languages = GuildLanguages(StubBot(db, {1: "ja", 2: "pt-BR"}))
    assert await languages.locale(1) == "ja"  # Discord's preferred locale, from the gateway cache
    assert await languages.locale(2) == "pt-BR"
    assert await languages.locale(3) == "en"  # unknown guild: English
    interaction = SimpleNamespace(guild_locale=discord.Locale.german, locale=discord.Locale.french)
    assert await languages.locale(3, interaction) == "de"  # the interaction's guild_locale
    async with db.transaction() as s:
        await guilds.set_language(s, 1, "it", actor_id=9)
    languages.forget(1)
    assert await languages.locale(1) == "it"  # /videoconfig language wins
    assert await languages.locale(1, interaction) == "it"
    async with db.transaction() as s:
        await guilds.set_language(s, 1, None, actor_id=9)
    languages.forget(1)
    assert await languages.locale(1) == "ja"
    async with db.transaction() as s:
        with pytest.raises(guilds.InvalidConfig):
            await guilds.set_language(s, 1, "xx", actor_id=9)


# ---------------------------------------------------------------------------------------- replies
def job(job_id: int, prompt: str, status: str = "queued", **fields: Any) -> Job:
    return Job(id=job_id, user_id=5, guild_id=1, status=status, params={"prompt": prompt}, **fields)


@pytest.mark.parametrize("locale", ["en-US", *sorted(DISCORD_CODES), "ko"])
def test_prompts_stay_escaped_in_every_language(locale: str) -> None:
    nasty = "@everyone look **here** <@123456789012345678> `code` ||spoiler||"
    text = format_queue(
        locale, 2, [(job(7, nasty), 1), (job(8, "_fox_", "running", progress_step=3, progress_total=8), 0)]
    )
    assert "@everyone" not in text.replace("@\u200beveryone", "")
    assert "\\*\\*here\\*\\*" in text and "\\_fox\\_" in text and "\\|\\|spoiler\\|\\|" in text
    assert "<@123456789012345678>" not in text
    assert "#7" in text and "#8" in text and "3/8" in text


def test_replies_in_the_members_language() -> None:
    st = QuotaStatus(
        limit=5,
        source="default",
        used=2,
        granted=0,
        balance=3,
        window_seconds=86400,
        now=0,
        next_credit_at=3600,
    )
    assert format_status("it", 1, st, own=True).splitlines() == [
        "**I tuoi crediti video**",
        "Rimasti: **3** su 5",
        "Limite: 5 ogni 24 ore (il valore predefinito del bot)",
        "Usati in questo periodo (24 ore): 2",
        "Prossimo credito restituito: <t:3600:R>",
    ]
    assert format_status("ja", 1, st, own=False).splitlines()[0] == "**<@1> の動画クレジット**"
    assert cancel_answer("es-419", "cancelled", job(4, "x", "cancelled"), 5) == (
        "Trabajo #4 cancelado. Se ha devuelto el crédito."
    )
    assert "nichts abzubrechen" in cancel_answer("de", "finished", job(4, "x", "delivered"), 5)
    view = guilds.GuildSettingsView(guild_id=1, blocklist=("a", "b"))
    shown = format_config("fr", view, [], setting_default=5, discord_locale="ja")
    assert "Langue des messages publics : la langue du serveur (日本語)" in shown
    assert "Liste de blocage : 2 entrées" in shown
