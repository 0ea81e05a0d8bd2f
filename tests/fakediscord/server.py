"""A fake Discord (REST + gateway) on 127.0.0.1 for end-to-end tests of a real discord.py bot.

It follows Discord's documented rules and error bodies closely enough that the bot's error handling is
exercised for real: the 3 s interaction deadline, 15 min interaction tokens, upload limits, 2000-char
content, message age, permissions and injected faults (429 with the headers discord.py honours, 5xx, ...).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from . import world as w
from .gateway import (
    GUILD_MEMBERS,
    GUILD_MESSAGE_REACTIONS,
    GUILD_MESSAGES,
    GUILDS,
    MESSAGE_CONTENT,
    Gateway,
    Session,
)
from .ratelimits import (
    Decision,
    RateLimiter,
    RateLimitHit,
    RateLimits,
    bucket_hash,
    classify,
    limited_body,
    limited_headers,
)
from .records import DROP, Fault, Hold, Interaction, RecordedFile, RecordedRequest
from .schema import load_validator

log = logging.getLogger(__name__)

MAX_BODY = 200 * w.MiB  # aiohttp's default 1 MiB would reject uploads before our 413 check runs
#: Discord caps the files of one message request at 25 MiB together, whatever the per-file limit.
MAX_REQUEST_FILES_BYTES = 25 * w.MiB
EPHEMERAL, LOADING = 1 << 6, 1 << 7
ERROR_MESSAGES = {
    0: "",
    10003: "Unknown Channel",
    10004: "Unknown Guild",
    10007: "Unknown Member",
    10008: "Unknown Message",
    10011: "Unknown Role",
    10014: "Unknown Emoji",
    10015: "Unknown Webhook",
    10062: "Unknown interaction",
    10063: "Unknown application command",
    30046: "Maximum number of edits to messages older than 1 hour reached. Try again later",
    40005: "Request entity too large",
    40060: "Interaction has already been acknowledged.",
    50001: "Missing Access",
    50005: "Cannot edit a message authored by another user",
    50006: "Cannot send an empty message",
    50013: "Missing Permissions",
    50027: "Invalid Webhook Token",
    50035: "Invalid Form Body",
    50109: "The request body contains invalid JSON.",
}
STATUS_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class DiscordError(Exception):
    """Raised by a route to answer with Discord's error body ``{"message", "code"[, "errors"]}``."""

    def __init__(
        self, status: int, code: int, message: str | None = None, errors: dict | None = None
    ) -> None:
        super().__init__(message or ERROR_MESSAGES.get(code, ""))
        self.status, self.code, self.errors = status, code, errors
        self.message = message or ERROR_MESSAGES.get(code) or f"{status}: {STATUS_TEXT.get(status, '')}"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def _form_error(field_path: list[str], code: str, message: str) -> DiscordError:
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field_path):
        errors = {part: errors}
    return DiscordError(400, 50035, errors=errors)


@dataclass
class StoredMessage:
    data: dict[str, Any]  # the wire message object
    created_at: float  # wall clock; fd.age_message() moves it back
    allowed_mentions: dict[str, Any] | None = None
    ephemeral: bool = False
    interaction_id: int | None = None
    edited_at: float | None = None
    deleted: bool = False
    reactions: dict[str, tuple[dict[str, Any], list[int]]] = field(
        default_factory=dict
    )  # key -> (emoji, users)

    def sync_reactions(self, bot_user_id: int) -> None:
        """Rebuild the wire ``reactions`` list (Discord omits the key when there are none)."""
        self.reactions = {k: v for k, v in self.reactions.items() if v[1]}
        self.data.pop("reactions", None)
        if self.reactions:
            self.data["reactions"] = [
                {
                    "emoji": emoji,
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me": bot_user_id in users,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for emoji, users in self.reactions.values()
            ]

    def view(self) -> dict[str, Any]:
        """What tests get: the wire object plus what only the fake knows."""
        return {
            **self.data,
            "allowed_mentions": self.allowed_mentions,
            "ephemeral": self.ephemeral,
            "created": self.created_at,
            "edited": self.edited_at,
            "deleted": self.deleted,
        }


@dataclass
class _Req:
    request: web.Request
    params: dict[str, str]
    json: Any
    files: list[RecordedFile]
    record: RecordedRequest
    query: dict[str, str] = field(default_factory=dict)


Handler = Callable[[_Req], Awaitable[tuple[int, Any]]]


class FakeDiscord:
    """Discord's REST API and gateway for one bot, on a random loopback port, in the test's event loop."""

    def __init__(
        self,
        token: str = "fake-bot-token",
        *,
        bot_name: str = "videobot",
        heartbeat_interval: float = 41.25,
        interaction_deadline: float = 3.0,
        token_lifetime: float = 15 * 60.0,
        old_message_edit_age: float | None = 3600.0,
        validate_schema: bool = True,
        rate_limits: RateLimits | None = RateLimits(),  # noqa: B008 - frozen, never mutated
        nonce_window: float = 180.0,
    ) -> None:
        self.token = token
        #: Seconds a channel message's ``nonce`` is remembered: a create with the same nonce and
        #: ``enforce_nonce`` within it returns the message made first (Discord: "the past few minutes").
        self.nonce_window = nonce_window
        #: Discord's buckets and global limit, enforced; ``None``: off (never a 429 unless injected).
        self.rate_limiter = RateLimiter(rate_limits)
        #: Every 429 served: enforced by a bucket or the global limit, or injected by ``inject()``.
        self.rate_limit_hits: list[RateLimitHit] = []
        self.interaction_deadline = interaction_deadline
        self.token_lifetime = token_lifetime
        self.old_message_edit_age = old_message_edit_age
        self.application_id = w.snowflake()
        self.owner = w.User(w.snowflake(), "owner")
        self.bot_user = w.User(self.application_id, bot_name, bot=True)  # bot user id == application id
        self.bot_user_id = self.bot_user.id
        self.requests: list[RecordedRequest] = []
        self.unknown_routes: list[str] = []
        self.errors: list[str] = []  # exceptions inside the fake itself
        self.schema_errors: list[str] = []
        self._validator = load_validator() if validate_schema else None
        self.schema_validation = self._validator is not None
        self.gateway = Gateway(
            token,
            heartbeat_interval_ms=int(heartbeat_interval * 1000),
            on_identify=self._on_identify,
            on_members_request=self._on_members_request,
            changed=self._changed,
        )
        self._users: dict[int, w.User] = {self.owner.id: self.owner, self.bot_user.id: self.bot_user}
        self._guilds: dict[int, w.Guild] = {}
        self._channels: dict[int, w.Channel] = {}
        self._messages: dict[int, StoredMessage] = {}
        self._channel_messages: dict[int, list[int]] = {}
        self._blobs: dict[int, bytes] = {}
        #: Attachment ids fetched from the CDN url, in order (did the bot download a file?).
        self.cdn_requests: list[int] = []
        #: Downloads of these attachment ids wait until the event is set (``hold_download``).
        self._cdn_holds: dict[int, asyncio.Event] = {}
        #: Edits of these interactions' ``@original`` hang and are never applied (``stall_original_edits``).
        self._stalled_originals: set[int] = set()
        self._interactions: dict[int, Interaction] = {}
        self._by_token: dict[str, Interaction] = {}
        self._commands: dict[int | None, list[dict[str, Any]]] = {}
        self.command_syncs: list[tuple[int | None, list[dict[str, Any]]]] = []
        self._faults: list[Fault] = []
        self._holds: list[Hold] = []
        self._nonces: dict[tuple[int, str], tuple[int, float]] = {}  # (channel, nonce) -> (message, at)
        self._change = asyncio.Event()
        self._routes = self._build_routes()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1 on ``port`` (0: a free one). After ``close()``, ``start(port)`` brings the
        same fake back (world, messages and the gateway session kept): Discord going away and coming back."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn)
        app.router.add_route("*", "/api/{version:v\\d+}/{tail:.*}", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        """Stop listening, then close gateway sockets (so a reconnect cannot slip in between)."""
        for held in self._holds:
            held.release()
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def api_base(self) -> str:
        """For ``DISCORD_API_BASE_URL``: ``http://127.0.0.1:PORT/api/v10``."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """For ``DISCORD_GATEWAY_URL``: ``ws://127.0.0.1:PORT/gateway``."""
        return f"ws{self.base_url.removeprefix('http')}/gateway"

    def env(self) -> dict[str, str]:
        """Environment variables that point a bot subprocess at this fake."""
        return {
            "DISCORD_API_BASE_URL": self.api_base,
            "DISCORD_GATEWAY_URL": self.gateway_url,
            "DISCORD_TOKEN": self.token,
        }

    # ----------------------------------------------------------------- waiting

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, *, what: str = "") -> Any:  # noqa: ASYNC109
        """Wait until ``predicate()`` is truthy (re-checked on every change in the fake) and return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (result := predicate()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"fake discord: {what or 'condition'} not met within {timeout} s")
            event = self._change
            try:
                await asyncio.wait_for(event.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass  # re-check: time-based predicates change without an event
        return result

    async def wait_until_ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the bot has identified (or resumed) and its GUILD_CREATEs are queued."""
        try:
            await asyncio.wait_for(self.gateway.ready.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"fake discord: bot did not connect within {timeout} s; {self.problems()}"
            ) from None

    def problems(self) -> list[str]:
        """Everything a test should fail on: unknown routes, errors inside the fake, schema errors."""
        return [*(f"unknown route {r}" for r in self.unknown_routes), *self.errors, *self.schema_errors]

    # ----------------------------------------------------------------- world

    def add_guild(
        self,
        name: str = "Test Guild",
        *,
        owner_id: int | None = None,
        premium_tier: int = 0,
        upload_limit: int | None = None,
        everyone_permissions: int = w.DEFAULT_EVERYONE_PERMISSIONS,
        bot_permissions: int = w.DEFAULT_BOT_PERMISSIONS,
        locale: str = "en-US",
    ) -> w.Guild:
        """A guild with @everyone, a managed bot role, the bot and the owner as members (GUILD_CREATE if live)."""
        gid = w.snowflake()
        owner = self._users[owner_id] if owner_id is not None else self.owner
        guild = w.Guild(
            gid, name, owner.id, premium_tier=premium_tier, upload_limit=upload_limit, locale=locale
        )
        guild.roles[gid] = w.Role(gid, "@everyone", everyone_permissions, position=0)
        guild.bot_role_id = w.snowflake()
        guild.roles[guild.bot_role_id] = w.Role(
            guild.bot_role_id,
            self.bot_user.name,
            bot_permissions,
            position=1,
            managed=True,
            bot_id=self.bot_user_id,
        )
        guild.members[self.bot_user_id] = w.Member(self.bot_user, [guild.bot_role_id])
        guild.members[owner.id] = w.Member(owner)
        self._guilds[gid] = guild
        if self.gateway.intents & GUILDS:
            self.gateway.dispatch("GUILD_CREATE", self._guild_create(guild))
        return guild

    def add_role(self, guild_id: int, name: str, permissions: int = 0) -> int:
        """A new role; returns its id."""
        guild = self._guild(guild_id)
        role = w.Role(w.snowflake(), name, permissions, position=len(guild.roles))
        guild.roles[role.id] = role
        self._dispatch_guild(GUILDS, "GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.wire()})
        return role.id

    def set_role_permissions(self, guild_id: int, role_id: int, permissions: int) -> None:
        """Change a role's permission bitfield (``guild.bot_role_id`` for the bot, ``guild.id`` for @everyone)."""
        guild = self._guild(guild_id)
        role = guild.roles[int(role_id)]
        role.permissions = permissions
        self._dispatch_guild(GUILDS, "GUILD_ROLE_UPDATE", {"guild_id": str(guild.id), "role": role.wire()})

    def add_channel(
        self,
        guild_id: int,
        name: str = "general",
        *,
        overwrites: Iterable[dict[str, int]] = (),
        nsfw: bool = False,
    ) -> int:
        """A text channel; ``overwrites`` are ``{"id", "type": 0 role | 1 member, "allow", "deny"}``. Returns its id."""
        guild = self._guild(guild_id)
        channel = w.Channel(
            w.snowflake(),
            guild.id,
            name,
            position=len(guild.channels),
            nsfw=nsfw,
            overwrites=[dict(o) for o in overwrites],
        )
        guild.channels[channel.id] = channel
        self._channels[channel.id] = channel
        self._channel_messages[channel.id] = []
        self._dispatch_guild(GUILDS, "CHANNEL_CREATE", channel.wire())
        return channel.id

    def set_channel_overwrite(
        self, channel_id: int, target_id: int, *, allow: int = 0, deny: int = 0, type: int = 0
    ) -> None:
        """Set (replace) one permission overwrite on a channel (type 0 role, 1 member)."""
        channel = self._channel(channel_id)
        channel.overwrites = [o for o in channel.overwrites if o["id"] != int(target_id)]
        channel.overwrites.append({"id": int(target_id), "type": type, "allow": allow, "deny": deny})
        self._dispatch_guild(GUILDS, "CHANNEL_UPDATE", channel.wire())

    def delete_channel(self, channel_id: int) -> None:
        """Delete a channel: later requests to it get 404 10003 Unknown Channel."""
        channel = self._channel(channel_id)
        del self._channels[channel.id]
        del self._guilds[channel.guild_id].channels[channel.id]
        self._dispatch_guild(GUILDS, "CHANNEL_DELETE", channel.wire())
        self._changed()

    def add_member(
        self,
        guild_id: int,
        user_id: int | None = None,
        *,
        name: str | None = None,
        roles: Iterable[int] = (),
        permissions: int | None = None,
        nick: str | None = None,
        bot: bool = False,
    ) -> int:
        """A guild member (a new user unless ``user_id`` is known); ``permissions`` adds a role granting them."""
        guild = self._guild(guild_id)
        uid = int(user_id) if user_id is not None else w.snowflake()
        user = self._users.get(uid) or w.User(uid, name or f"user{len(self._users)}", bot=bot)
        self._users[uid] = user
        role_ids = [int(r) for r in roles]
        if permissions is not None:
            role_ids.append(self.add_role(guild.id, f"{user.name}-permissions", permissions))
        guild.members[uid] = w.Member(user, role_ids, nick=nick)
        if self.gateway.intents & GUILD_MEMBERS:
            self.gateway.dispatch(
                "GUILD_MEMBER_ADD", {**guild.members[uid].wire(), "guild_id": str(guild.id)}
            )
        return uid

    def guild(self, guild_id: int) -> w.Guild:
        """The guild record (roles, channels, members, limits) — mutate through the fd methods."""
        return self._guild(guild_id)

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """Commands the bot registered: global (``None``) or for one guild."""
        return list(self._commands.get(None if guild_id is None else int(guild_id), []))

    # ----------------------------------------------------------------- messages

    def messages(self, channel_id: int, *, include_ephemeral: bool = True) -> list[dict[str, Any]]:
        """The channel's current messages, oldest first (edits applied, deletions removed)."""
        ids = self._channel_messages.get(int(channel_id), [])
        stored = [self._messages[i] for i in ids]
        return [m.view() for m in stored if not m.deleted and (include_ephemeral or not m.ephemeral)]

    def message(self, message_id: int) -> dict[str, Any] | None:
        """One message as it is now (deleted ones have ``deleted: True``), or None."""
        stored = self._messages.get(int(message_id))
        return None if stored is None else stored.view()

    def attachment_bytes(self, attachment: dict[str, Any] | int) -> bytes:
        """The uploaded bytes of an attachment (its dict from a message, or its id)."""
        aid = attachment if isinstance(attachment, int) else int(attachment["id"])
        return self._blobs[aid]

    def age_message(self, message_id: int, seconds: float) -> None:
        """Pretend a message was created ``seconds`` earlier (for the 1 h edit rule)."""
        stored = self._messages[int(message_id)]
        stored.created_at -= seconds
        stored.data["timestamp"] = w.iso(stored.created_at)

    def post_user_message(
        self, user_id: int, channel_id: int, content: str, files: Iterable[tuple[str, bytes]] = ()
    ) -> int:
        """A user writes in a channel, with ``files`` as ``(filename, bytes)`` attachments (MESSAGE_CREATE
        to the bot); returns the message id."""
        channel = self._channel(channel_id)
        uploads = [
            RecordedFile(
                f"files[{i}]", name, mimetypes.guess_type(name)[0] or "application/octet-stream", data
            )
            for i, (name, data) in enumerate(files)
        ]
        stored = self._store_message(channel, self._users[int(user_id)], {"content": content}, uploads)
        return int(stored.data["id"])

    # ----------------------------------------------------------------- faults & recording

    def post_bot_message(
        self, channel_id: int, body: dict[str, Any], files: Iterable[tuple[str, bytes]] = ()
    ) -> int:
        """A message by the bot that the bot did not just send (``body`` as the bot would post it: content,
        components): one from an earlier run, a duplicate, an edit gone wrong. Returns its id."""
        channel = self._channel(channel_id)
        uploads = [
            RecordedFile(f"files[{i}]", name, "video/mp4", data) for i, (name, data) in enumerate(files)
        ]
        stored = self._store_message(channel, self.bot_user, body, uploads)
        return int(stored.data["id"])

    def delete_user_message(self, message_id: int) -> None:
        """The author deletes a message (MESSAGE_DELETE; later requests for it get 404 10008)."""
        stored = self._messages[int(message_id)]
        self._delete_message(self._channel(stored.data["channel_id"]), stored)

    def inject(
        self,
        method: str,
        path_regex: str,
        status: int,
        count: int | None = 1,
        *,
        code: int | None = None,
        message: str | None = None,
        retry_after: float = 0.5,
        is_global: bool = False,
        after: bool = False,
    ) -> Fault:
        """Answer the next ``count`` matching requests (``None``: until ``fault.cancel()``) with an error.

        ``method`` is e.g. "POST" or "*"; ``path_regex`` is searched in the path without /api/v10, e.g.
        ``r"^/channels/\\d+/messages$"``. 429 comes with the Via and X-RateLimit-* headers discord.py needs
        to treat it as a rate limit (and retry); other statuses with ``{"message", "code"}``; ``DROP``
        (``records.DROP``, 0) closes the connection without an answer. ``after=True``: Discord did it, then
        the answer was lost — the request is carried out (a message is created) and only a successful one
        is answered with ``status`` instead (or not at all: ``DROP``).
        """
        fault = Fault(method.upper(), path_regex, status, count, code, message, retry_after, is_global, after)
        self._faults.append(fault)
        return fault

    def hold(self, method: str, path_regex: str, count: int = 1) -> Hold:
        """Carry out the next ``count`` successful matching requests, but hold their answers until
        ``hold.release()`` (e.g. a result posted and visible, its id not yet known to the bot)."""
        held = Hold(method.upper(), path_regex, count)
        self._holds.append(held)
        return held

    def _take_hold(self, method: str, path: str) -> Hold | None:
        for held in self._holds:
            if held.count > 0 and held.method in ("*", method) and re.search(held.path_regex, path):
                held.count -= 1
                return held
        return None

    def requests_to(self, method: str, route: str) -> list[RecordedRequest]:
        """Recorded requests for one route template, e.g. ``("POST", "/channels/{channel_id}/messages")``."""
        return [r for r in self.requests if r.method == method.upper() and r.route == route]

    # ----------------------------------------------------------------- gateway events

    def _on_identify(self, session: Session) -> None:
        guilds = list(self._guilds.values())
        self.gateway.dispatch(
            "READY",
            {
                "v": 10,
                "user": {**self.bot_user.wire(), "verified": True, "mfa_enabled": False, "email": None},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.id,
                "session_type": "normal",
                # discord.py reconnects here after READY; the fake serves resumes on the same URL.
                "resume_gateway_url": self.gateway_url,
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": ["fake"],
                "shard": [0, 1],
                "_trace": ["fake-gateway"],
            },
        )
        for guild in guilds:
            self.gateway.dispatch("GUILD_CREATE", self._guild_create(guild))

    def _guild_create(self, guild: w.Guild) -> dict[str, Any]:
        # Without the members intent Discord only sends the bot's own member.
        members = (
            list(guild.members.values())
            if self.gateway.intents & GUILD_MEMBERS
            else [guild.members[self.bot_user_id]]
        )
        return guild.wire(members=members)

    def _on_members_request(self, data: dict[str, Any]) -> None:
        guild_ids = data.get("guild_id")
        for gid in guild_ids if isinstance(guild_ids, list) else [guild_ids]:
            guild = self._guilds.get(int(gid))
            if guild is None:
                continue
            wanted = {int(u) for u in data.get("user_ids") or []}
            members = [m.wire() for uid, m in guild.members.items() if not wanted or uid in wanted]
            self.gateway.dispatch(
                "GUILD_MEMBERS_CHUNK",
                {
                    "guild_id": str(guild.id),
                    "members": members,
                    "chunk_index": 0,
                    "chunk_count": 1,
                    "not_found": [],
                    "nonce": data.get("nonce"),
                },
            )

    def _dispatch_guild(self, intent: int, event: str, data: dict[str, Any]) -> None:
        if self.gateway.intents & intent:
            self.gateway.dispatch(event, data)

    async def drop_gateway(self, *, resumable: bool = True) -> None:
        """Close the bot's gateway socket; it reconnects and RESUMEs (or is told to IDENTIFY again)."""
        await self.gateway.drop(resumable=resumable)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send any raw DISPATCH event to the bot."""
        self.gateway.dispatch(event, data)

    # ----------------------------------------------------------------- interactions

    def _find_command(self, guild_id: int, name: str, ctype: int = 1) -> dict[str, Any] | None:
        for cmd in [*self._commands.get(guild_id, []), *self._commands.get(None, [])]:
            if cmd["name"] == name and cmd.get("type", 1) == ctype:
                return cmd
        return None

    def _interaction_base(
        self, itype: int, guild: w.Guild, channel: w.Channel, user_id: int, locale: str = "en-US"
    ) -> dict[str, Any]:
        member = guild.members.get(int(user_id))
        if member is None:
            raise ValueError(f"user {user_id} is not a member of guild {guild.id}; use fd.add_member()")
        limit = guild.attachment_size_limit
        return {
            "id": str(w.snowflake()),
            "application_id": str(self.application_id),
            "type": itype,
            "token": "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(96),
            "version": 1,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": guild.locale, "features": []},
            "channel_id": str(channel.id),
            "channel": {
                **channel.wire(),
                "permissions": str(guild.permissions_in(member.user.id, channel.id)),
            },
            "member": {**member.wire(), "permissions": str(guild.permissions_in(member.user.id, channel.id))},
            "app_permissions": str(guild.permissions_in(self.bot_user_id, channel.id)),
            "locale": locale,
            "guild_locale": guild.locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": limit,
        }

    def _record_interaction(self, payload: dict[str, Any], name: str, user_id: int) -> Interaction:
        if self.gateway.session is None:
            # Discord would never deliver it; failing here beats a test that times out waiting for an ack.
            raise RuntimeError("the bot has no gateway session yet: await fd.wait_until_ready() first")
        interaction = Interaction(
            fd=self,
            id=int(payload["id"]),
            token=payload["token"],
            type=payload["type"],
            guild_id=int(payload["guild_id"]),
            channel_id=int(payload["channel_id"]),
            user_id=int(user_id),
            name=name,
            payload=payload,
            attachment_size_limit=payload["attachment_size_limit"],
        )
        self._interactions[interaction.id] = interaction
        self._by_token[interaction.token] = interaction
        self.gateway.dispatch("INTERACTION_CREATE", payload)
        self._changed()
        return interaction

    def _encode_options(
        self,
        guild: w.Guild,
        schema: list[dict[str, Any]] | None,
        options: dict[str, Any],
        focused: str | None,
        resolved: dict[str, dict[str, Any]],
    ) -> list[dict[str, Any]]:
        by_name = {o["name"]: o for o in schema or []}
        if schema is not None:
            unknown = set(options) - set(by_name)
            missing = {
                n for n, o in by_name.items() if o.get("required") and n not in options and n != focused
            }
            if unknown or missing:
                raise ValueError(
                    f"options do not match the registered command: unknown {unknown}, missing {missing}"
                )
        out = []
        for name, value in options.items():
            opt = by_name.get(name)
            otype = (
                opt["type"]
                if opt
                else (
                    5
                    if isinstance(value, bool)
                    else 4
                    if isinstance(value, int)
                    else 10
                    if isinstance(value, float)
                    else 3
                )
            )
            entry: dict[str, Any] = {"name": name, "type": otype}
            if name == focused:
                entry.update(value=str(value), focused=True)  # what the user has typed so far
            elif otype in (6, 9) and int(value) in self._users:
                uid = int(value)
                resolved.setdefault("users", {})[str(uid)] = self._users[uid].wire()
                if uid in guild.members:
                    member = guild.members[uid].wire(with_user=False)
                    resolved.setdefault("members", {})[str(uid)] = {
                        **member,
                        "permissions": str(guild.base_permissions(uid)),
                    }
                entry["value"] = str(uid)
            elif otype in (8, 9):
                role = guild.roles[int(value)]
                resolved.setdefault("roles", {})[str(role.id)] = role.wire()
                entry["value"] = str(role.id)
            elif otype == 11:
                if not isinstance(value, dict) or "id" not in value:
                    raise ValueError(f"{name}: pass an attachment made with fd.attachment(filename, data)")
                resolved.setdefault("attachments", {})[str(value["id"])] = dict(value)
                entry["value"] = str(value["id"])
            elif otype == 7:
                channel = self._channel(value)
                resolved.setdefault("channels", {})[str(channel.id)] = {
                    **channel.wire(),
                    "permissions": str(w.ALL_PERMISSIONS),
                }
                entry["value"] = str(channel.id)
            else:
                choices = (opt or {}).get("choices")
                if choices and value not in [c["value"] for c in choices]:
                    raise ValueError(f"{name}={value!r} is not one of the command's choices")
                entry["value"] = value
            out.append(entry)
        return out

    def _command_data(
        self,
        guild: w.Guild,
        name: str,
        options: dict[str, Any] | None,
        subcommand: str | list[str] | None,
        focused: str | None,
    ) -> dict[str, Any]:
        command = self._find_command(guild.id, name)
        path = [subcommand] if isinstance(subcommand, str) else list(subcommand or [])
        schema = None if command is None else command.get("options", [])
        levels: list[dict[str, Any]] = []
        for part in path:
            opt = next((o for o in schema or [] if o["name"] == part and o["type"] in (1, 2)), None)
            if schema is not None and opt is None:
                raise ValueError(f"/{name} has no subcommand {part!r}")
            levels.append({"name": part, "type": opt["type"] if opt else (1 if part == path[-1] else 2)})
            schema = None if opt is None else opt.get("options", [])
        resolved: dict[str, dict[str, Any]] = {}
        leaf = self._encode_options(guild, schema, options or {}, focused, resolved)
        # Nest the options inside the subcommand (group) options, innermost last.
        for level in reversed(levels):
            level["options"] = leaf
            leaf = [level]
        data: dict[str, Any] = {
            "id": command["id"] if command else str(w.snowflake()),
            "name": name,
            "type": 1,
            "options": leaf,
        }
        if command and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]  # discord.py looks up guild commands by this
        if resolved:
            data["resolved"] = resolved
        return data

    async def slash(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        name: str,
        options: dict[str, Any] | None = None,
        subcommand: str | list[str] | None = None,
        *,
        locale: str = "en-US",
    ) -> Interaction:
        """A user runs ``/name [group] [sub] options...`` (INTERACTION_CREATE type 2); returns its record.

        Option types come from the registered command when the bot synced it (unknown or missing
        options raise ValueError), else from the Python values. User/role/channel values are ids;
        attachment values come from ``fd.attachment(filename, data)``. ``locale`` is the member's
        client language (``interaction.locale``).
        """
        guild = self._guild(guild_id)
        payload = self._interaction_base(2, guild, self._channel(channel_id), user_id, locale)
        payload["data"] = self._command_data(guild, name, options, subcommand, None)
        return self._record_interaction(payload, name, user_id)

    async def autocomplete(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        name: str,
        options: dict[str, Any],
        focused: str,
        subcommand: str | list[str] | None = None,
        timeout: float = 3.0,  # noqa: ASYNC109
    ) -> list[dict[str, Any]]:
        """The user types into option ``focused`` (INTERACTION_CREATE type 4); returns the bot's choices."""
        guild = self._guild(guild_id)
        payload = self._interaction_base(4, guild, self._channel(channel_id), user_id)
        payload["data"] = self._command_data(guild, name, options, subcommand, focused)
        interaction = self._record_interaction(payload, name, user_id)
        await interaction.acknowledged(timeout)
        if interaction.choices is None:
            raise AssertionError(f"autocomplete answered with type {interaction.response_type}, not 8")
        return interaction.choices

    async def click(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        message_id: int,
        custom_id: str,
        *,
        component_type: int = 2,
        values: list[str] | None = None,
        locale: str = "en-US",
    ) -> Interaction:
        """A user clicks a button (or picks ``values`` in a select) on a message (INTERACTION_CREATE type 3)."""
        guild = self._guild(guild_id)
        stored = self._messages.get(int(message_id))
        if stored is None or stored.deleted:
            raise ValueError(f"no message {message_id}")
        payload = self._interaction_base(3, guild, self._channel(channel_id), user_id, locale)
        payload["message"] = copy.deepcopy(stored.data)
        payload["data"] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            payload["data"]["values"] = values
        interaction = self._record_interaction(payload, custom_id, user_id)
        interaction.original_id = int(message_id)
        return interaction

    async def message_command(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        name: str,
        message_id: int,
        *,
        locale: str = "en-US",
    ) -> Interaction:
        """A user picks Apps → ``name`` on a message (a message command: INTERACTION_CREATE type 2,
        command type 3, with the target message in ``resolved.messages``)."""
        guild = self._guild(guild_id)
        stored = self._messages.get(int(message_id))
        if stored is None or stored.deleted:
            raise ValueError(f"no message {message_id}")
        command = self._find_command(guild.id, name, ctype=3)
        if command is None and self._commands:
            raise ValueError(f"the bot registered no message command named {name!r}")
        payload = self._interaction_base(2, guild, self._channel(channel_id), user_id, locale)
        data: dict[str, Any] = {
            "id": command["id"] if command else str(w.snowflake()),
            "name": name,
            "type": 3,
            "target_id": str(message_id),
            "resolved": {"messages": {str(message_id): copy.deepcopy(stored.data)}},
        }
        if command and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        payload["data"] = data
        return self._record_interaction(payload, name, user_id)

    async def submit_modal(
        self,
        opened: Interaction,
        values: dict[str, str] | None = None,
        *,
        locale: str = "en-US",
    ) -> Interaction:
        """The member who saw the modal the bot answered ``opened`` with (callback type 9) submits it
        (INTERACTION_CREATE type 5). Text inputs not in ``values`` are sent with the text the bot
        prefilled, as a client does; an unknown field, a missing required one or a value outside the
        input's length limits raises ValueError (Discord's client would not let it through)."""
        modal = opened.modal
        if modal is None:
            raise ValueError(f"interaction {opened.name!r} was not answered with a modal")
        values = dict(values or {})
        inputs: dict[str, dict[str, Any]] = {}
        rows: list[dict[str, Any]] = []
        for top in modal.get("components") or []:
            if top.get("type") == 18:  # a label around one component
                child = top.get("component") or {}
                if child.get("type") == 4:
                    inputs[child["custom_id"]] = child
                rows.append({"type": 18, "component": child, "id": top.get("id")})
            else:  # an action row
                for child in top.get("components") or []:
                    if child.get("type") == 4:
                        inputs[child["custom_id"]] = child
                rows.append({"type": 1, "components": list(top.get("components") or [])})
        unknown = set(values) - set(inputs)
        if unknown:
            raise ValueError(f"the modal has no text inputs {sorted(unknown)} (it has {sorted(inputs)})")
        filled: dict[str, str] = {}
        for cid, spec in inputs.items():
            value = values.get(cid, spec.get("value") or "")
            if spec.get("required", True) and not value:
                raise ValueError(f"the modal's text input {cid!r} is required")
            if value and not spec.get("min_length", 0) <= len(value) <= spec.get("max_length", 4000):
                raise ValueError(f"{cid!r}: {len(value)} characters is outside the input's limits")
            filled[cid] = value

        def submitted(child: dict[str, Any]) -> dict[str, Any]:
            if child.get("type") != 4:
                return child
            return {"type": 4, "custom_id": child["custom_id"], "value": filled[child["custom_id"]]}

        components = []
        for row in rows:
            if row["type"] == 18:
                entry = {"type": 18, "component": submitted(row["component"])}
                if row.get("id") is not None:
                    entry["id"] = row["id"]
                components.append(entry)
            else:
                components.append({"type": 1, "components": [submitted(c) for c in row["components"]]})
        guild = self._guild(opened.guild_id)
        payload = self._interaction_base(5, guild, self._channel(opened.channel_id), opened.user_id, locale)
        payload["data"] = {"custom_id": modal["custom_id"], "components": components}
        if opened.type == 3 and opened.original_id is not None:
            stored = self._messages.get(opened.original_id)
            if stored is not None and not stored.deleted:
                payload["message"] = copy.deepcopy(stored.data)
        interaction = self._record_interaction(payload, modal["custom_id"], opened.user_id)
        if "message" in payload:
            interaction.original_id = opened.original_id
        return interaction

    def attachment(self, filename: str, data: bytes, content_type: str | None = None) -> dict[str, Any]:
        """An uploaded file as Discord resolves it for an attachment option (type 11): pass it as the
        option's value. Its ``url`` serves the bytes (as Discord's CDN would)."""
        aid = w.snowflake()
        self._blobs[aid] = data
        url = f"{self.base_url}/attachments/0/{aid}/{filename}"
        return {
            "id": str(aid),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream",
            "ephemeral": True,
        }

    @staticmethod
    def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
        """Every button on a message (as the bot sent them), in order."""
        found: list[dict[str, Any]] = []

        def walk(items: list[dict[str, Any]]) -> None:
            for item in items:
                if item.get("type") == 2:
                    found.append(item)
                walk(item.get("components") or [])
                if isinstance(item.get("accessory"), dict):
                    walk([item["accessory"]])

        walk(message.get("components") or [])
        return found

    def interaction(self, interaction_id: int) -> Interaction:
        return self._interactions[int(interaction_id)]

    @property
    def interactions(self) -> list[Interaction]:
        """Every interaction dispatched, oldest first."""
        return list(self._interactions.values())

    def expire_token(self, interaction: Interaction) -> None:
        """Expire an interaction token now: follow-ups and @original edits get 401 50027."""
        interaction.expired = True

    # ----------------------------------------------------------------- reactions

    async def add_reaction(self, user_id: int, channel_id: int, message_id: int, emoji: str) -> None:
        """A user reacts (MESSAGE_REACTION_ADD with the full guild payload)."""
        channel = self._channel(channel_id)
        stored = self._message(channel, message_id)
        self._react(channel, stored, int(user_id), emoji, add=True)

    async def remove_reaction(self, user_id: int, channel_id: int, message_id: int, emoji: str) -> None:
        """A user removes a reaction (MESSAGE_REACTION_REMOVE)."""
        channel = self._channel(channel_id)
        stored = self._message(channel, message_id)
        self._react(channel, stored, int(user_id), emoji, add=False)

    @staticmethod
    def _emoji(emoji: str) -> tuple[str, dict[str, Any]]:
        m = re.fullmatch(r"<?a?:?(\w+):(\d+)>?", emoji)
        if m:
            return f"{m[1]}:{m[2]}", {"id": m[2], "name": m[1], "animated": emoji.startswith("<a:")}
        return emoji, {"id": None, "name": emoji}

    def _react(
        self, channel: w.Channel, stored: StoredMessage, user_id: int, emoji: str, *, add: bool
    ) -> bool:
        key, emoji_obj = self._emoji(emoji)
        users = stored.reactions.setdefault(key, ({**emoji_obj}, []))[1]
        if add == (user_id in users):
            return False  # nothing changes, and Discord dispatches nothing
        users.append(user_id) if add else users.remove(user_id)
        stored.sync_reactions(self.bot_user_id)
        guild = self._guilds[channel.guild_id]
        event = {
            "user_id": str(user_id),
            "channel_id": str(channel.id),
            "message_id": stored.data["id"],
            "guild_id": str(guild.id),
            "emoji": emoji_obj,
            "burst": False,
            "type": 0,
        }
        if add:
            member = guild.members.get(user_id)
            if member is not None:
                event["member"] = member.wire()
            event["message_author_id"] = stored.data["author"]["id"]
            event["burst_colors"] = []
        self._dispatch_guild(
            GUILD_MESSAGE_REACTIONS, "MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE", event
        )
        self._changed()
        return True

    # ----------------------------------------------------------------- lookups

    def _guild(self, guild_id: Any) -> w.Guild:
        try:
            return self._guilds[int(guild_id)]
        except (KeyError, ValueError):
            raise DiscordError(404, 10004) from None

    def _channel(self, channel_id: Any) -> w.Channel:
        try:
            return self._channels[int(channel_id)]
        except (KeyError, ValueError):
            raise DiscordError(404, 10003) from None

    def _message(self, channel: w.Channel, message_id: Any) -> StoredMessage:
        try:
            stored = self._messages[int(message_id)]
        except (KeyError, ValueError):
            raise DiscordError(404, 10008) from None
        if stored.deleted or stored.data["channel_id"] != str(channel.id):
            raise DiscordError(404, 10008)
        return stored

    def _require(self, channel: w.Channel, *bits: int) -> None:
        perms = self._guilds[channel.guild_id].permissions_in(self.bot_user_id, channel.id)
        if not perms & w.VIEW_CHANNEL:
            raise DiscordError(403, 50001)
        for bit in bits:
            if not perms & bit:
                raise DiscordError(403, 50013)

    # ----------------------------------------------------------------- message bodies

    def _check_body(self, body: dict[str, Any], files: list[RecordedFile], limit: int, *, new: bool) -> None:
        content = body.get("content")
        if content is not None and len(content) > 2000:
            raise _form_error(["content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = body.get("embeds") or []
        if len(embeds) > 10:
            raise _form_error(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        for i, embed in enumerate(embeds):
            for key, cap in (("title", 256), ("description", 4096)):
                if len(str(embed.get(key) or "")) > cap:
                    raise _form_error(
                        ["embeds", str(i), key], "BASE_TYPE_MAX_LENGTH", f"Must be {cap} or fewer in length."
                    )
        total = sum(
            len(str(e.get("title") or ""))
            + len(str(e.get("description") or ""))
            + sum(len(str(f.get("name", ""))) + len(str(f.get("value", ""))) for f in e.get("fields") or [])
            for e in embeds
        )
        if total > 6000:
            raise _form_error(
                ["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
            )
        if any(f.size > limit for f in files) or sum(f.size for f in files) > MAX_REQUEST_FILES_BYTES:
            raise DiscordError(413, 40005)
        if new and not (
            content
            or embeds
            or files
            or body.get("components")
            or body.get("sticker_ids")
            or body.get("poll")
        ):
            raise DiscordError(400, 50006)

    def _attachments(
        self,
        channel: w.Channel,
        body: dict[str, Any],
        files: list[RecordedFile],
        existing: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """The message's attachments after this request: kept ones (by id) plus the uploaded files."""
        uploads = {f.field.removeprefix("files[").rstrip("]"): f for f in files}
        if "attachments" not in body:
            listed = [*existing, *({"id": k} for k in uploads)]
        else:
            listed = body["attachments"] or []
        by_id = {a["id"]: a for a in existing}
        result = []
        for item in listed:
            key = str(item.get("id"))
            if key in uploads:
                upload = uploads[key]
                filename = item.get("filename") or upload.filename
                aid = w.snowflake()
                self._blobs[aid] = upload.data
                url = f"{self.base_url}/attachments/{channel.id}/{aid}/{filename}"
                result.append(
                    {
                        "id": str(aid),
                        "filename": filename,
                        "size": upload.size,
                        "url": url,
                        "proxy_url": url,
                        "content_type": mimetypes.guess_type(filename)[0] or "application/octet-stream",
                        "description": item.get("description"),
                        "title": item.get("title"),
                        "flags": 0,
                    }
                )
            elif key in by_id:
                result.append(by_id[key])
        return result

    def _mentions(self, content: str, allowed: dict[str, Any] | None) -> list[dict[str, Any]]:
        ids = [int(x) for x in re.findall(r"<@!?(\d+)>", content or "")]
        if allowed is not None:
            parse = allowed.get("parse") or []
            explicit = {int(u) for u in allowed.get("users") or []}
            ids = [i for i in ids if "users" in parse or i in explicit]
        return [self._users[i].wire() for i in dict.fromkeys(ids) if i in self._users]

    def _store_message(
        self,
        channel: w.Channel,
        author: w.User,
        body: dict[str, Any],
        files: list[RecordedFile],
        *,
        interaction: Interaction | None = None,
        flags: int | None = None,
    ) -> StoredMessage:
        mid = w.snowflake()
        now = time.time()
        allowed = body.get("allowed_mentions")
        flags = int(body.get("flags") or 0) if flags is None else flags
        data: dict[str, Any] = {
            "id": str(mid),
            "channel_id": str(channel.id),
            "author": author.wire(),
            "content": body.get("content") or "",
            "timestamp": w.iso(now),
            "edited_timestamp": None,
            "tts": bool(body.get("tts")),
            "mention_everyone": False,
            "mentions": self._mentions(body.get("content") or "", allowed),
            "mention_roles": [],
            "attachments": self._attachments(channel, body, files, []),
            "embeds": body.get("embeds") or [],
            "pinned": False,
            "type": 0,
            "flags": flags,
            "components": body.get("components") or [],
        }
        if body.get("nonce") is not None:
            data["nonce"] = body["nonce"]
        if ref := body.get("message_reference"):
            data["type"] = 19
            data["message_reference"] = {
                "type": 0,
                "channel_id": str(channel.id),
                "guild_id": str(channel.guild_id),
                **{k: str(v) for k, v in ref.items() if k.endswith("_id")},
            }
            referenced = self._messages.get(int(ref.get("message_id", 0)))
            data["referenced_message"] = None if referenced is None else referenced.data
        if interaction is not None:
            data["type"] = 20 if interaction.type == 2 else 0
            data["webhook_id"] = str(self.application_id)
            data["application_id"] = str(self.application_id)
            user = self._users[interaction.user_id].wire()
            data["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": user,
                "name": interaction.name,
                "command_type": 1,
                "authorizing_integration_owners": {"0": str(interaction.guild_id)},
            }
            data["interaction"] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "name": interaction.name,
                "user": user,
            }
        stored = StoredMessage(
            data,
            now,
            allowed_mentions=allowed,
            ephemeral=bool(flags & EPHEMERAL),
            interaction_id=None if interaction is None else interaction.id,
        )
        self._messages[mid] = stored
        self._channel_messages.setdefault(channel.id, []).append(mid)
        channel.last_message_id = mid
        if not stored.ephemeral:
            self._dispatch_message("MESSAGE_CREATE", channel, stored)
        self._changed()
        return stored

    def _edit_message(
        self,
        channel: w.Channel,
        stored: StoredMessage,
        body: dict[str, Any],
        files: list[RecordedFile],
        limit: int,
    ) -> StoredMessage:
        loading = bool(stored.data["flags"] & LOADING)
        age = time.time() - stored.created_at
        if self.old_message_edit_age is not None and age > self.old_message_edit_age and not loading:
            raise DiscordError(400, 30046)
        self._check_body(body, files, limit, new=False)
        data = stored.data
        for key in ("content", "embeds", "components"):
            if key in body:
                data[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "content" in body:
            data["mentions"] = self._mentions(data["content"], body.get("allowed_mentions"))
        if "attachments" in body or files:
            data["attachments"] = self._attachments(channel, body, files, data["attachments"])
        if "allowed_mentions" in body:
            stored.allowed_mentions = body["allowed_mentions"]
        if body.get("flags") is not None:
            # Only SUPPRESS_EMBEDS (and IS_COMPONENTS_V2) can change on edit.
            data["flags"] = (data["flags"] & ~(1 << 2)) | (int(body["flags"]) & ((1 << 2) | (1 << 15)))
        if loading:
            data["flags"] &= ~LOADING  # the deferred "thinking…" message becomes the real response
        else:
            stored.edited_at = time.time()
            data["edited_timestamp"] = w.iso(stored.edited_at)
        if not stored.ephemeral:
            self._dispatch_message("MESSAGE_UPDATE", channel, stored)
        self._changed()
        return stored

    def _delete_message(self, channel: w.Channel, stored: StoredMessage) -> None:
        stored.deleted = True
        if not stored.ephemeral:
            self._dispatch_guild(
                GUILD_MESSAGES,
                "MESSAGE_DELETE",
                {"id": stored.data["id"], "channel_id": str(channel.id), "guild_id": str(channel.guild_id)},
            )
        self._changed()

    def _dispatch_message(self, event: str, channel: w.Channel, stored: StoredMessage) -> None:
        if not self.gateway.intents & GUILD_MESSAGES:
            return
        guild = self._guilds[channel.guild_id]
        data = {**stored.data, "guild_id": str(guild.id)}
        author_id = int(data["author"]["id"])
        if author_id in guild.members and "webhook_id" not in data:
            data["member"] = guild.members[author_id].wire(with_user=False)
        mentioned = any(int(u["id"]) == self.bot_user_id for u in data["mentions"])
        # Without the privileged intent Discord blanks other users' content (unless the bot is mentioned).
        if not self.gateway.intents & MESSAGE_CONTENT and author_id != self.bot_user_id and not mentioned:
            data.update(content="", embeds=[], attachments=[], components=[])
        self.gateway.dispatch(event, data)

    # ----------------------------------------------------------------- HTTP plumbing

    @staticmethod
    def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        # Exactly "application/json": discord.py does not parse JSON sent with "; charset=utf-8".
        return web.Response(
            status=status,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    async def _unknown(self, request: web.Request) -> web.Response:
        await request.read()
        self.unknown_routes.append(f"{request.method} {request.path}")
        log.error("fake discord: unknown route %s %s", request.method, request.path)
        return self._json(404, {"message": "404: Not Found", "code": 0})

    def hold_download(self, attachment: dict[str, Any]) -> asyncio.Event:
        """Downloads of ``attachment`` from the CDN wait until the returned event is set (a slow host)."""
        event = self._cdn_holds[int(attachment["id"])] = asyncio.Event()
        return event

    def stall_original_edits(self, interaction: Interaction, stalled: bool = True) -> None:
        """Edits of the interaction's ``@original`` hang and are never applied (the answer is lost on
        the way, as when the bot dies while sending it) until called with ``stalled=False``."""
        if stalled:
            self._stalled_originals.add(interaction.id)
        else:
            self._stalled_originals.discard(interaction.id)

    async def _cdn(self, request: web.Request) -> web.Response:
        self.cdn_requests.append(int(request.match_info["attachment_id"]))
        hold = self._cdn_holds.get(int(request.match_info["attachment_id"]))
        if hold is not None:
            await hold.wait()
        data = self._blobs.get(int(request.match_info["attachment_id"]))
        if data is None:
            return web.Response(status=404, text="Not Found")
        ctype = mimetypes.guess_type(request.match_info["filename"])[0] or "application/octet-stream"
        return web.Response(body=data, content_type=ctype)

    async def _read_body(self, request: web.Request) -> tuple[Any, list[RecordedFile]]:
        ctype = request.content_type
        if ctype == "multipart/form-data":
            reader = await request.multipart()
            body: Any = None
            files: list[RecordedFile] = []
            while (part := await reader.next()) is not None:
                # Read in chunks so a 100 MiB upload never blocks the loop that also serves the gateway.
                chunks = bytearray()
                while chunk := await part.read_chunk(1 << 20):
                    chunks += chunk
                if part.name == "payload_json":
                    body = json.loads(chunks.decode())
                elif part.filename is not None:
                    files.append(
                        RecordedFile(
                            part.name or "",
                            part.filename,
                            part.headers.get("Content-Type", ""),
                            bytes(chunks),
                        )
                    )
            return body, files
        raw = await request.read()
        if not raw:
            return None, []
        return json.loads(raw), []

    async def _handle(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        path = "/" + unquote(request.match_info["tail"])
        method = request.method
        handler, route, params = self._route(method, path)
        record = RecordedRequest(method, path, route, dict(request.query), None, [], at)
        self.requests.append(record)
        headers: dict[str, str] = {}
        try:
            try:
                record.json, record.files = await self._read_body(request)
            except (ValueError, UnicodeDecodeError):
                raise DiscordError(400, 50109) from None
            if fault := self._take_fault(method, path, after=False):
                if fault.status == DROP:
                    return self._drop(request, record, "dropped before it was carried out")
                return self._fault_response(record, fault, route, params)
            # Discord counts every request in its bucket before looking at it (the edge does it).
            decision = self.rate_limiter.check(method, path, route, params)
            record.bucket = decision.bucket
            headers = decision.headers
            if decision.limited:
                return self._limited_response(record, decision)
            if errors := self._validate(record):
                # Discord refuses a body that breaks its schema; the bot should see that, not a fake success.
                raise DiscordError(
                    400, 50035, errors={"_errors": [{"code": "SCHEMA", "message": e} for e in errors]}
                )
            if handler is None:
                self.unknown_routes.append(f"{method} {path}")
                log.error("fake discord: unknown route %s %s", method, path)
                raise DiscordError(404, 0, "404: Not Found")
            if (
                not route.startswith(("/interactions/", "/webhooks/"))
                and request.headers.get("Authorization") != f"Bot {self.token}"
            ):
                raise DiscordError(401, 0, "401: Unauthorized")
            status, body = await handler(
                _Req(request, params, record.json, record.files, record, dict(request.query))
            )
        except DiscordError as err:
            status, body = err.status, err.body()
        except Exception as exc:  # a bug in the fake: answer like Discord would, but make the test see it
            log.exception("fake discord: error handling %s %s", method, path)
            self.errors.append(f"{method} {path}: {exc!r}")
            status, body = 500, {"message": "500: Internal Server Error", "code": 0}
        record.status, record.response = status, body
        self._changed()
        if status < 400 and (held := self._take_hold(method, path)):
            held.held.append(record)
            held._reached.set()
            await held._released.wait()
        if status < 300 and (lost := self._take_fault(method, path, after=True)):
            record.answer_lost = True
            if lost.status == DROP:
                return self._drop(request, record, "carried out, connection dropped before the answer")
            log.info("fake discord: %s %s carried out, answered %s instead", method, path, lost.status)
            response = self._fault_response(record, lost, route, params)
            record.response = body  # what Discord did (the message made), not what the bot got
            return response
        if status == 204 or body is None:
            return web.Response(status=204, headers=headers)
        return self._json(status, body, headers)

    def _drop(self, request: web.Request, record: RecordedRequest, what: str) -> web.Response:
        """Close the connection without an answer (the client sees the server disconnect)."""
        record.fault, record.status = True, DROP
        log.info("fake discord: %s %s %s", record.method, record.path, what)
        assert request.transport is not None
        request.transport.abort()
        self._changed()
        return web.Response(status=204)  # never reaches the client

    def _limited_response(self, record: RecordedRequest, decision: Decision) -> web.Response:
        """A 429 from an exhausted bucket or the global limit, recorded in ``rate_limit_hits``."""
        record.status, record.response, record.rate_limited = 429, decision.body, True
        self.rate_limit_hits.append(
            RateLimitHit(
                record.at,
                record.method,
                record.path,
                record.route,
                decision.bucket,
                decision.major,
                decision.scope,
                decision.retry_after,
            )
        )
        log.info(
            "fake discord: 429 %s %s (%s bucket %s, retry after %.3f s)",
            record.method,
            record.path,
            decision.scope,
            decision.bucket,
            decision.retry_after,
        )
        self._changed()
        return self._json(429, decision.body, decision.headers)

    def set_rate_limits(self, limits: RateLimits | None) -> None:
        """Replace the enforced limits (``None``: off); every bucket starts afresh."""
        self.rate_limiter = RateLimiter(limits)

    def rate_limit_counts(self, *, injected: bool | None = None) -> dict[str, int]:
        """429s served per bucket name (``"global"`` for the global limit); ``injected`` filters."""
        counts: dict[str, int] = {}
        for hit in self.rate_limit_hits:
            if injected is None or hit.injected == injected:
                counts[hit.bucket] = counts.get(hit.bucket, 0) + 1
        return counts

    def _validate(self, record: RecordedRequest) -> list[str]:
        if self._validator is None or record.json is None:
            return []
        errors = self._validator.validate(record.method, record.path, record.json, multipart=record.multipart)
        self.schema_errors.extend(errors)
        return errors

    def _take_fault(self, method: str, path: str, *, after: bool) -> Fault | None:
        for fault in self._faults:
            if (
                fault.after == after
                and (fault.count is None or fault.count > 0)
                and fault.method in ("*", method)
                and re.search(fault.path_regex, path)
            ):
                fault.hits += 1
                if fault.count is not None:
                    fault.count -= 1
                return fault
        return None

    def _fault_response(
        self, record: RecordedRequest, fault: Fault, route: str, params: dict[str, str]
    ) -> web.Response:
        record.fault = True
        record.status = fault.status
        if fault.status == 429:
            bucket, major = classify(record.method, route, params)
            body = limited_body(fault.retry_after, is_global=fault.is_global, message=fault.message)
            if fault.code is not None:
                body["code"] = fault.code
            scope = "global" if fault.is_global else "user"
            headers = {
                **limited_headers(fault.retry_after, scope),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + fault.retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}",
                "X-RateLimit-Bucket": bucket_hash(bucket),
            }
            if fault.is_global:
                headers["X-RateLimit-Global"] = "true"
            record.rate_limited = True
            self.rate_limit_hits.append(
                RateLimitHit(
                    record.at,
                    record.method,
                    record.path,
                    route,
                    "global" if fault.is_global else bucket,
                    major,
                    scope,
                    fault.retry_after,
                    injected=True,
                )
            )
        else:
            body = DiscordError(fault.status, fault.code or 0, fault.message).body()
            headers = {}
        record.response = body
        self._changed()
        return self._json(fault.status, body, headers)

    def _route(self, method: str, path: str) -> tuple[Handler | None, str, dict[str, str]]:
        for m, template, pattern, handler in self._routes:
            if m == method and (match := pattern.match(path)):
                return handler, template, match.groupdict()
        templates = [t for _, t, p, _ in self._routes if p.match(path)]
        return None, templates[0] if templates else "?", {}

    def _build_routes(self) -> list[tuple[str, str, re.Pattern[str], Handler]]:
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/users/@me", self._get_me),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/@me", self._get_application),
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway),
            ("GET", "/applications/{application_id}/commands", self._get_commands),
            ("PUT", "/applications/{application_id}/commands", self._put_commands),
            ("POST", "/applications/{application_id}/commands", self._post_command),
            ("DELETE", "/applications/{application_id}/commands/{command_id}", self._delete_command),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._get_commands),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self._post_command),
            (
                "DELETE",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self._delete_command,
            ),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback),
            ("GET", "/webhooks/{application_id}/{token}/messages/@original", self._get_webhook_message),
            ("PATCH", "/webhooks/{application_id}/{token}/messages/@original", self._patch_webhook_message),
            ("DELETE", "/webhooks/{application_id}/{token}/messages/@original", self._delete_webhook_message),
            ("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", self._get_webhook_message),
            (
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._patch_webhook_message,
            ),
            (
                "DELETE",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._delete_webhook_message,
            ),
            ("POST", "/webhooks/{application_id}/{token}", self._post_followup),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("GET", "/channels/{channel_id}/messages", self._get_messages),
            ("POST", "/channels/{channel_id}/messages", self._post_message),
            ("POST", "/channels/{channel_id}/typing", self._typing),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._patch_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_channel_message),
            ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self._put_reaction),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._delete_reaction,
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/{user_id}",
                self._delete_reaction,
            ),
            ("GET", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", self._get_reactions),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}",
                self._clear_reactions,
            ),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions", self._clear_reactions),
            ("GET", "/guilds/{guild_id}", self._get_guild),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member),
            ("GET", "/guilds/{guild_id}/roles", self._get_roles),
            ("GET", "/users/{user_id}", self._get_user),
        ]
        routes = []
        for method, template, handler in table:
            pattern = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")
            routes.append((method, template, pattern, handler))
        return routes

    # ----------------------------------------------------------------- REST: identity

    async def _get_me(self, req: _Req) -> tuple[int, Any]:
        return 200, {
            **self.bot_user.wire(),
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "locale": "en-US",
        }

    async def _get_application(self, req: _Req) -> tuple[int, Any]:
        return 200, {
            "id": str(self.application_id),
            "name": self.bot_user.name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "verify_key": secrets.token_hex(32),
            "owner": self.owner.wire(),
            "team": None,
            "flags": 0,
            "bot": self.bot_user.wire(),
            "hook": True,
            "guild_id": None,
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "approximate_guild_count": len(self._guilds),
            "integration_types_config": {"0": {}},
            "is_monetized": False,
            "is_verified": False,
            "is_discoverable": False,
            "rpc_origins": [],
        }

    async def _get_gateway(self, req: _Req) -> tuple[int, Any]:
        return 200, {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        }

    # ----------------------------------------------------------------- REST: commands

    def _command_scope(self, req: _Req) -> int | None:
        if int(req.params["application_id"]) != self.application_id:
            raise DiscordError(403, 50001)
        if "guild_id" in req.params:
            return self._guild(req.params["guild_id"]).id
        return None

    def _store_command(
        self, scope: int | None, body: dict[str, Any], old: list[dict[str, Any]]
    ) -> dict[str, Any]:
        # Discord keeps a command's id when a bulk overwrite re-sends the same name and type.
        same = next((c for c in old if c["name"] == body["name"] and c["type"] == body.get("type", 1)), None)
        return {
            "id": same["id"] if same else str(w.snowflake()),
            "application_id": str(self.application_id),
            "version": str(w.snowflake()),
            "type": body.get("type", 1),
            "name": body["name"],
            "description": body.get("description", ""),
            "options": body.get("options") or [],
            "default_member_permissions": body.get("default_member_permissions"),
            "dm_permission": body.get("dm_permission", True),
            "nsfw": body.get("nsfw", False),
            "contexts": body.get("contexts"),
            "integration_types": body.get("integration_types") or [0],
            "name_localizations": body.get("name_localizations"),
            "description_localizations": body.get("description_localizations"),
            **({"guild_id": str(scope)} if scope is not None else {}),
        }

    async def _get_commands(self, req: _Req) -> tuple[int, Any]:
        return 200, self.commands(self._command_scope(req))

    async def _put_commands(self, req: _Req) -> tuple[int, Any]:
        scope = self._command_scope(req)
        old = self._commands.get(scope, [])
        self._commands[scope] = [self._store_command(scope, c, old) for c in req.json or []]
        self.command_syncs.append((scope, req.json or []))
        return 200, self._commands[scope]

    async def _post_command(self, req: _Req) -> tuple[int, Any]:
        scope = self._command_scope(req)
        old = self._commands.get(scope, [])
        command = self._store_command(scope, req.json, old)
        self._commands[scope] = [c for c in old if c["id"] != command["id"]] + [command]
        return 201, command

    async def _delete_command(self, req: _Req) -> tuple[int, Any]:
        scope = self._command_scope(req)
        old = self._commands.get(scope, [])
        if not any(c["id"] == req.params["command_id"] for c in old):
            raise DiscordError(404, 10063)
        self._commands[scope] = [c for c in old if c["id"] != req.params["command_id"]]
        return 204, None

    # ----------------------------------------------------------------- REST: interactions

    def _interaction_for_webhook(self, req: _Req) -> Interaction:
        interaction = self._by_token.get(req.params["token"])
        if int(req.params["application_id"]) != self.application_id or interaction is None:
            raise DiscordError(404, 10015)
        if interaction.expired or time.monotonic() - interaction.created > self.token_lifetime:
            raise DiscordError(401, 50027)
        return interaction

    async def _callback(self, req: _Req) -> tuple[int, Any]:
        interaction = self._interactions.get(int(req.params["interaction_id"]))
        body = req.json or {}
        if interaction is not None:
            interaction.responses.append(body)
        if interaction is None or interaction.token != req.params["token"]:
            raise DiscordError(404, 10062)
        if interaction.initial is not None:
            raise DiscordError(400, 40060)
        if req.record.at - interaction.created > self.interaction_deadline or interaction.expired:
            raise DiscordError(404, 10062)
        rtype = body.get("type")
        data = body.get("data") or {}
        allowed = {2: (4, 5, 9), 3: (4, 5, 6, 7, 9), 4: (8,), 5: (4, 5, 6, 7)}[interaction.type]
        if rtype not in allowed:
            raise _form_error(["type"], "BASE_TYPE_CHOICES", f"Value must be one of {allowed}.")
        channel = self._channel(interaction.channel_id)
        stored: StoredMessage | None = None
        if rtype == 4:
            self._check_body(data, req.files, interaction.attachment_size_limit, new=True)
            stored = self._store_message(channel, self.bot_user, data, req.files, interaction=interaction)
            interaction.original_id = int(stored.data["id"])
        elif rtype == 5:
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            stored = self._store_message(channel, self.bot_user, {}, [], interaction=interaction, flags=flags)
            interaction.original_id = int(stored.data["id"])
        elif rtype == 7:
            if interaction.original_id is None:
                raise DiscordError(400, 50035, "Interaction has no message to update")
            stored = self._message(channel, interaction.original_id)
            self._edit_message(channel, stored, data, req.files, interaction.attachment_size_limit)
        elif rtype == 9:
            interaction.modal = data
        interaction.initial = body
        interaction.acked_at = req.record.at
        self._changed()
        if req.query.get("with_response") not in ("1", "true", "True"):
            return 204, None
        result: dict[str, Any] = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.type,
                "response_message_loading": rtype == 5,
                "response_message_ephemeral": bool(stored and stored.ephemeral),
            },
            "resource": {"type": rtype},
        }
        if stored is not None:
            result["interaction"]["response_message_id"] = stored.data["id"]
            result["resource"]["message"] = stored.data
        return 200, result

    def _webhook_target(self, req: _Req, interaction: Interaction) -> tuple[w.Channel, StoredMessage]:
        channel = self._channel(interaction.channel_id)
        mid = req.params.get("message_id")
        if mid is None:  # @original
            if interaction.original_id is None:
                raise DiscordError(404, 10008)
            mid = interaction.original_id
        stored = self._message(channel, mid)
        if stored.data.get("webhook_id") != str(self.application_id) and interaction.type != 3:
            raise DiscordError(404, 10008)
        return channel, stored

    async def _get_webhook_message(self, req: _Req) -> tuple[int, Any]:
        interaction = self._interaction_for_webhook(req)
        return 200, self._webhook_target(req, interaction)[1].data

    async def _patch_webhook_message(self, req: _Req) -> tuple[int, Any]:
        interaction = self._interaction_for_webhook(req)
        if interaction.id in self._stalled_originals and req.params.get("message_id") is None:
            while interaction.id in self._stalled_originals:
                await asyncio.sleep(0.05)
            raise DiscordError(503, 0)  # never applied: the sender is gone by now
        channel, stored = self._webhook_target(req, interaction)
        self._edit_message(channel, stored, req.json or {}, req.files, interaction.attachment_size_limit)
        return 200, stored.data

    async def _delete_webhook_message(self, req: _Req) -> tuple[int, Any]:
        interaction = self._interaction_for_webhook(req)
        channel, stored = self._webhook_target(req, interaction)
        self._delete_message(channel, stored)
        return 204, None

    async def _post_followup(self, req: _Req) -> tuple[int, Any]:
        interaction = self._interaction_for_webhook(req)
        if interaction.initial is None:
            raise DiscordError(404, 10015)  # no follow-ups before the interaction is acknowledged
        channel = self._channel(interaction.channel_id)
        body = req.json or {}
        self._check_body(body, req.files, interaction.attachment_size_limit, new=True)
        original = None if interaction.original_id is None else self._messages.get(interaction.original_id)
        if original is not None and original.data["flags"] & LOADING and not original.deleted:
            # Discord fills the deferred "thinking…" message with the first follow-up.
            stored = self._edit_message(
                channel, original, {"content": "", **body}, req.files, interaction.attachment_size_limit
            )
        else:
            stored = self._store_message(channel, self.bot_user, body, req.files, interaction=interaction)
        interaction.followup_ids.append(int(stored.data["id"]))
        self._changed()
        if req.query.get("wait") not in ("1", "true", "True"):
            return 204, None
        return 200, stored.data

    # ----------------------------------------------------------------- REST: channels & messages

    async def _get_channel(self, req: _Req) -> tuple[int, Any]:
        return 200, self._channel(req.params["channel_id"]).wire()

    async def _get_messages(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel(req.params["channel_id"])
        self._require(channel, w.READ_MESSAGE_HISTORY)
        limit = int(req.query.get("limit", 50))
        visible = [
            m.data
            for m in map(self._messages.get, self._channel_messages[channel.id])
            if m and not m.deleted and not m.ephemeral
        ]
        return 200, list(reversed(visible))[:limit]

    async def _post_message(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel(req.params["channel_id"])
        body = req.json or {}
        self._require(channel, w.SEND_MESSAGES, *([w.ATTACH_FILES] if req.files else []))
        guild = self._guilds[channel.guild_id]
        self._check_body(body, req.files, guild.attachment_size_limit, new=True)
        if ref := body.get("message_reference"):
            if (
                body.get("message_reference", {}).get("fail_if_not_exists", True)
                and int(ref.get("message_id", 0)) not in self._messages
            ):
                raise _form_error(
                    ["message_reference"], "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
        nonce = None if body.get("nonce") is None else str(body["nonce"])
        if nonce is not None and body.get("enforce_nonce"):
            # Discord: a nonce seen in this channel in the past few minutes returns that message, no new one.
            mid, at = self._nonces.get((channel.id, nonce), (0, 0.0))
            earlier = self._messages.get(mid)
            if earlier is not None and not earlier.deleted and time.time() - at < self.nonce_window:
                log.info(
                    "fake discord: nonce %r seen %.1f s ago: message %s returned again",
                    nonce,
                    time.time() - at,
                    mid,
                )
                return 200, earlier.data
        stored = self._store_message(
            channel,
            self.bot_user,
            body,
            req.files,
            flags=int(body.get("flags") or 0) & ((1 << 2) | (1 << 12) | (1 << 15)),
        )  # SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS, IS_COMPONENTS_V2
        if nonce is not None:
            self._nonces[(channel.id, nonce)] = (int(stored.data["id"]), time.time())
        return 200, stored.data

    async def _typing(self, req: _Req) -> tuple[int, Any]:
        self._require(self._channel(req.params["channel_id"]), w.SEND_MESSAGES)
        return 204, None

    async def _get_message(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel(req.params["channel_id"])
        self._require(channel, w.READ_MESSAGE_HISTORY)
        stored = self._message(channel, req.params["message_id"])
        if stored.ephemeral:
            raise DiscordError(404, 10008)
        return 200, stored.data

    async def _patch_message(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel(req.params["channel_id"])
        stored = self._message(channel, req.params["message_id"])
        if stored.data["author"]["id"] != str(self.bot_user_id) or stored.ephemeral:
            raise DiscordError(403, 50005)
        guild = self._guilds[channel.guild_id]
        self._edit_message(channel, stored, req.json or {}, req.files, guild.attachment_size_limit)
        return 200, stored.data

    async def _delete_channel_message(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel(req.params["channel_id"])
        stored = self._message(channel, req.params["message_id"])
        if stored.data["author"]["id"] != str(self.bot_user_id):
            self._require(channel, w.MANAGE_MESSAGES)
        self._delete_message(channel, stored)
        return 204, None

    async def _put_reaction(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel(req.params["channel_id"])
        stored = self._message(channel, req.params["message_id"])
        key, _ = self._emoji(req.params["emoji"])
        exists = key in stored.reactions
        self._require(channel, w.READ_MESSAGE_HISTORY, *([] if exists else [w.ADD_REACTIONS]))
        self._react(channel, stored, self.bot_user_id, req.params["emoji"], add=True)
        return 204, None

    async def _delete_reaction(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel(req.params["channel_id"])
        stored = self._message(channel, req.params["message_id"])
        user_id = int(req.params.get("user_id") or self.bot_user_id)
        if user_id != self.bot_user_id:
            self._require(channel, w.MANAGE_MESSAGES)
        self._react(channel, stored, user_id, req.params["emoji"], add=False)
        return 204, None

    async def _get_reactions(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel(req.params["channel_id"])
        stored = self._message(channel, req.params["message_id"])
        _, users = stored.reactions.get(self._emoji(req.params["emoji"])[0], ({}, []))
        return 200, [self._users[u].wire() for u in users]

    async def _clear_reactions(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel(req.params["channel_id"])
        stored = self._message(channel, req.params["message_id"])
        self._require(channel, w.MANAGE_MESSAGES)
        only = self._emoji(req.params["emoji"])[0] if "emoji" in req.params else None
        for key, (_, users) in list(stored.reactions.items()):
            if only is None or key == only:
                for uid in list(users):
                    self._react(channel, stored, uid, key, add=False)
        return 204, None

    # ----------------------------------------------------------------- REST: guilds & users

    async def _get_guild(self, req: _Req) -> tuple[int, Any]:
        guild = self._guild(req.params["guild_id"])
        return 200, {**guild.rest_wire(), "approximate_member_count": len(guild.members)}

    async def _get_guild_channels(self, req: _Req) -> tuple[int, Any]:
        return 200, [c.wire() for c in self._guild(req.params["guild_id"]).channels.values()]

    async def _get_member(self, req: _Req) -> tuple[int, Any]:
        guild = self._guild(req.params["guild_id"])
        member = guild.members.get(int(req.params["user_id"]))
        if member is None:
            raise DiscordError(404, 10007)
        return 200, member.wire()

    async def _get_roles(self, req: _Req) -> tuple[int, Any]:
        return 200, [r.wire() for r in self._guild(req.params["guild_id"]).roles.values()]

    async def _get_user(self, req: _Req) -> tuple[int, Any]:
        user = self._users.get(int(req.params["user_id"]))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return 200, user.wire()
