"""A fake Discord (REST + gateway) on loopback for end-to-end tests of the real bot process."""

from .ratelimits import Bucket, RateLimitHit, RateLimits
from .records import DROP, Fault, Hold, Interaction, RecordedFile, RecordedRequest
from .server import DiscordError, FakeDiscord
from .world import Guild, MiB

__all__ = [
    "DROP",
    "Bucket",
    "DiscordError",
    "FakeDiscord",
    "Fault",
    "Guild",
    "Hold",
    "Interaction",
    "MiB",
    "RateLimitHit",
    "RateLimits",
    "RecordedFile",
    "RecordedRequest",
]
