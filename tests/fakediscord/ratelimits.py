"""Discord's rate limits as bots observe them, enforced per bucket with the headers discord.py reads.

Discord publishes no numbers (bots must read ``X-RateLimit-*``); these defaults are what bots in the
field observe (NOTES.md, "Discord, more"):

- message create: 5 per 5 s per channel;
- message edit and delete: 5 per 5 s per channel, one bucket shared by both;
- reactions (add/remove): 1 per 0.25 s per channel;
- interaction callback: per interaction (id + token); follow-ups and ``@original`` GET/PATCH/DELETE:
  per interaction token (application id + token) — never in the channel's buckets;
- every other route: its own bucket per route and major parameter (channel, guild);
- the global limit: 50 requests per second for everything except the interaction endpoints
  (callback, follow-ups, ``@original``), which Discord exempts from it.

Buckets are fixed windows like Discord's: the first request after a reset opens a window of ``per``
seconds; ``limit`` requests fit in it. ``X-RateLimit-Bucket`` is a stable hash of the bucket, not of
its major parameter ("non-inclusive of top-level resources in the path", as on Discord); discord.py
combines it with the major parameters itself.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Bucket:
    """``limit`` requests per ``per`` seconds; ``scope`` is what a 429 reports (user or shared)."""

    limit: int
    per: float
    scope: str = "user"


#: Routes Discord exempts from the global limit: interaction callbacks and the interaction webhook.
INTERACTION_PREFIXES = ("/interactions/", "/webhooks/")


@dataclass(frozen=True)
class RateLimits:
    """The fake's rate limits; ``FakeDiscord(rate_limits=None)`` turns enforcement off.

    ``time_scale`` multiplies every window (0.1: the same counts in a tenth of the time), so a test
    can keep Discord's shape and run faster. A bucket set to ``None`` is not enforced (no headers).
    """

    message_create: Bucket | None = Bucket(5, 5.0)
    message_edit: Bucket | None = Bucket(5, 5.0)
    reactions: Bucket | None = Bucket(1, 0.25)
    interaction_callback: Bucket | None = Bucket(5, 5.0)
    interaction_webhook: Bucket | None = Bucket(5, 2.0)
    other: Bucket | None = Bucket(50, 1.0)
    global_limit: int | None = 50
    global_per: float = 1.0
    time_scale: float = 1.0

    def scaled(self, time_scale: float) -> RateLimits:
        """The same limits with every window multiplied by ``time_scale``."""
        return replace(self, time_scale=time_scale)


@dataclass
class RateLimitHit:
    """One 429 the fake served (enforced by a bucket, the global limit, or injected by a test)."""

    at: float  # time.monotonic()
    method: str
    path: str
    route: str
    bucket: str  # "message-create", "message-edit", "reactions", "interaction-callback", ... or "global"
    major: str  # the major parameter(s) the bucket is keyed by, e.g. the channel id
    scope: str  # user | global | shared
    retry_after: float
    injected: bool = False


@dataclass
class _Window:
    reset_at: float  # monotonic
    used: int = 0


@dataclass
class Decision:
    """What the limiter says about one request: the bucket headers, and a 429 if it is refused."""

    bucket: str
    major: str
    headers: dict[str, str]
    limited: bool = False
    scope: str = ""
    retry_after: float = 0.0
    body: dict[str, Any] = field(default_factory=dict)


def bucket_hash(name: str) -> str:
    """A stable hash per bucket (like Discord's ``X-RateLimit-Bucket``)."""
    return hashlib.sha1(name.encode()).hexdigest()[:32]


def classify(method: str, route: str, params: dict[str, str]) -> tuple[str, str]:
    """The bucket name and major parameter of a request (route is the fake's route template)."""
    if route == "/interactions/{interaction_id}/{token}/callback":
        return "interaction-callback", f"{params.get('interaction_id')}+{params.get('token')}"
    if route.startswith("/webhooks/{application_id}/{token}"):
        return "interaction-webhook", f"{params.get('application_id')}+{params.get('token')}"
    channel = params.get("channel_id")
    if route == "/channels/{channel_id}/messages" and method == "POST":
        return "message-create", str(channel)
    if route == "/channels/{channel_id}/messages/{message_id}" and method in ("PATCH", "DELETE"):
        return "message-edit", str(channel)
    if "/reactions/" in route and method in ("PUT", "DELETE") and route.endswith(("/@me", "/{user_id}")):
        return "reactions", str(channel)
    major = "+".join(params[k] for k in ("channel_id", "guild_id") if k in params)
    return f"{method} {route}", major


class RateLimiter:
    """Per-bucket and global fixed windows; ``check()`` counts a request or refuses it with a 429."""

    def __init__(self, limits: RateLimits | None) -> None:
        self.limits = limits
        self._windows: dict[tuple[str, str], _Window] = {}
        self._global = _Window(0.0)

    @property
    def enabled(self) -> bool:
        return self.limits is not None

    def _spec(self, name: str) -> Bucket | None:
        assert self.limits is not None
        return {
            "message-create": self.limits.message_create,
            "message-edit": self.limits.message_edit,
            "reactions": self.limits.reactions,
            "interaction-callback": self.limits.interaction_callback,
            "interaction-webhook": self.limits.interaction_webhook,
        }.get(name, self.limits.other)

    @staticmethod
    def _window(window: _Window | None, per: float, now: float) -> _Window:
        if window is None or now >= window.reset_at:
            return _Window(now + per)
        return window

    def check(self, method: str, path: str, route: str, params: dict[str, str]) -> Decision:
        """Count this request in its bucket and the global limit, or refuse it (nothing counted)."""
        name, major = classify(method, route, params)
        if self.limits is None:
            # Enforcement off: a roomy bucket that never runs out, as the fake always answered.
            return Decision(name, major, headers(name, 5, 4, 1.0))
        now = time.monotonic()
        scale = self.limits.time_scale
        spec = self._spec(name)
        window = None
        result_headers: dict[str, str] = {}
        if spec is not None:
            window = self._window(self._windows.get((name, major)), spec.per * scale, now)
            self._windows[(name, major)] = window
            if window.used >= spec.limit:
                retry = max(0.001, window.reset_at - now)
                return Decision(
                    name,
                    major,
                    {**headers(name, spec.limit, 0, retry), **limited_headers(retry, spec.scope)},
                    limited=True,
                    scope=spec.scope,
                    retry_after=retry,
                    body=limited_body(retry, is_global=False),
                )
        exempt = path.startswith(INTERACTION_PREFIXES)
        if self.limits.global_limit is not None and not exempt:
            self._global = self._window(self._global, self.limits.global_per * scale, now)
            if self._global.used >= self.limits.global_limit:
                retry = max(0.001, self._global.reset_at - now)
                return Decision(
                    "global",
                    "",
                    {**limited_headers(retry, "global"), "X-RateLimit-Global": "true"},
                    limited=True,
                    scope="global",
                    retry_after=retry,
                    body=limited_body(retry, is_global=True),
                )
            self._global.used += 1
        if spec is not None and window is not None:
            window.used += 1
            result_headers = headers(name, spec.limit, spec.limit - window.used, window.reset_at - now)
        return Decision(name, major, result_headers)


def _ceil_ms(seconds: float) -> float:
    return max(0.0, math.ceil(seconds * 1000) / 1000)


def headers(name: str, limit: int, remaining: int, reset_after: float) -> dict[str, str]:
    """The ``X-RateLimit-*`` headers of one bucket (discord.py needs Reset-After with Remaining)."""
    reset_after = _ceil_ms(reset_after)  # never tell a client it may go before the window ends
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(0, remaining)),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket_hash(name),
    }


def limited_headers(retry_after: float, scope: str) -> dict[str, str]:
    # discord.py treats a 429 without Via as a Cloudflare ban and raises instead of retrying.
    return {
        "Via": "1.1 google",
        "Retry-After": str(max(1, math.ceil(retry_after))),
        "X-RateLimit-Scope": scope,
    }


def limited_body(retry_after: float, *, is_global: bool, message: str | None = None) -> dict[str, Any]:
    return {
        "message": message or "You are being rate limited.",
        "retry_after": _ceil_ms(retry_after),
        "global": is_global,
    }
