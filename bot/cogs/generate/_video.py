"""``/video``: a video from a text prompt, or from a picture (``image:``) it then sets in motion; it may
end on another picture (``end_image:``) or where it starts (``loop:``).

A picture is downloaded only after the request's intake is recorded with its credits held (the
channel rule and the member's limits checked first), and checked and normalised by
``videobot.images`` (``_image``); the image decision (verb, aspect ratio) is
``planning.build_params(..., image=...)``. An end picture goes through the same intake, download and
checks as the first one. How and when the member is answered: ``_requests``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import discord

from videobot import planning, styles
from videobot.images import PreparedImage
from videobot.jobs import Submitted

from ._requests import Requests


async def video(
    requests: Requests,
    interaction: discord.Interaction,
    prompt: str,
    *,
    negative_prompt: str | None,
    seed: int | None,
    duration: float | None,
    aspect_ratio: str | None,
    model: str | None,
    audio: bool | None,
    image: discord.Attachment | None,
    variations: int | None,
    style: str | None = None,
    end_image: discord.Attachment | None = None,
    loop: bool | None = None,
    enhance: bool | None = None,
) -> None:
    """Check, queue and answer one ``/video`` (a refusal is raised for the error handler)."""
    settings = requests.bot.settings

    def check() -> planning.QueueTarget:
        """The options against the configured model: refused before anything is recorded or downloaded."""
        target = planning.check_model(settings, model)
        planning.check_audio(settings, audio)
        if image is not None:
            planning.check_image(settings)
        planning.check_style(settings, style)
        planning.check_end(settings, end_image=end_image is not None, loop=loop)
        planning.check_enhance(settings, enhance)
        return target

    def plan(
        target: planning.QueueTarget,
        picture: PreparedImage | None = None,
        end_picture: PreparedImage | None = None,
    ) -> dict[str, Any]:
        return planning.build_params(
            target,
            prompt,
            negative_prompt=negative_prompt,
            seed=seed,
            duration=duration,
            aspect_ratio=aspect_ratio,
            audio=audio,
            image=picture,
            num_videos=variations or 1,
            end_image=end_picture,
            loop=loop,
            enhance=enhance,
        )

    if image is None and end_image is None:
        # Answered in the first response when the database is quick, else deferred (``answer``).
        recorded = asyncio.Event()

        async def queue() -> Submitted:
            target = check()
            params = plan(target) | await style_fields(requests, interaction, style)
            await requests.record_intake(interaction, "video")
            recorded.set()
            return await requests.submit(interaction, target, params, kind="command")

        await requests.answer(interaction, queue(), recorded=recorded)
        return
    # A picture: its request is recorded (its credits held) before the download, whose time nothing
    # bounds; the "thinking…" comes as soon as it is recorded (a refusal before: the first response).
    recorded = asyncio.Event()

    async def queue_picture() -> Submitted:
        target = check()
        fields = await style_fields(requests, interaction, style)  # an unknown style: before the download
        await requests.check_before_download(interaction, prompt, verb="video", cost=variations or 1)
        recorded.set()
        picture = await requests.read_image(image) if image is not None else None
        end_picture = await requests.read_image(end_image) if end_image is not None else None
        return await requests.submit(
            interaction,
            target,
            plan(target, picture, end_picture) | fields,
            kind="command",
            picture=picture,
            end_picture=end_picture,
            intake=True,
        )

    await requests.answer(interaction, queue_picture(), recorded=recorded, eager=True)


async def style_fields(
    requests: Requests, interaction: discord.Interaction, style: str | None
) -> dict[str, Any]:
    """The server style ``style`` as a job snapshots it (``videobot.styles.job_fields``; empty for none);
    an unknown style is refused (``InvalidParameters``, telling how to see the server's styles)."""
    if style is None or not style.strip():
        return {}
    assert interaction.guild_id is not None
    async with requests.bot.db.sessionmaker() as s:
        info = await styles.find_style(s, interaction.guild_id, style)
    return styles.job_fields(info)
