"""/video in the members' and the servers' languages: the real bot and worker (tiny model), the fake Discord.

Ephemeral answers (queued, refusals, forms) follow the member's client language (``locale``);
public messages (the status message, the result caption and its buttons, failure notices) follow the
server: its ``/videoconfig language`` choice, else its preferred locale in Discord, else English.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.fakediscord import Interaction
from videobot import i18n

from .harness import BotHarness, assert_schema_clean, register, unregister

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUOTA = 20


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-languages"),
        worker=True,
        extra_members=2,
        bot_env={"VIDEOBOT_DEFAULT_QUOTA": str(QUOTA)},
    ) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)


async def ask(
    h: BotHarness,
    user_id: int,
    locale: str,
    *,
    guild_id: int | None = None,
    channel_id: int | None = None,
    **options: Any,
) -> tuple[Interaction, str]:
    """``/video`` by a member whose Discord is in ``locale``; returns the interaction and its ephemeral answer."""
    interaction = await h.fd.slash(
        guild_id or h.guild_id, channel_id or h.channel_id, user_id, "video", options, locale=locale
    )
    body = await interaction.acknowledged(3)
    assert body["data"]["flags"] & 64, "acknowledged ephemerally"
    await h.wait_for(lambda: (interaction.original or {}).get("content"), 20, f"the answer in {locale}")
    assert interaction.original is not None and interaction.original["ephemeral"]
    return interaction, str(interaction.original["content"])


def job_id_in(text: str) -> int:
    found = re.search(r"#(\d+)", text)
    assert found, text
    return int(found[1])


def message_with(h: BotHarness, channel_id: int, needle: str, *, files: bool) -> dict | None:
    return next(
        (
            m
            for m in h.fd.messages(channel_id, include_ephemeral=False)
            if needle in m["content"] and bool(m["attachments"]) == files
        ),
        None,
    )


@pytest.mark.parametrize(
    ("locale", "start", "credits"),
    [
        ("it", "In coda come lavoro #", "Ti restano {n} crediti."),
        ("ja", "ジョブ #", "残りクレジット：{n}"),
        ("pt-BR", "Na fila como tarefa #", "Você tem {n} créditos restantes."),
        ("ko", "Queued as job #", "You have {n} credits left."),  # no Korean catalog: English
    ],
)
async def test_the_queued_answer_is_in_the_members_language(
    h: BotHarness, locale: str, start: str, credits: str
) -> None:
    user = h.members[0]
    used = await h.balance_used(user)
    _, text = await ask(h, user, locale, prompt=f"a paper boat on a pond ({locale})")
    assert text.startswith(start), text
    assert credits.format(n=QUOTA - used - 1) in text, text
    if locale == "ja":
        assert "としてキューに追加しました" in text
    # One at a time: a member may have only a few videos waiting.
    await h.wait_job(job_id_in(text), ("delivered", "failed"), 90)


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("it", "Il modello `nope` non è disponibile qui. Il videobot di questo server usa `{m}`"),
        ("ja", "モデル `nope` はここでは使えません。このサーバーの videobot は `{m}` を使っています。"),
        ("ko", "The model `nope` is not available here. This server's videobot runs `{m}`"),
    ],
)
async def test_a_bad_option_is_refused_in_the_members_language(
    h: BotHarness, locale: str, expected: str
) -> None:
    before = len(await h.jobs(h.member_id))
    _, text = await ask(h, h.member_id, locale, prompt="a kite", model="nope")
    model = re.search(r"`([^`]+)`[^`]*$", text)
    assert model, text
    assert text.startswith(expected.format(m=model[1])), text
    assert len(await h.jobs(h.member_id)) == before, "refused: no job, no charge"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("it", "Per ora hai usato il tuo {n} credito video"),
        ("ja", "現在、動画クレジット {n} 回分をすべて使い切っています"),
    ],
)
async def test_a_quota_refusal_in_the_members_language(h: BotHarness, locale: str, expected: str) -> None:
    user = h.members[1]
    interaction = await h.fd.slash(
        h.guild_id, h.channel_id, h.mod_id, "quota", {"user": user, "limit": 1}, "set", locale="en-US"
    )
    await interaction.acknowledged(3)
    await h.wait_for(lambda: (interaction.original or {}).get("content"), 20, "/quota set")
    if await h.balance_used(user) == 0:
        await ask(h, user, "en-US", prompt="the one allowed video")
    _, text = await ask(h, user, locale, prompt="one more, please")
    assert expected.format(n=1) in text, text


async def test_status_result_and_buttons_follow_the_servers_discord_language(h: BotHarness) -> None:
    fd = h.fd
    guild = fd.add_guild(
        "日本語のサーバー", locale="ja"
    )  # its preferred locale reaches the bot by the gateway
    channel = fd.add_channel(guild.id, "動画")
    member = fd.add_member(guild.id, name="hana")
    # The member's own client is in English: the answer is English, the public messages Japanese.
    _, text = await ask(
        h, member, "en-US", guild_id=guild.id, channel_id=channel,
        prompt="a *red* fox @everyone <@123> in snow",
    )  # fmt: skip
    assert text.startswith("Queued as job #"), text
    job_id = job_id_in(text)
    status = await h.wait_for(
        lambda: message_with(h, channel, f"ジョブ #{job_id}", files=False), 30, "the Japanese status message"
    )
    assert status["content"].startswith(f"🎬 <@{member}> が動画をリクエストしました · ジョブ #{job_id}\n> ")
    # The prompt stays escaped whatever the language: no markdown, no mention.
    assert "\\*red\\*" in status["content"] and "@\u200beveryone" in status["content"]
    assert status["mentions"] == [] and not status["mention_everyone"]
    post = await h.wait_for(
        lambda: message_with(h, channel, f"ジョブ #{job_id}", files=True), 90, "the Japanese result"
    )
    assert post["content"].startswith(f"<@{member}> 動画ができました 🎬\n> a \\*red\\* fox @\u200beveryone")
    footer = post["content"].splitlines()[-1]
    assert footer.startswith(f"-# ジョブ #{job_id} · シード ") and "生成時間 " in footer, footer
    assert footer.endswith("🔁 でリアクションすると別バージョンを作成します"), footer
    labels = {b["custom_id"].split(":")[1]: b["label"] for b in fd.buttons(fd.message(post["id"]))}
    assert labels["rerun"] == "再生成" and labels["remix"] == "リミックス" and labels["delete"] == "削除"
    await h.wait_for(lambda: "✅ 完了" in fd.message(status["id"])["content"], 30, "the status's final text")

    # A member whose client is in Italian gets the Remix form in Italian, on that Japanese result.
    opened = await fd.click(
        guild.id, channel, member, int(post["id"]), f"videobot:remix:{job_id}", locale="it"
    )
    body = await opened.acknowledged(3)
    assert body["type"] == 9 and opened.modal is not None, body
    assert opened.modal["title"] == "Remix di questo video"
    labels = [
        child["label"]
        for top in opened.modal["components"]
        for child in [top.get("component") or {}, *(top.get("components") or [])]
        if child.get("type") == 4
    ]
    assert labels == ["Prompt", "Prompt negativo (cosa evitare)"]


async def test_videoconfig_language_overrides_the_servers_discord_language(h: BotHarness) -> None:
    fd = h.fd
    chosen = await fd.slash(
        h.guild_id, h.channel_id, h.mod_id, "videoconfig", {"language": "it"}, "language", locale="de"
    )
    await chosen.acknowledged(3)
    await h.wait_for(lambda: (chosen.original or {}).get("content"), 20, "/videoconfig language")
    try:
        # The member's client is in Japanese: a Japanese answer, Italian public messages.
        _, text = await ask(h, h.other_id, "ja", prompt="a lighthouse **at night**")
        assert "としてキューに追加しました" in text, text
        job_id = job_id_in(text)
        status = await h.wait_for(
            lambda: message_with(h, h.channel_id, f"lavoro #{job_id}", files=False), 30, "the Italian status"
        )
        assert status["content"].startswith(f"🎬 <@{h.other_id}> ha chiesto un video · lavoro #{job_id}\n> ")
        assert "\\*\\*at night\\*\\*" in status["content"]
        post = await h.wait_for(
            lambda: message_with(h, h.channel_id, f"lavoro #{job_id}", files=True), 90, "the Italian result"
        )
        assert post["content"].startswith(f"<@{h.other_id}> il tuo video è pronto 🎬\n")
        assert f"-# lavoro #{job_id} · seed " in post["content"]
        assert post["content"].endswith("reagisci con 🔁 per un'altra versione")
        labels = {b["custom_id"].split(":")[1]: b["label"] for b in fd.buttons(fd.message(post["id"]))}
        assert labels["rerun"] == "Rigenera" and labels["delete"] == "Elimina"
        await h.wait_for(
            lambda: "✅ completato in " in fd.message(status["id"])["content"], 30, "the Italian final status"
        )
    finally:
        back = await fd.slash(
            h.guild_id, h.channel_id, h.mod_id, "videoconfig", {"language": "default"}, "language"
        )
        await back.acknowledged(3)
        await h.wait_for(lambda: (back.original or {}).get("content"), 20, "/videoconfig language default")


async def test_texts_are_loaded_at_start_not_inside_a_members_command(h: BotHarness) -> None:
    # Reading the catalogs and compiling the patterns that recognise stored texts costs a few hundred ms
    # of CPU: the bot does it once, before it is ready, never inside a member's command (the commands of
    # the tests above in several languages, and one more here).
    _, text = await ask(h, h.members[1], "fr", prompt="a red kite over a field")
    assert text.startswith(("Vidéo ajoutée à la file", "Vous avez utilisé")), (
        text
    )  # queued, or out of credits
    log = h.bot.log(since_start=True)
    ready = log.index("videobot ready")
    catalogs = [(m.start(), m[1]) for m in re.finditer(r"loaded the (\w+) catalog", log)]
    patterns = [m.start() for m in re.finditer(r"loaded \d+ recognition patterns", log)]
    assert sorted(lang for _, lang in catalogs) == sorted(set(i18n.LANGUAGES) - {i18n.SOURCE})
    assert len(patterns) == 1
    assert all(at < ready for at, _ in catalogs) and patterns[0] < ready
