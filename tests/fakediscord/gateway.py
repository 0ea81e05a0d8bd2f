"""The fake gateway: HELLO, IDENTIFY/RESUME, heartbeats, sequenced dispatches, resumable drops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

# Opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE_STATE, RESUME, RECONNECT = 0, 1, 2, 3, 4, 6, 7
REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 8, 9, 10, 11

# Intents the fake looks at when deciding what to dispatch.
GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_MESSAGES = 1 << 9
GUILD_MESSAGE_REACTIONS = 1 << 10
MESSAGE_CONTENT = 1 << 15

REPLAY_BUFFER = 10_000


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)


@dataclass
class Session:
    id: str
    intents: int
    seq: int = 0
    # Sent dispatches kept for RESUME, as Discord does for a while after a disconnect.
    buffer: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=REPLAY_BUFFER))
    conn: _Connection | None = None


class Gateway:
    """One bot session at a time, which is all a single-shard bot uses."""

    def __init__(
        self,
        token: str,
        *,
        heartbeat_interval_ms: int,
        on_identify: Callable[[Session], None],
        on_members_request: Callable[[dict[str, Any]], None],
        changed: Callable[[], None],
    ) -> None:
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.session: Session | None = None
        self.ready = asyncio.Event()
        self.connections = 0
        self.identifies = 0
        self.resumes = 0
        self.heartbeats = 0
        self.urls: list[str] = []  # the URLs (with query) the client connected to
        self._on_identify = on_identify
        self._on_members_request = on_members_request
        self._changed = changed
        self._sockets: set[web.WebSocketResponse] = set()

    @property
    def intents(self) -> int:
        return self.session.intents if self.session else 0

    def dispatch(self, event: str, data: dict[str, Any]) -> int | None:
        """Queue a sequenced DISPATCH; buffered for RESUME while the client is away. Returns its seq."""
        session = self.session
        if session is None:
            log.debug("no gateway session: dropped %s", event)
            return None
        session.seq += 1
        frame = json.dumps({"op": DISPATCH, "t": event, "s": session.seq, "d": data})
        session.buffer.append((session.seq, frame))
        if session.conn is not None:
            session.conn.queue.put_nowait(frame)
        return session.seq

    def _send(self, conn: _Connection, op: int, data: Any) -> None:
        conn.queue.put_nowait(json.dumps({"op": op, "d": data, "s": None, "t": None}))

    async def drop(self, *, resumable: bool = True, code: int = 4000) -> None:
        """Close the socket from the server side; the client reconnects (and resumes when allowed)."""
        self.ready.clear()
        session = self.session
        if session is None or session.conn is None:
            return
        conn, session.conn = session.conn, None
        if not resumable:
            self.session = None
        conn.queue.put_nowait(None)
        await conn.ws.close(code=code, message=b"fake drop")

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"fake discord shutting down")

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.connections += 1
        self.urls.append(str(request.rel_url))
        conn = _Connection(ws)
        writer = asyncio.create_task(self._writer(conn), name="fakediscord-gateway-writer")
        # Discord answers in JSON text frames whatever compression the URL asks for; discord.py only
        # decompresses binary frames, so this is both valid and simplest.
        self._send(
            conn, HELLO, {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake-gateway"]}
        )
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                await self._on_frame(conn, json.loads(msg.data))
        finally:
            self._sockets.discard(ws)
            if self.session is not None and self.session.conn is conn:
                self.session.conn = None
                self.ready.clear()
            conn.queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._changed()
        return ws

    async def _writer(self, conn: _Connection) -> None:
        # One writer per socket keeps frames in sequence order without a lock around every send.
        while (frame := await conn.queue.get()) is not None:
            if conn.ws.closed:
                return
            try:
                await conn.ws.send_str(frame)
            except ConnectionError:
                return

    async def _on_frame(self, conn: _Connection, msg: dict[str, Any]) -> None:
        op, data = msg.get("op"), msg.get("d")
        if op == HEARTBEAT:
            self.heartbeats += 1
            self._send(conn, HEARTBEAT_ACK, None)
        elif op == IDENTIFY:
            if data.get("token") != self.token:
                await conn.ws.close(code=4004, message=b"Authentication failed.")
                return
            self.identifies += 1
            old = self.session
            if old is not None and old.conn is not None and old.conn is not conn:
                old.conn.queue.put_nowait(None)
                await old.conn.ws.close(code=4000)
            self.session = Session(id=secrets.token_hex(16), intents=int(data.get("intents", 0)), conn=conn)
            self._on_identify(self.session)  # READY + GUILD_CREATEs
            self.ready.set()
            self._changed()
        elif op == RESUME:
            session = self.session
            if (
                session is None
                or data.get("session_id") != session.id
                or data.get("token") != self.token
                or (session.buffer and (data.get("seq") or 0) < session.buffer[0][0] - 1)
            ):
                # d=false: not resumable; the client identifies again.
                self._send(conn, INVALID_SESSION, False)
                return
            self.resumes += 1
            seq = data.get("seq") or 0
            for s, frame in list(session.buffer):
                if s > seq:
                    conn.queue.put_nowait(frame)
            session.conn = conn
            self.dispatch("RESUMED", {"_trace": ["fake-gateway"]})
            self.ready.set()
            self._changed()
        elif op == REQUEST_MEMBERS:
            self._on_members_request(data)
        elif op in (PRESENCE, VOICE_STATE):
            pass
        else:
            log.warning("fake gateway: unhandled opcode %s", op)
