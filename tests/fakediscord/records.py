"""What the fake records for tests to assert on: requests, interactions, faults."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import FakeDiscord


@dataclass
class RecordedFile:
    field: str
    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the /api/v10 prefix, e.g. /channels/123/messages
    route: str  # the route template, e.g. /channels/{channel_id}/messages ("?" when unknown)
    query: dict[str, str]
    json: Any  # the JSON body, or the parsed payload_json of a multipart request
    files: list[RecordedFile]
    at: float  # time.monotonic() when the request arrived
    status: int = 0
    response: Any = None
    fault: bool = False  # answered by fd.inject(), not by the route
    rate_limited: bool = False  # answered 429 (an exhausted bucket, the global limit, or injected)
    #: Carried out, then its answer lost (``fd.inject(..., after=True)``): ``response`` is what the route
    #: answered (the created message), ``status`` what the bot got (0: the connection was dropped).
    answer_lost: bool = False
    bucket: str = ""  # the rate-limit bucket it was counted in, e.g. "message-create"

    @property
    def multipart(self) -> bool:
        return bool(self.files)


#: ``fd.inject(..., DROP)``: close the connection instead of answering.
DROP = 0


@dataclass
class Fault:
    method: str
    path_regex: str
    status: int
    count: int | None  # None: until cancelled
    code: int | None = None
    message: str | None = None
    retry_after: float = 0.5
    is_global: bool = False
    #: The request is carried out first (a message is created), then ``status`` is answered instead;
    #: status ``DROP``: the connection is closed without an answer.
    after: bool = False
    hits: int = 0

    def cancel(self) -> None:
        """Stop injecting this fault."""
        self.count = 0


@dataclass
class Hold:
    """Matching requests are carried out (a message is stored and shown), then their answer waits
    until ``release()``: the window where Discord has done something and the bot does not know yet."""

    method: str
    path_regex: str
    count: int
    held: list[RecordedRequest] = field(default_factory=list)
    _reached: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def reached(self, timeout: float = 60.0) -> RecordedRequest:  # noqa: ASYNC109
        """Wait until a request is held; the first one held."""
        await asyncio.wait_for(self._reached.wait(), timeout)
        return self.held[0]

    def release(self) -> None:
        """Send the held answers, and stop holding."""
        self.count = 0
        self._released.set()


@dataclass
class Interaction:
    """One interaction the fake dispatched, and everything the bot did with it."""

    fd: FakeDiscord = field(repr=False)
    id: int
    token: str
    type: int  # 2 command, 3 component, 4 autocomplete, 5 modal submit
    guild_id: int
    channel_id: int
    user_id: int
    name: str  # command name, or custom_id for components
    payload: dict[str, Any] = field(repr=False)
    created: float = field(default_factory=time.monotonic)
    initial: dict[str, Any] | None = None  # the accepted initial callback body {"type": ..., "data": ...}
    acked_at: float | None = None
    responses: list[dict[str, Any]] = field(default_factory=list)  # every callback body, accepted or not
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    expired: bool = False
    attachment_size_limit: int = 0
    modal: dict[str, Any] | None = None  # the modal the bot answered with (callback type 9)

    @property
    def ack_latency(self) -> float | None:
        """Seconds from dispatch to the accepted initial response, or None if not acknowledged."""
        return None if self.acked_at is None else self.acked_at - self.created

    @property
    def answered_at(self) -> float | None:
        """When the member first saw text: the initial response if it carried a message (type 4), else
        the first accepted edit of the deferred response (``@original``); None if neither yet."""
        if self.response_type == 4 and ((self.initial or {}).get("data") or {}).get("content"):
            return self.acked_at
        return next(
            (
                r.at
                for r in self.fd.requests
                if r.method == "PATCH"
                and r.route == "/webhooks/{application_id}/{token}/messages/@original"
                and r.status == 200
                and self.token in r.path
            ),
            None,
        )

    @property
    def response_type(self) -> int | None:
        return None if self.initial is None else self.initial["type"]

    @property
    def ephemeral(self) -> bool:
        """Whether the initial response was ephemeral (flags & 64)."""
        data = (self.initial or {}).get("data") or {}
        return bool((data.get("flags") or 0) & 64)

    @property
    def original(self) -> dict[str, Any] | None:
        """The message the initial response created (or, for components, the clicked message), as it is now."""
        return None if self.original_id is None else self.fd.message(self.original_id)

    @property
    def followups(self) -> list[dict[str, Any]]:
        """Follow-up messages as they are now (a follow-up that filled a deferred response is the original)."""
        return [m for mid in self.followup_ids if (m := self.fd.message(mid)) is not None]

    @property
    def choices(self) -> list[dict[str, Any]] | None:
        """Autocomplete choices the bot answered (type 8), else None."""
        if self.response_type != 8:
            return None
        return (self.initial.get("data") or {}).get("choices", [])  # type: ignore[union-attr]

    async def acknowledged(self, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait for the accepted initial response and return its body; TimeoutError if none came."""
        await self.fd.wait_for(
            lambda: self.initial is not None, timeout, what=f"ack of interaction {self.name}"
        )
        assert self.initial is not None
        return self.initial
