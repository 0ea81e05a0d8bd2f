"""``/video``: a video from a text prompt, or from a picture (``image:``) it then sets in motion.

A picture is downloaded only after the request's intake is recorded with its credits held (the
channel rule and the member's limits checked first), and checked and normalised by
``videobot.images`` (``_image``); the image decision (verb, aspect ratio) is
``planning.build_params(..., image=...)``. How and when the member is answered: ``_requests``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import discord

from videobot import planning
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
    enhance: bool | None = None,
) -> None:
    """Check, queue and answer one ``/video`` (a refusal is raised for the error handler)."""
    settings = requests.bot.settings

    def plan(picture: PreparedImage | None) -> tuple[planning.QueueTarget, dict[str, Any]]:
        target = planning.check_model(settings, model)
        planning.check_audio(settings, audio)
        planning.check_enhance(settings, enhance)
        return target, planning.build_params(
            target,
            prompt,
            negative_prompt=negative_prompt,
            seed=seed,
            duration=duration,
            aspect_ratio=aspect_ratio,
            audio=audio,
            image=picture,
            num_videos=variations or 1,
            enhance=enhance,
        )

    if image is None:
        # Answered in the first response when the database is quick, else deferred (``answer``).
        recorded = asyncio.Event()

        async def queue() -> Submitted:
            target, params = plan(None)
            await requests.record_intake(interaction, "video")
            recorded.set()
            return await requests.submit(interaction, target, params, kind="command")

        await requests.answer(interaction, queue(), recorded=recorded)
        return
    # A picture: its request is recorded (its credits held) before the download, whose time nothing
    # bounds; the "thinking…" comes as soon as it is recorded (a refusal before: the first response).
    recorded = asyncio.Event()

    async def queue_picture() -> Submitted:
        planning.check_model(settings, model)
        planning.check_audio(settings, audio)
        planning.check_enhance(settings, enhance)
        planning.check_image(settings)  # before downloading anything
        await requests.check_before_download(interaction, prompt, verb="video", cost=variations or 1)
        recorded.set()
        picture = await requests.read_image(image)
        target, params = plan(picture)
        return await requests.submit(
            interaction, target, params, kind="command", picture=picture, intake=True
        )

    await requests.answer(interaction, queue_picture(), recorded=recorded, eager=True)
