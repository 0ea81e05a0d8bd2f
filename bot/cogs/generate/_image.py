"""A member's picture (a ``/video`` image option, the message ``Animate`` is used on): downloaded once,
at request time, with a size cap and a timeout, then checked and normalised by ``videobot.images``.

Discord's attachment URLs are signed and expire, so the bytes are fetched when the request arrives
(after the interaction is acknowledged) and stored with the job; a worker never sees the URL. The
declared ``size`` is checked before any byte is fetched, and the download stops as soon as it passes
the cap whatever the declared size said. Nothing here decodes pixels on the event loop: ``prepare``
runs in the bot's ``images.Decoder`` (its own small pool), after its header check refused anything
too large to decode.
"""

from __future__ import annotations

import logging

import aiohttp
import discord

from videobot import images
from videobot.i18n import N_, msg
from videobot.images import ImageRejected, PreparedImage
from videobot.settings import Settings

log = logging.getLogger(__name__)

#: File endings and content types that may hold a picture (a hint to pick the attachment; the bytes decide).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jfif", ".webp")
CHUNK = 64 * 1024

NOT_DOWNLOADED = N_(
    "I could not download that picture from Discord (it may have been deleted). Please attach it again."
)
TOO_SLOW = N_("Downloading that picture took too long. Please try again, or attach a smaller picture.")


#: Content types of the formats ``videobot.images`` accepts (PNG, JPEG, WebP).
SUPPORTED_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/webp"})


def _content_type(attachment: discord.Attachment) -> str:
    return (attachment.content_type or "").split(";")[0].strip().lower()


def is_supported(attachment: discord.Attachment) -> bool:
    """Whether the attachment claims to be a PNG, JPEG or WebP picture (a hint; the bytes decide):
    its declared content type, or its file name when no picture type is declared."""
    ctype = _content_type(attachment)
    if ctype.startswith("image/"):
        return ctype in SUPPORTED_TYPES
    return attachment.filename.lower().endswith(IMAGE_SUFFIXES)


def pick_image(message: discord.Message) -> discord.Attachment:
    """The first attachment of ``message`` that claims to be a supported picture (a GIF beside a PNG
    does not hide the PNG), or a refusal saying why and what to do."""
    for attachment in message.attachments:
        if is_supported(attachment):
            return attachment
    # The declared type is the client's text: only its letters and digits are shown back.
    others = sorted(
        {
            kind
            for a in message.attachments
            if (ctype := _content_type(a)).startswith("image/")
            and (kind := "".join(c for c in ctype.removeprefix("image/") if c.isalnum())[:12].upper())
        }
    )
    if others:
        raise ImageRejected(
            msg(
                "I can only animate PNG, JPEG or WebP pictures, and that message has a {formats} picture. "
                "Please post the picture as PNG, JPEG or WebP and use Apps → Animate on that message.",
                formats=", ".join(others),
            )
        )
    raise ImageRejected(
        msg(
            "That message has no picture to animate. Use Apps → Animate on a message with a PNG, JPEG or "
            "WebP image attached."
        )
    )


def check_declared_size(attachment: discord.Attachment, settings: Settings) -> None:
    """Refuse a file Discord says is over the cap, without fetching a byte of it."""
    if attachment.size > settings.max_image_bytes:
        raise images.too_large(attachment.size, settings.max_image_bytes)


async def download(
    session: aiohttp.ClientSession, attachment: discord.Attachment, settings: Settings
) -> bytes:
    """The attachment's bytes (``Attachment.read()`` with a cap and a timeout); ``ImageRejected`` otherwise."""
    cap = settings.max_image_bytes
    check_declared_size(attachment, settings)
    timeout = aiohttp.ClientTimeout(total=settings.image_download_seconds)
    try:
        async with session.get(attachment.url, timeout=timeout) as resp:
            if resp.status != 200:
                log.info("attachment %s: the CDN answered %s", attachment.id, resp.status)
                raise ImageRejected(msg(NOT_DOWNLOADED))
            if resp.content_length is not None and resp.content_length > cap:
                raise images.too_large(resp.content_length, cap)
            data = bytearray()
            async for chunk in resp.content.iter_chunked(CHUNK):
                data += chunk
                if len(data) > cap:  # the declared size was wrong: stop reading at once
                    log.info(
                        "attachment %s: more than its declared %s bytes; stopped",
                        attachment.id,
                        attachment.size,
                    )
                    raise images.too_large(len(data), cap)
    except TimeoutError:
        raise ImageRejected(msg(TOO_SLOW)) from None
    except aiohttp.ClientError as exc:
        log.info("attachment %s: download failed (%s)", attachment.id, type(exc).__name__)
        raise ImageRejected(msg(NOT_DOWNLOADED)) from None
    return bytes(data)


async def read_image(
    session: aiohttp.ClientSession,
    attachment: discord.Attachment,
    settings: Settings,
    decoder: images.Decoder,
) -> PreparedImage:
    """Download, check (header first: a decompression bomb is never decoded) and normalise the picture
    in the bot's ``decoder`` (a bounded pool: memory stays bounded however many pictures arrive)."""
    data = await download(session, attachment, settings)
    return await decoder.prepare(
        data,
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
        decode_budget=settings.image_decode_mb * 1024 * 1024,
    )
