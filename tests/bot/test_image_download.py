"""Downloading a member's picture (``bot.cogs.generate._image``) from a CDN on loopback: a cap on the
declared and on the real size, a timeout, and a polite refusal for a link that no longer works."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
import pytest_asyncio
from aiohttp import web

from bot.cogs.generate._image import NOT_DOWNLOADED, TOO_SLOW, download, pick_image, read_image
from tests.core.test_images import png_bytes
from videobot.images import Decoder, ImageRejected, prepare
from videobot.settings import Settings

CAP = 64 * 1024
SETTINGS = Settings(_env_file=None, VIDEOBOT_MAX_IMAGE_BYTES=CAP, VIDEOBOT_IMAGE_DOWNLOAD_SECONDS=1)  # type: ignore[call-arg]


@pytest_asyncio.fixture
async def cdn() -> AsyncIterator[tuple[str, list[str], aiohttp.ClientSession]]:
    """A CDN with a picture, a file larger than it says (streamed), a stalled one and a gone one."""
    served: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        served.append(name)
        if name == "cat.png":
            return web.Response(body=png_bytes(40, 20), content_type="image/png")
        if name == "endless.png":  # no Content-Length: only the running count can stop it
            resp = web.StreamResponse()
            await resp.prepare(request)
            for _ in range(64):
                await resp.write(b"\0" * 16384)
            return resp
        if name == "stalled.png":
            await asyncio.sleep(2.5)
            return web.Response(body=b"late")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/attachments/{name}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/attachments"
    async with aiohttp.ClientSession() as session:
        yield base, served, session
    await runner.cleanup()


def attachment(
    url: str, size: int, filename: str = "cat.png", content_type: str | None = "image/png"
) -> discord.Attachment:
    data = {"id": "1", "filename": filename, "size": size, "url": url, "proxy_url": url}
    if content_type:
        data["content_type"] = content_type
    state = type("State", (), {"http": None})()  # what Attachment keeps for read(), which is not used
    return discord.Attachment(data=data, state=state)  # type: ignore[arg-type]


async def test_a_picture_is_downloaded_and_normalised(cdn) -> None:  # type: ignore[no-untyped-def]
    base, served, session = cdn
    decoder = Decoder(1)
    try:
        prepared = await read_image(session, attachment(f"{base}/cat.png", 100), SETTINGS, decoder)
    finally:
        decoder.close()
    assert prepared.png == prepare(png_bytes(40, 20)).png and served == ["cat.png"]


async def test_too_large_by_its_word_is_never_fetched_and_by_its_bytes_is_cut_off(cdn) -> None:  # type: ignore[no-untyped-def]
    base, served, session = cdn
    with pytest.raises(ImageRejected, match="too large"):
        await download(session, attachment(f"{base}/cat.png", CAP + 1), SETTINGS)
    assert served == []
    with pytest.raises(ImageRejected, match="too large"):
        await download(session, attachment(f"{base}/endless.png", 10), SETTINGS)
    assert served == ["endless.png"]


async def test_a_stalled_or_gone_download_is_refused_politely(cdn) -> None:  # type: ignore[no-untyped-def]
    base, _, session = cdn
    t0 = time.monotonic()
    with pytest.raises(ImageRejected) as slow:
        await download(session, attachment(f"{base}/stalled.png", 10), SETTINGS)
    assert slow.value.message == TOO_SLOW and time.monotonic() - t0 < 3
    with pytest.raises(ImageRejected) as gone:
        await download(session, attachment(f"{base}/gone.png", 10), SETTINGS)
    assert gone.value.message == NOT_DOWNLOADED


def test_animate_picks_the_first_picture_of_a_message() -> None:
    class Message:
        def __init__(self, attachments: list[discord.Attachment]) -> None:
            self.attachments = attachments

    notes = attachment("http://x/notes.txt", 10, "notes.txt", "text/plain")
    photo = attachment("http://x/IMG_1.JPG", 10, "IMG_1.JPG", None)
    assert pick_image(Message([notes, photo])) is photo  # type: ignore[arg-type]
    with pytest.raises(ImageRejected, match="no picture to animate"):
        pick_image(Message([notes]))  # type: ignore[arg-type]
    # A GIF (not a format the models take) does not hide the PNG beside it; alone, it is refused
    # with the reason, before any form opens.
    gif = attachment("http://x/dance.gif", 10, "dance.gif", "image/gif")
    png = attachment("http://x/cat", 10, "cat", "image/png")
    assert pick_image(Message([notes, gif, png])) is png  # type: ignore[arg-type]
    with pytest.raises(ImageRejected) as refused:
        pick_image(Message([gif, notes]))  # type: ignore[arg-type]
    reason = refused.value.render("en")
    assert "has a GIF picture" in reason and "PNG, JPEG or WebP" in reason
    # Only a picture type's letters are shown back.
    odd = attachment("http://x/odd", 10, "odd", "image/<b>@everyone")
    with pytest.raises(ImageRejected) as refused:
        pick_image(Message([odd]))  # type: ignore[arg-type]
    assert "BEVERYONE" in refused.value.render("en") and "<" not in refused.value.render("en")
