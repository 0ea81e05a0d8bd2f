"""``/video``, Apps → Animate, the buttons on the bot's messages (Rerun, Remix, Extend, Delete, Cancel),
their forms and the 🔁 / ❌ reactions.

This class only receives discord.py's commands and events and hands each to the file named for what
it does: ``_video`` (/video), ``_animate`` (Animate), ``_clicks`` (buttons), ``_forms`` (form
submissions), ``_reactions`` (🔁 ❌), ``_delete`` (the one delete path), with ``_requests`` (checks,
intakes, charges and answers every verb shares), ``_actions`` (what a result's buttons queue) and
``_intakes`` (requests left unanswered by the last bot). What members see lives in ``bot.ui``.
"""

from __future__ import annotations

import asyncio
import dataclasses

import discord
from discord import app_commands
from discord.ext import commands

from bot.ports import CommandHost
from bot.ui import buttons
from videobot import planning, styles
from videobot.presets import MAX_VIDEOS

from . import _video
from ._actions import ResultActions
from ._animate import Animate
from ._clicks import Clicks
from ._delete import Deleter
from ._forms import Forms
from ._intakes import OpenIntakes
from ._reactions import Reactions
from ._requests import Requests

#: The message command (Apps → Animate) that makes a video from a message's picture.
ANIMATE = "Animate"


class GenerateCog(commands.Cog):
    """/video, Animate, and the buttons, forms and reactions on the bot's messages."""

    def __init__(self, bot: CommandHost) -> None:
        self.bot = bot
        self.requests = Requests(bot)
        self.actions = ResultActions(bot, self.requests)
        deleter = Deleter(bot)
        self.animator = Animate(bot, self.requests)
        self.clicks = Clicks(bot, self.requests, self.actions, deleter)
        self.forms = Forms(bot, self.requests, self.actions, self.animator)
        self.reactions = Reactions(bot, self.requests, self.actions, deleter)
        # Context menus cannot be declared inside a cog class: made here, added to the tree on load.
        self.animate_menu = app_commands.ContextMenu(name=ANIMATE, callback=self.animate)
        self.animate_menu.guild_only = True
        # Only the aspect ratios the configured model was trained at are offered. The choices are declared
        # on the class; this cog's own copy of the command gets its own, narrowed parameter.
        ratios = planning.offered_ratios(bot.settings)
        param = self.video._params["aspect_ratio"]
        self.video._params = self.video._params | {
            "aspect_ratio": dataclasses.replace(
                param, choices=[c for c in param.choices if c.value in ratios]
            )
        }
        # An end picture and a loop only where the model can condition on the last frame.
        verbs = planning.offered_verbs(bot.settings)
        needs = {"end_image": "keyframes", "loop": "loop"}
        self.video._params = {
            name: p for name, p in self.video._params.items() if name not in needs or needs[name] in verbs
        }

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.animate_menu)
        # Registered once: every button ever posted is answered, after any restart.
        self.bot.add_dynamic_items(*buttons.ALL_ITEMS)
        self._intakes_task = asyncio.create_task(
            OpenIntakes(self.bot, self.requests).run(), name="open-intakes"
        )

    async def cog_unload(self) -> None:
        self._intakes_task.cancel()
        self.bot.tree.remove_command(self.animate_menu.name, type=self.animate_menu.type)
        self.bot.remove_dynamic_items(*buttons.ALL_ITEMS)

    # ------------------------------------------------------------------ /video
    @app_commands.command(name="video", description="Make a short video from a text prompt (and a picture)")
    @app_commands.describe(
        prompt="What the video shows, e.g. a red fox running through fresh snow",
        negative_prompt="What to avoid, e.g. blurry, text, watermark",
        seed="A whole number from 0 to 4294967295 to repeat a result (empty: random)",
        duration="Length in seconds (empty: the model's default)",
        aspect_ratio="Landscape, portrait or square",
        model="The model to use (empty: the server's default)",
        audio="Sound with the video (empty: on when the model makes sound)",
        image="A picture to start from (PNG, JPEG or WebP); the prompt then describes the motion",
        variations="How many takes, each with the next seed, posted together; each costs one video (1-4)",
        style="One of this server's styles (a look its moderators added)",
        end_image="A picture the video ends on (PNG, JPEG or WebP); with image: from one to the other",
        loop="End where it starts, so the video plays seamlessly on repeat",
        enhance="Let a language model write your prompt out in detail first (empty: the server's default)",
    )
    @app_commands.choices(
        aspect_ratio=[
            app_commands.Choice(name="16:9 landscape", value="16:9"),
            app_commands.Choice(name="9:16 portrait", value="9:16"),
            app_commands.Choice(name="1:1 square", value="1:1"),
        ]
    )
    @app_commands.guild_only()
    async def video(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 1000],
        negative_prompt: app_commands.Range[str, 1, 1000] | None = None,
        seed: int | None = None,
        duration: float | None = None,
        aspect_ratio: app_commands.Choice[str] | None = None,
        model: str | None = None,
        audio: bool | None = None,
        image: discord.Attachment | None = None,
        variations: app_commands.Range[int, 1, MAX_VIDEOS] | None = None,
        style: app_commands.Range[str, 1, 32] | None = None,
        end_image: discord.Attachment | None = None,
        loop: bool | None = None,
        enhance: bool | None = None,
    ) -> None:
        # Options this server's model does not offer are not registered (``__init__``), but a client that
        # still shows an older /video may send them: read them anyway, so they are refused, not ignored.
        if end_image is None and isinstance(
            getattr(interaction.namespace, "end_image", None), discord.Attachment
        ):
            end_image = interaction.namespace.end_image
        if loop is None and isinstance(getattr(interaction.namespace, "loop", None), bool):
            loop = interaction.namespace.loop
        await _video.video(
            self.requests,
            interaction,
            prompt,
            negative_prompt=negative_prompt,
            seed=seed,
            duration=duration,
            aspect_ratio=aspect_ratio.value if aspect_ratio else None,
            model=model,
            audio=audio,
            image=image,
            variations=variations,
            style=style,
            end_image=end_image,
            loop=loop,
            enhance=enhance,
        )

    @video.autocomplete("style")
    async def _style_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None or not planning.offers_styles(self.bot.settings):
            return []
        async with self.bot.db.sessionmaker() as s:  # one indexed read: the server's names
            names = await styles.style_names(s, interaction.guild_id, current)
        return [app_commands.Choice(name=name, value=name) for name in names]

    @video.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        cur = current.lower().strip()
        return [
            app_commands.Choice(name=name, value=name)
            for name in planning.offered_models(self.bot.settings)
            if cur in name.lower()
        ][:25]

    # ------------------------------------------------------------------ Apps → Animate
    async def animate(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Message command: ask for the motion in a form, then queue from its submission."""
        await self.animator.open_form(interaction, message)

    # ------------------------------------------------------------------ events
    @commands.Cog.listener(f"on_{buttons.CLICK_EVENT}")
    async def on_click(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        await self.clicks.on_click(interaction, action, job_id)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await self.forms.on_submit(interaction)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self.reactions.on_reaction(payload)
