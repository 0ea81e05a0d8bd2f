"""The fake is faithful enough: a real discord.py client logs in, syncs, answers and retries against it."""

from __future__ import annotations

import asyncio
import io
import logging
import math
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import discord
import pytest
from discord import app_commands

from bot.endpoints import use_endpoints

from .ratelimits import RateLimits
from .records import DROP
from .server import FakeDiscord
from .world import Guild, MiB

log = logging.getLogger(__name__)
CLIP = bytes(range(256)) * 4096  # 1 MiB of "video"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Harness:
    fd: FakeDiscord
    client: discord.Client
    tree: app_commands.CommandTree
    guild: Guild
    channel_id: int
    user_id: int
    errors: list[BaseException] = field(default_factory=list)
    reactions: list[discord.RawReactionActionEvent] = field(default_factory=list)
    seen: list[tuple[str, object]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


class RerunView(discord.ui.View):
    """A persistent view: survives restarts because the custom_id carries the job id."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Rerun", custom_id="rerun:7")
    async def rerun(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="job 7 queued again", view=None)


def build_tree(h: Harness) -> None:
    """Commands shaped like videobot's: defer + file follow-up, ephemeral replies, groups, autocomplete."""
    tree = h.tree

    @tree.command(description="Defer, then post a clip")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.followup.send("pong", file=discord.File(io.BytesIO(CLIP), "clip.mp4"))

    @tree.command(description="Reply only to you")
    async def secret(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("only you can see this", ephemeral=True)

    @tree.command(description="Too slow to answer")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(3.2)
        try:
            await interaction.response.send_message("late")
        except discord.NotFound as exc:
            h.errors.append(exc)

    @tree.command(description="Defer, then follow up when released")
    async def later(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        await h.release.wait()
        try:
            await interaction.followup.send("done")
        except discord.HTTPException as exc:
            h.errors.append(exc)

    @tree.command(description="Generate a video")
    @app_commands.describe(prompt="What to generate", steps="Denoising steps", model="Model")
    async def video(
        interaction: discord.Interaction, prompt: str, steps: int = 30, model: str = "wan"
    ) -> None:
        h.seen.append(("video", (prompt, steps, model, interaction.filesize_limit)))
        await interaction.response.defer(thinking=True)

    @video.autocomplete("model")
    async def model_complete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        names = ["wan-1.3b", "wan-14b", "ltx-video"]
        return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

    queue = app_commands.Group(name="queue", description="The job queue")

    @queue.command(description="Show a user's jobs")
    async def show(interaction: discord.Interaction, user: discord.Member, verbose: bool = False) -> None:
        h.seen.append(("queue show", (user, verbose)))
        await interaction.response.send_message(f"{user.display_name}: nothing queued", ephemeral=True)

    tree.add_command(queue)

    @tree.command(description="Post a message with a rerun button")
    async def button(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("job 7 done", view=RerunView())

    @tree.command(description="Read an attached file")
    async def look(interaction: discord.Interaction, image: discord.Attachment) -> None:
        data = await image.read()
        h.seen.append(("look", (image.filename, data, str(interaction.locale))))
        await interaction.response.send_message(f"{len(data)} bytes", ephemeral=True)

    class PromptModal(discord.ui.Modal, title="Animate"):
        prompt = discord.ui.TextInput(label="Prompt", custom_id="prompt", required=False, default="naturally")

        def __init__(self, source: discord.Message) -> None:
            super().__init__(custom_id=f"animate:{source.id}")
            self.source = source

        async def on_submit(self, interaction: discord.Interaction) -> None:
            data = await self.source.attachments[0].read()
            h.seen.append(("animate", (self.prompt.value, len(data))))
            await interaction.response.send_message(f"animating: {self.prompt.value}")

    @tree.context_menu(name="Animate")
    async def animate(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_modal(PromptModal(message))

    @tree.error
    async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        h.errors.append(error)


@pytest.fixture
async def h(fd: FakeDiscord) -> AsyncIterator[Harness]:
    """A real discord.Client with a command tree, connected to the fake through use_endpoints()."""
    guild = fd.add_guild("Fox Den")
    channel_id = fd.add_channel(guild.id, "videos")
    user_id = fd.add_member(guild.id, name="alice")
    use_endpoints(fd.api_base, fd.gateway_url)
    client = discord.Client(intents=discord.Intents.default())
    harness = Harness(fd, client, app_commands.CommandTree(client), guild, channel_id, user_id)
    build_tree(harness)

    @client.event
    async def on_raw_reaction_add(payload: discord.RawReactionActionEvent) -> None:
        harness.reactions.append(payload)

    client.add_view(RerunView())
    task = asyncio.create_task(client.start(fd.token))
    try:
        await fd.wait_until_ready(10)
        await fd.wait_for(lambda: client.get_channel(channel_id) is not None, 5, what="GUILD_CREATE parsed")
        yield harness
    finally:
        harness.release.set()
        await client.close()
        await asyncio.wait_for(task, 5)
    # Every body the client sent must match Discord's published request schemas.
    if fd.schema_validation:
        assert fd.schema_errors == []


async def test_login_ready_guild_create_and_sync(h: Harness) -> None:
    fd, client = h.fd, h.client
    assert client.user is not None and client.user.id == fd.bot_user_id
    assert client.application_id == fd.application_id
    guild = client.get_guild(h.guild.id)
    assert guild is not None and guild.name == "Fox Den" and guild.me is not None
    assert guild.me.guild_permissions.attach_files
    assert guild.filesize_limit == 10 * MiB

    synced = await h.tree.sync(guild=discord.Object(h.guild.id))  # nothing guild-scoped: an empty PUT
    assert synced == []
    synced = await h.tree.sync()
    assert sorted(c.name for c in synced) == [
        "Animate",
        "button",
        "later",
        "look",
        "ping",
        "queue",
        "secret",
        "slow",
        "video",
    ]
    put = fd.requests_to("PUT", "/applications/{application_id}/commands")
    assert len(put) == 1 and put[0].status == 200
    video = next(c for c in fd.commands() if c["name"] == "video")
    assert [(o["name"], o["type"], o.get("required", False)) for o in video["options"]] == [
        ("prompt", 3, True),
        ("steps", 4, False),
        ("model", 3, False),
    ]
    # Re-syncing keeps ids, as Discord does for the same name.
    again = await h.tree.sync()
    assert {c.name: c.id for c in again} == {c.name: c.id for c in synced}


async def test_defer_then_followup_with_file(h: Harness) -> None:
    fd = h.fd
    interaction = await fd.slash(h.guild.id, h.channel_id, h.user_id, "ping")
    assert (await interaction.acknowledged(3))["type"] == 5
    assert interaction.ack_latency is not None and interaction.ack_latency < 3
    await fd.wait_for(lambda: interaction.followups, 5, what="follow-up")
    [message] = fd.messages(h.channel_id)
    # The first follow-up after a defer fills the "thinking…" message.
    assert message["id"] == interaction.original["id"] == interaction.followups[0]["id"]
    assert message["content"] == "pong" and not message["flags"] & (64 | 128)
    [attachment] = message["attachments"]
    assert attachment["filename"] == "clip.mp4" and attachment["content_type"] == "video/mp4"
    assert attachment["size"] == len(CLIP) and fd.attachment_bytes(attachment) == CLIP
    [upload] = fd.requests_to("POST", "/webhooks/{application_id}/{token}")
    assert upload.multipart and upload.files[0].data == CLIP and upload.json["content"] == "pong"
    # The CDN URL serves the bytes, so the bot can re-download its own posts.
    async with aiohttp.ClientSession() as session, session.get(attachment["url"]) as resp:
        assert await resp.read() == CLIP


async def test_ephemeral_reply(h: Harness) -> None:
    interaction = await h.fd.slash(h.guild.id, h.channel_id, h.user_id, "secret")
    body = await interaction.acknowledged(3)
    assert body["type"] == 4 and body["data"]["flags"] == 64 and interaction.ephemeral
    assert interaction.original["content"] == "only you can see this"
    assert h.fd.messages(h.channel_id, include_ephemeral=False) == []


async def test_too_slow_initial_response_is_unknown_interaction(h: Harness) -> None:
    interaction = await h.fd.slash(h.guild.id, h.channel_id, h.user_id, "slow")
    await h.fd.wait_for(lambda: h.errors, 6, what="bot error")
    [error] = h.errors
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert interaction.initial is None and len(interaction.responses) == 1


async def test_second_initial_response_and_expired_token(h: Harness) -> None:
    fd = h.fd
    interaction = await fd.slash(h.guild.id, h.channel_id, h.user_id, "later")
    await interaction.acknowledged(3)
    async with aiohttp.ClientSession() as session:
        url = f"{fd.api_base}/interactions/{interaction.id}/{interaction.token}/callback"
        async with session.post(url, json={"type": 4, "data": {"content": "again"}}) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 40060
    fd.expire_token(interaction)
    h.release.set()
    await fd.wait_for(lambda: h.errors, 5, what="bot error")
    [error] = h.errors
    assert isinstance(error, discord.HTTPException) and error.status == 401 and error.code == 50027


async def test_options_subcommands_user_option_and_autocomplete(h: Harness) -> None:
    fd = h.fd
    await h.tree.sync()
    bob = fd.add_member(h.guild.id, name="bob", nick="Bobby")
    interaction = await fd.slash(
        h.guild.id, h.channel_id, h.user_id, "video", options={"prompt": "a fox", "steps": 8}
    )
    assert (await interaction.acknowledged(3))["type"] == 5
    assert h.seen[-1] == ("video", ("a fox", 8, "wan", 10 * MiB))
    assert interaction.payload["data"]["options"][1] == {"name": "steps", "type": 4, "value": 8}

    interaction = await fd.slash(
        h.guild.id,
        h.channel_id,
        h.user_id,
        "queue",
        subcommand="show",
        options={"user": bob, "verbose": True},
    )
    await interaction.acknowledged(3)
    name, (member, verbose) = h.seen[-1]
    assert isinstance(member, discord.Member) and member.id == bob and member.display_name == "Bobby"
    assert verbose is True and interaction.original["content"] == "Bobby: nothing queued"

    choices = await fd.autocomplete(
        h.guild.id,
        h.channel_id,
        h.user_id,
        "video",
        options={"prompt": "a fox", "model": "wan"},
        focused="model",
    )
    assert choices == [{"name": "wan-1.3b", "value": "wan-1.3b"}, {"name": "wan-14b", "value": "wan-14b"}]

    with pytest.raises(ValueError, match="unknown"):
        await fd.slash(h.guild.id, h.channel_id, h.user_id, "video", options={"prompt": "x", "fps": 8})


async def test_persistent_button_click_updates_the_message(h: Harness) -> None:
    fd = h.fd
    interaction = await fd.slash(h.guild.id, h.channel_id, h.user_id, "button")
    await interaction.acknowledged(3)
    message = interaction.original
    assert message["components"][0]["components"][0]["custom_id"] == "rerun:7"
    click = await fd.click(h.guild.id, h.channel_id, h.user_id, int(message["id"]), "rerun:7")
    assert (await click.acknowledged(3))["type"] == 7
    [after] = fd.messages(h.channel_id)
    assert after["content"] == "job 7 queued again" and after["components"] == []
    assert after["edited"] is not None


async def test_attachment_option_is_resolved_and_served(h: Harness) -> None:
    fd = h.fd
    await h.tree.sync()
    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    i = await fd.slash(
        h.guild.id, h.channel_id, h.user_id, "look", {"image": fd.attachment("cat.png", png)}, locale="it"
    )
    assert (await i.acknowledged(3))["data"]["content"] == "108 bytes"
    assert h.seen[-1] == ("look", ("cat.png", png, "it"))
    with pytest.raises(ValueError):
        await fd.slash(h.guild.id, h.channel_id, h.user_id, "look", {"image": "cat.png"})


async def test_message_command_opens_a_modal_whose_submission_reaches_the_bot(h: Harness) -> None:
    fd = h.fd
    await h.tree.sync()
    assert any(c["name"] == "Animate" and c["type"] == 3 for c in fd.commands())
    picture = b"\x89PNG\r\n\x1a\n" + bytes(50)
    mid = fd.post_user_message(h.user_id, h.channel_id, "my cat", files=[("cat.png", picture)])
    assert fd.message(mid)["attachments"][0]["filename"] == "cat.png"
    opened = await fd.message_command(h.guild.id, h.channel_id, h.user_id, "Animate", mid)
    assert (await opened.acknowledged(3))["type"] == 9
    assert opened.modal["custom_id"] == f"animate:{mid}"
    with pytest.raises(ValueError):
        await fd.submit_modal(opened, {"nope": "x"})
    prefilled = await fd.submit_modal(opened)
    assert (await prefilled.acknowledged(3))["data"]["content"] == "animating: naturally"
    # A modal is answered once; the member opens it again for another submission.
    again = await fd.message_command(h.guild.id, h.channel_id, h.user_id, "Animate", mid, locale="ja")
    await again.acknowledged(3)
    edited = await fd.submit_modal(again, {"prompt": "the cat yawns"})
    await edited.acknowledged(3)
    assert h.seen[-2:] == [("animate", ("naturally", 58)), ("animate", ("the cat yawns", 58))]
    assert [m["content"] for m in fd.messages(h.channel_id)][-2:] == [
        "animating: naturally",
        "animating: the cat yawns",
    ]


async def test_reactions_reach_raw_reaction_add(h: Harness) -> None:
    fd = h.fd
    channel = h.client.get_channel(h.channel_id)
    message = await channel.send("react to rerun")
    await message.add_reaction("🔁")
    await fd.add_reaction(h.user_id, h.channel_id, message.id, "🔁")
    await fd.wait_for(lambda: len(h.reactions) == 2, 3, what="two reaction events")
    mine, theirs = h.reactions
    assert mine.user_id == fd.bot_user_id
    assert theirs.user_id == h.user_id and str(theirs.emoji) == "🔁" and theirs.member.name == "alice"
    assert theirs.message_author_id == fd.bot_user_id and theirs.guild_id == h.guild.id
    [stored] = fd.messages(h.channel_id)
    assert stored["reactions"][0]["count"] == 2 and stored["reactions"][0]["me"] is True
    await fd.remove_reaction(h.user_id, h.channel_id, message.id, "🔁")
    assert fd.messages(h.channel_id)[0]["reactions"][0]["count"] == 1


async def test_rate_limit_is_retried(h: Harness) -> None:
    fd = h.fd
    fault = fd.inject("POST", r"^/channels/\d+/messages$", 429, retry_after=0.3)
    channel = h.client.get_channel(h.channel_id)
    await channel.send("after the rate limit")
    assert fault.hits == 1
    statuses = [r.status for r in fd.requests_to("POST", "/channels/{channel_id}/messages")]
    assert statuses == [429, 200]
    [hit] = fd.rate_limit_hits
    assert hit.injected and hit.bucket == "message-create" and hit.retry_after == 0.3
    assert [m["content"] for m in fd.messages(h.channel_id)] == ["after the rate limit"]


async def test_an_answer_lost_after_the_message_was_made_and_the_nonce(h: Harness) -> None:
    """``inject(..., after=True)``: Discord made the message, then the bot got a 502 or no answer at all;
    a repeated ``nonce`` with ``enforce_nonce`` (discord.py sends both) returns the message made first."""
    fd = h.fd
    channel = h.client.get_channel(h.channel_id)
    route = ("POST", "/channels/{channel_id}/messages")
    # 502 after creating: discord.py retries the same request, Discord returns the first message again.
    fd.inject("POST", r"^/channels/\d+/messages$", 502, after=True)
    sent = await channel.send("once", nonce="job-1")
    first, retry = fd.requests_to(*route)
    assert (first.status, first.answer_lost, retry.status) == (502, True, 200)
    assert first.json["enforce_nonce"] is True
    assert first.response["id"] == retry.response["id"] == str(sent.id)
    assert [m["content"] for m in fd.messages(h.channel_id)] == ["once"]
    # The connection dropped after creating: the client gets no answer, the message is there.
    fd.inject("POST", r"^/channels/\d+/messages$", DROP, after=True)
    with pytest.raises(aiohttp.ClientError):
        await channel.send("twice?", nonce="job-2")
    assert fd.requests_to(*route)[-1].status == DROP
    [made] = [m for m in fd.messages(h.channel_id) if m["content"] == "twice?"]
    assert (await channel.send("twice?", nonce="job-2")).id == int(made["id"])
    # Another nonce, or the same one once Discord forgot it, is a new message.
    await channel.send("twice?", nonce="job-3")
    fd.nonce_window = 0.0
    await channel.send("twice?", nonce="job-2")
    assert [m["content"] for m in fd.messages(h.channel_id)] == ["once"] + ["twice?"] * 3
    assert not fd.errors


async def test_discord_rules_are_enforced(h: Harness) -> None:
    fd = h.fd
    channel = h.client.get_channel(h.channel_id)
    with pytest.raises(discord.HTTPException) as too_long:
        await channel.send("x" * 2001)
    assert too_long.value.status == 400 and too_long.value.code == 50035
    assert "2000 or fewer" in str(too_long.value)
    with pytest.raises(discord.HTTPException) as too_big:
        await channel.send(file=discord.File(io.BytesIO(bytes(11 * MiB)), "big.mp4"))
    assert too_big.value.status == 413 and too_big.value.code == 40005
    assert fd.requests_to("POST", "/channels/{channel_id}/messages")[-1].files[0].size == 11 * MiB
    # Each file under the limit, but one request carries at most 25 MiB in all.
    with pytest.raises(discord.HTTPException) as too_much:
        await channel.send(files=[discord.File(io.BytesIO(bytes(9 * MiB)), f"{i}.mp4") for i in range(3)])
    assert too_much.value.status == 413 and too_much.value.code == 40005
    await channel.send(files=[discord.File(io.BytesIO(bytes(8 * MiB)), f"{i}.mp4") for i in range(3)])

    message = await channel.send("progress 10%")
    await message.edit(content="progress 50%")
    fd.age_message(message.id, 3601)
    with pytest.raises(discord.HTTPException) as old:
        await message.edit(content="progress 90%")
    assert old.value.code == 30046
    assert fd.messages(h.channel_id)[-1]["content"] == "progress 50%"

    fd.set_channel_overwrite(h.channel_id, fd.bot_user_id, deny=1 << 15, type=1)  # no Attach Files here
    with pytest.raises(discord.Forbidden) as no_attach:
        await channel.send(file=discord.File(io.BytesIO(b"x"), "a.mp4"))
    assert no_attach.value.code == 50013
    fd.inject("POST", r"/messages$", 403, code=50013)
    with pytest.raises(discord.Forbidden) as forbidden:
        await channel.send("nope")
    assert forbidden.value.code == 50013
    fd.delete_channel(h.channel_id)
    with pytest.raises(discord.NotFound) as gone:
        await channel.send("anyone?")
    assert gone.value.code == 10003


async def test_gateway_drop_resumes_and_keeps_handling(h: Harness) -> None:
    fd = h.fd
    await fd.drop_gateway()
    # Sent while the bot is away: buffered and replayed on RESUME.
    interaction = await fd.slash(h.guild.id, h.channel_id, h.user_id, "secret")
    await fd.wait_until_ready(10)
    assert fd.gateway.resumes == 1 and fd.gateway.identifies == 1
    assert (await interaction.acknowledged(3))["type"] == 4

    await fd.drop_gateway(resumable=False)
    await fd.wait_for(lambda: fd.gateway.identifies == 2, 10, what="re-identify")
    interaction = await fd.slash(h.guild.id, h.channel_id, h.user_id, "secret")
    assert (await interaction.acknowledged(3))["type"] == 4


async def test_burst_of_interactions(h: Harness) -> None:
    fd = h.fd
    users = [fd.add_member(h.guild.id, name=f"u{i}") for i in range(50)]
    interactions = [await fd.slash(h.guild.id, h.channel_id, users[i % 50], "secret") for i in range(200)]
    await fd.wait_for(lambda: all(i.initial for i in interactions), 10, what="200 acks")
    latencies = sorted(i.ack_latency for i in interactions)
    log.info("200 acks: p50 %.3f s, max %.3f s", latencies[100], latencies[-1])
    assert len(fd.messages(h.channel_id)) == 200


SUBPROCESS_BOT = """
import os, discord
from discord import app_commands
from bot.endpoints import use_endpoints

use_endpoints(os.environ["DISCORD_API_BASE_URL"], os.environ["DISCORD_GATEWAY_URL"])
client = discord.Client(intents=discord.Intents.default())
tree = app_commands.CommandTree(client)

@tree.command(description="ping")
async def ping(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("pong from a subprocess")

client.run(os.environ["DISCORD_TOKEN"], log_handler=None)
"""


async def test_bot_subprocess_configured_by_env(fd: FakeDiscord) -> None:
    guild = fd.add_guild()
    channel_id = fd.add_channel(guild.id)
    user_id = fd.add_member(guild.id)
    env = {**os.environ, **fd.env(), "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", SUBPROCESS_BOT, env=env)
    try:
        await fd.wait_until_ready(20)
        interaction = await fd.slash(guild.id, channel_id, user_id, "ping")
        await interaction.acknowledged(3)
        assert interaction.original["content"] == "pong from a subprocess"
    finally:
        proc.terminate()
        await proc.wait()


def test_use_endpoints_survives_set_api_version() -> None:
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    try:
        use_endpoints("http://127.0.0.1:1/api/v10/", "ws://127.0.0.1:1/gateway")
        assert discord.http.Route("GET", "/users/@me").url == "http://127.0.0.1:1/api/v10/users/@me"
        assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "ws://127.0.0.1:1/gateway"
        discord.http._set_api_version(9)
        assert discord.http.Route.BASE == "http://127.0.0.1:1/api/v9"
        discord.http._set_api_version(10)
        assert discord.http.Route.BASE == "http://127.0.0.1:1/api/v10"
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


async def test_schema_validator_catches_malformed_bodies(fd: FakeDiscord) -> None:
    if not fd.schema_validation:
        pytest.skip("Discord's OpenAPI file is absent (set DISCORD_OPENAPI_PATH)")
    guild = fd.add_guild()
    channel_id = fd.add_channel(guild.id)
    headers = {"Authorization": f"Bot {fd.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        url = f"{fd.api_base}/channels/{channel_id}/messages"
        async with session.post(url, json={"content": "ok", "embeds": [{"title": 5}]}) as resp:
            # Discord refuses a body that breaks its schema with 50035, and so does the fake.
            assert resp.status == 400 and (await resp.json())["code"] == 50035
    assert len(fd.schema_errors) == 1 and "POST /channels/{channel_id}/messages" in fd.schema_errors[0]
    assert "['embeds'][0]['title']" in fd.schema_errors[0]
    fd.schema_errors.clear()


# ----------------------------------------------------------------------------- rate limits


def _auth(fd: FakeDiscord) -> dict[str, str]:
    return {"Authorization": f"Bot {fd.token}"}


async def _post(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[int, dict, dict]:
    async with session.post(url, json=body) as resp:
        return resp.status, dict(resp.headers), await resp.json() if resp.status != 204 else {}


async def test_sixth_message_in_a_channel_within_5_s_is_rate_limited(fd: FakeDiscord) -> None:
    guild = fd.add_guild()
    busy, quiet = fd.add_channel(guild.id, "busy"), fd.add_channel(guild.id, "quiet")
    async with aiohttp.ClientSession(headers=_auth(fd)) as session:
        url = f"{fd.api_base}/channels/{busy}/messages"
        answers = [await _post(session, url, {"content": f"status {i}"}) for i in range(6)]
        other = await _post(session, f"{fd.api_base}/channels/{quiet}/messages", {"content": "hi"})
    statuses = [status for status, _, _ in answers]
    assert statuses == [200, 200, 200, 200, 200, 429]
    assert [h["X-RateLimit-Remaining"] for _, h, _ in answers[:5]] == ["4", "3", "2", "1", "0"]
    assert {h["X-RateLimit-Limit"] for _, h, _ in answers} == {"5"}
    first, limited = answers[0][1], answers[5][1]
    assert 4.9 <= float(first["X-RateLimit-Reset-After"]) <= 5.0
    assert abs(float(first["X-RateLimit-Reset"]) - (time.time() + 5)) < 1
    # The 429 discord.py retries: Via, Retry-After, the scope, and Discord's body.
    _, _, body = answers[5]
    assert limited["Via"] and limited["X-RateLimit-Scope"] == "user"
    assert 0 < body["retry_after"] <= 5 and body["global"] is False and body["message"]
    assert limited["Retry-After"] == str(math.ceil(body["retry_after"]))
    assert float(limited["X-RateLimit-Reset-After"]) == body["retry_after"]
    assert limited["X-RateLimit-Remaining"] == "0"
    # Another channel has its own bucket: same bucket hash (as on Discord), its own count.
    status, headers, _ = other
    assert status == 200 and headers["X-RateLimit-Remaining"] == "4"
    assert headers["X-RateLimit-Bucket"] == first["X-RateLimit-Bucket"] == limited["X-RateLimit-Bucket"]
    assert [m["content"] for m in fd.messages(busy)] == [f"status {i}" for i in range(5)]
    [hit] = fd.rate_limit_hits
    assert (hit.bucket, hit.major, hit.scope, hit.injected) == ("message-create", str(busy), "user", False)
    assert fd.rate_limit_counts() == {"message-create": 1}


async def test_edits_and_deletes_share_a_channel_bucket_and_the_window_resets(fd: FakeDiscord) -> None:
    fd.set_rate_limits(RateLimits().scaled(0.1))  # Discord's counts, windows ten times shorter
    guild = fd.add_guild()
    channel = fd.add_channel(guild.id)
    async with aiohttp.ClientSession(headers=_auth(fd)) as session:
        base = f"{fd.api_base}/channels/{channel}/messages"
        ids = []
        for i in range(4):
            status, _, body = await _post(session, base, {"content": f"m{i}"})
            ids.append(body["id"])
        statuses = []
        for mid in ids:
            async with session.patch(f"{base}/{mid}", json={"content": "edited"}) as resp:
                statuses.append(resp.status)
        for mid in ids[:2]:
            async with session.delete(f"{base}/{mid}") as resp:
                statuses.append(resp.status)
                retry = (await resp.json())["retry_after"] if resp.status == 429 else 0
        assert statuses == [200, 200, 200, 200, 204, 429]
        assert 0 < retry <= 0.5
        await asyncio.sleep(retry)
        async with session.delete(f"{base}/{ids[1]}") as resp:
            assert resp.status == 204 and resp.headers["X-RateLimit-Remaining"] == "4"
    assert fd.rate_limit_counts() == {"message-edit": 1}


async def test_reactions_one_per_quarter_second_per_channel(fd: FakeDiscord) -> None:
    guild = fd.add_guild()
    a, b = fd.add_channel(guild.id, "a"), fd.add_channel(guild.id, "b")
    ma, mb = fd.post_user_message(fd.owner.id, a, "one"), fd.post_user_message(fd.owner.id, b, "two")
    async with aiohttp.ClientSession(headers=_auth(fd)) as session:

        async def react(channel: int, message: int, emoji: str) -> aiohttp.ClientResponse:
            url = f"{fd.api_base}/channels/{channel}/messages/{message}/reactions/{emoji}/@me"
            async with session.put(url) as resp:
                await resp.read()
                return resp

        first, second, other = await asyncio.gather(
            react(a, ma, "🔁"), react(a, ma, "❌"), react(b, mb, "🔁")
        )
        assert (first.status, second.status, other.status) == (204, 429, 204)
        assert first.headers["X-RateLimit-Limit"] == "1" and first.headers["X-RateLimit-Remaining"] == "0"
        assert 0 < float(first.headers["X-RateLimit-Reset-After"]) <= 0.25
        assert 0 < float(second.headers["X-RateLimit-Reset-After"]) <= 0.25
        await asyncio.sleep(float(second.headers["X-RateLimit-Reset-After"]))
        assert (await react(a, ma, "❌")).status == 204
    assert [r["emoji"]["name"] for r in fd.messages(a)[0]["reactions"]] == ["🔁", "❌"]
    assert [(h.bucket, h.major) for h in fd.rate_limit_hits] == [("reactions", str(a))]


async def test_interaction_followups_are_bucketed_per_token_not_per_channel(h: Harness) -> None:
    fd = h.fd
    users = [fd.add_member(h.guild.id, name=f"m{i}") for i in range(20)]
    interactions = [await fd.slash(h.guild.id, h.channel_id, u, "later") for u in users]
    await fd.wait_for(lambda: all(i.initial for i in interactions), 10, what="20 acks")
    async with aiohttp.ClientSession(headers=_auth(fd)) as session:
        channel_url = f"{fd.api_base}/channels/{h.channel_id}/messages"
        creates = [await _post(session, channel_url, {"content": f"status {i}"}) for i in range(6)]
        assert [s for s, _, _ in creates] == [200] * 5 + [429]  # the channel's bucket is spent
        hooks = [f"{fd.api_base}/webhooks/{fd.application_id}/{i.token}?wait=true" for i in interactions]
        answers = await asyncio.gather(*(_post(session, u, {"content": "Queued"}) for u in hooks))
        assert [s for s, _, _ in answers] == [200] * 20
        assert all(h["X-RateLimit-Remaining"] == "4" for _, h, _ in answers)  # one bucket per token
        # ...which has a limit of its own.
        again = [await _post(session, hooks[0], {"content": f"again {n}"}) for n in range(5)]
        assert [s for s, _, _ in again] == [200] * 4 + [429]
    assert sorted(fd.rate_limit_counts().items()) == [("interaction-webhook", 1), ("message-create", 1)]
    assert all(i.followups for i in interactions)


async def test_global_limit_50_per_second_spares_interactions(h: Harness) -> None:
    fd = h.fd
    # Discord's 50 per window; a 5 s window so a loaded machine still sends 60 requests inside one.
    fd.set_rate_limits(RateLimits(global_per=5.0))
    channels = [fd.add_channel(h.guild.id, f"c{i}") for i in range(60)]
    async with aiohttp.ClientSession(headers=_auth(fd)) as session:

        async def get(channel: int) -> tuple[int, dict, dict]:
            async with session.get(f"{fd.api_base}/channels/{channel}") as resp:
                return resp.status, dict(resp.headers), await resp.json()

        answers = await asyncio.gather(*(get(c) for c in channels))
    assert sorted(s for s, _, _ in answers) == [200] * 50 + [429] * 10
    status, headers, body = next(a for a in answers if a[0] == 429)
    assert body["global"] is True and 0 < body["retry_after"] <= 5
    assert headers["X-RateLimit-Global"] == "true" and headers["X-RateLimit-Scope"] == "global"
    assert headers["Via"] and "X-RateLimit-Remaining" not in headers
    assert fd.rate_limit_counts() == {"global": 10}
    # Interaction endpoints are not bound to the global limit: the bot still answers.
    interaction = await fd.slash(h.guild.id, h.channel_id, h.user_id, "secret")
    assert (await interaction.acknowledged(3))["type"] == 4
    assert fd.rate_limit_counts() == {"global": 10}


async def test_discord_py_paces_a_burst_of_sends_by_the_headers(h: Harness) -> None:
    fd = h.fd
    fd.set_rate_limits(RateLimits().scaled(0.2))  # 5 per 1 s: the same shape, a fifth of the wait
    channel = h.client.get_channel(h.channel_id)
    sent = await asyncio.gather(*(channel.send(f"status {i}") for i in range(12)))
    assert len(sent) == 12
    assert sorted(m["content"] for m in fd.messages(h.channel_id)) == sorted(f"status {i}" for i in range(12))
    assert fd.rate_limit_hits == []  # discord.py waited for each window instead of being refused
    times = sorted(r.at for r in fd.requests_to("POST", "/channels/{channel_id}/messages"))
    assert len(times) == 12
    # Fixed windows of 1 s from the first request: the 6th send starts the 2nd window, the 11th the 3rd.
    assert times[5] - times[0] >= 1.0 and times[10] - times[0] >= 2.0


async def test_enforcement_can_be_turned_off() -> None:
    async with FakeDiscord(rate_limits=None) as fd:
        guild = fd.add_guild()
        channel = fd.add_channel(guild.id)
        async with aiohttp.ClientSession(headers=_auth(fd)) as session:
            url = f"{fd.api_base}/channels/{channel}/messages"
            answers = [await _post(session, url, {"content": str(i)}) for i in range(12)]
        assert [s for s, _, _ in answers] == [200] * 12
        assert fd.rate_limit_hits == []


async def test_a_held_request_is_carried_out_and_answered_only_when_released(fd: FakeDiscord) -> None:
    guild = fd.add_guild()
    channel = fd.add_channel(guild.id, "videos")
    held = fd.hold("POST", r"^/channels/\d+/messages$")
    async with aiohttp.ClientSession(headers=_auth(fd)) as session:
        url = f"{fd.api_base}/channels/{channel}/messages"
        sending = asyncio.create_task(_post(session, url, {"content": "the result"}))
        record = await held.reached(5)
        # Stored and shown to members, while the sender still waits for the answer.
        assert [m["content"] for m in fd.messages(channel)] == ["the result"] and not sending.done()
        assert record.status == 200
        held.release()
        status, _, body = await sending
        assert status == 200 and body["id"] == fd.messages(channel)[0]["id"]
        # Released: the next one is answered at once.
        assert (await _post(session, url, {"content": "next"}))[0] == 200
    # A member deletes their message; a message of the bot's from elsewhere can be placed.
    mid = fd.post_user_message(fd.owner.id, channel, "mine")
    fd.delete_user_message(mid)
    assert fd.message(mid)["deleted"]
    bot_mid = fd.post_bot_message(channel, {"content": "old post"}, [("videobot-1.mp4", b"\0\0")])
    assert fd.message(bot_mid)["author"]["id"] == str(fd.bot_user_id)
    assert fd.message(bot_mid)["attachments"][0]["filename"] == "videobot-1.mp4"
