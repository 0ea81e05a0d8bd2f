"""A fake Discord (REST + gateway) on loopback for end-to-end tests of the real bot process."""

from .records import Fault, Interaction, RecordedFile, RecordedRequest
from .server import DiscordError, FakeDiscord
from .world import Guild, MiB

__all__ = [
    "DiscordError",
    "FakeDiscord",
    "Fault",
    "Guild",
    "Interaction",
    "MiB",
    "RecordedFile",
    "RecordedRequest",
]
