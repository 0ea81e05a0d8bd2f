"""What ``VIDEOBOT_MODEL=auto`` runs on a machine: a preset and its memory options, by the card's memory.

Pure on purpose (no torch): a function of the card's total memory, the device kind and the settings the
owner wrote, so every tier is testable on a CPU and ``videobot check --assume-gpu-gb N`` can print the
plan for a card that is not there. The tiers and where each memory figure comes from are in the
README's model table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from videobot.presets import PRESETS

AUTO = "auto"
#: The memory options ``VideoPipeline.load`` takes (setting name in brackets in ``EXPLICIT_ENV``).
MEMORY_OPTIONS = ("offload", "vae_tiling", "layerwise_fp8")
EXPLICIT_ENV = {
    "model": "VIDEOBOT_MODEL",
    "offload": "VIDEOBOT_OFFLOAD",
    "vae_tiling": "VIDEOBOT_VAE_TILING",
    "layerwise_fp8": "VIDEOBOT_FP8",
}
_NO_OPTIONS: dict[str, Any] = {"offload": "none", "vae_tiling": False, "layerwise_fp8": False}


@dataclass(frozen=True)
class Tier:
    """From ``min_gb`` of total card memory up: this preset with these memory options."""

    min_gb: float
    preset: str
    options: dict[str, Any]
    gb: float  # GPU memory the preset needs with these options at its default size
    source: str  # where ``gb`` comes from
    why: str


# Highest first. Figures marked "estimate" add the weights at their stored precision to the default
# video's activations; none was measured on a card yet (see README "Models and GPU memory").
TIERS: tuple[Tier, ...] = (
    Tier(
        100,
        "ltx-2.3-distilled",
        {"offload": "none", "vae_tiling": True, "layerwise_fp8": False},
        75.0,
        "estimate: 22B transformer + Gemma 3 12B text encoder in bf16 (~68 GB) + VAEs and activations",
        "video with sound, 8 steps, everything in bf16 on the card (no offload, previews on)",
    ),
    Tier(
        70,
        "ltx-2.3-distilled",
        {"offload": "none", "vae_tiling": True, "layerwise_fp8": True},
        52.0,
        "estimate: 22B transformer in fp8 (~22 GB) + Gemma 3 12B in bf16 (~24 GB) + VAEs and activations",
        "video with sound, 8 steps; transformer stored in fp8 so all of it stays on the card "
        "(no offload, previews on)",
    ),
    Tier(
        40,
        "ltx-2.3-distilled",
        {"offload": "model", "vae_tiling": True, "layerwise_fp8": True},
        30.0,
        "estimate: 22B transformer in fp8 (~22 GB) + activations; the text encoder waits in CPU memory",
        "video with sound, 8 steps; fp8 and model offload, since transformer and text encoder together "
        "do not fit",
    ),
    Tier(
        20,
        "ltx-video-0.9.8-distilled",
        {"offload": "model", "vae_tiling": True, "layerwise_fp8": True},
        18.0,
        "estimate: 13B transformer in fp8 (~13 GB) + activations; T5 offloaded",
        "text, image and extend in 8 steps; LTX-2.3 does not fit, so no sound; fp8 + model offload",
    ),
    Tier(
        12,
        "ltx-video-0.9.8-distilled",
        {"offload": "group", "vae_tiling": True, "layerwise_fp8": True},
        10.0,
        "estimate: fp8 weights streamed layer by layer (group offload) + activations of one layer",
        "the same model streamed layer by layer (group offload): slower, but text, image and extend all "
        "keep working, and the bot offers those with `auto`",
    ),
    Tier(
        0,
        "wan2.1-1.3b",
        {"offload": "model", "vae_tiling": True, "layerwise_fp8": False},
        8.2,
        "model card (8.19 GB with offload)",
        "the smallest model (text only): the bot's `image` and `extend` requests will fail on this card",
    ),
)
#: Below this, even the smallest model does not fit (model card: 8.19 GB with offload).
MIN_GPU_GB = 8.0
#: Verbs the bot offers with ``auto`` (``presets.offered_verbs``); a tier without them cannot serve it.
AUTO_VERBS = frozenset({"text", "image", "extend", "keyframes", "loop"})


@dataclass(frozen=True)
class AutoPlan:
    """The model a worker loads and its memory options, why, and what will not work (with the fix)."""

    model: str  # a preset name, repo id or folder (``tiny`` on a CPU)
    options: dict[str, Any]  # offload, vae_tiling, layerwise_fp8
    reason: str
    gb: float | None = None  # GPU memory it needs with these options (None: unknown or CPU)
    source: str = ""
    problems: tuple[str, ...] = field(default=())  # each: what will not work, then the fix in one line

    def describe_options(self) -> str:
        o = self.options
        return (
            f"offload={o['offload']}, fp8={'on' if o['layerwise_fp8'] else 'off'}, "
            f"vae_tiling={'on' if o['vae_tiling'] else 'off'}"
        )


def explicit_settings(settings: Any) -> dict[str, Any]:
    """The model and memory options the owner set, by ``plan_auto``'s keys (an empty setting is not set)."""
    chosen = {k: getattr(settings, k) for k in MEMORY_OPTIONS if getattr(settings, k) is not None}
    model = (settings.model or AUTO).strip()
    return {"model": model, **chosen} if model != AUTO else chosen


def explicit_memory_options(settings: Any) -> dict[str, Any]:
    """``VideoPipeline.load``'s memory options: the owner's value where set, ``None`` (not set) elsewhere."""
    return {k: getattr(settings, k) for k in MEMORY_OPTIONS}


def tier_for(total_gb: float) -> Tier:
    """The highest tier whose ``min_gb`` the card reaches."""
    return next(t for t in TIERS if total_gb >= t.min_gb)


def plan_auto(total_gb: float | None, device_kind: str, explicit: dict[str, Any] | None = None) -> AutoPlan:
    """The model and memory options for a machine: ``total_gb`` of memory on a ``device_kind``
    ("cuda", "cpu", …) card, with ``explicit`` the settings the owner set (keys of ``EXPLICIT_ENV``),
    which always win over the tier's choice."""
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    model = str(explicit.get("model", AUTO)).strip() or AUTO
    chosen = {k: explicit[k] for k in MEMORY_OPTIONS if k in explicit}
    problems: list[str] = []
    if model != AUTO:
        options = {**_NO_OPTIONS, **chosen}
        preset = PRESETS.get(model)
        gb = preset.vram_gb if preset is not None and preset.needs_gpu else None
        if device_kind != "cuda" and preset is not None and preset.needs_gpu:
            problems.append(
                f"`{model}` needs a CUDA GPU and there is none: install a CUDA build of torch (README "
                "'GPU owners'), or set VIDEOBOT_MODEL=tiny to try the bot"
            )
        elif gb is not None and total_gb is not None and total_gb < gb and options["offload"] == "none":
            problems.append(
                f"`{model}` needs about {gb:g} GB and this card has {total_gb:.0f} GB: set "
                f"VIDEOBOT_OFFLOAD=model (or VIDEOBOT_MODEL=auto to pick by memory)"
            )
        return AutoPlan(model, options, "VIDEOBOT_MODEL is set", gb, problems=tuple(problems))
    if device_kind != "cuda" or total_gb is None:
        return AutoPlan(
            "tiny",
            {**_NO_OPTIONS, **chosen},
            "no CUDA GPU: the built-in tiny model makes abstract test videos on the CPU",
            source="CPU only",
        )
    tier = tier_for(total_gb)
    options = {**tier.options, **chosen}
    overridden = ", ".join(f"{EXPLICIT_ENV[k]}={chosen[k]}" for k in chosen)
    reason = f"{total_gb:.0f} GB card, tier >= {tier.min_gb:g} GB: {tier.why}"
    if overridden:
        reason += f"; your {overridden} replaces the tier's choice"
    if total_gb < MIN_GPU_GB:
        problems.append(
            f"a {total_gb:.0f} GB card is below the {MIN_GPU_GB:g} GB the smallest model needs: use a larger "
            "GPU, or VIDEOBOT_OFFLOAD=sequential (very slow)"
        )
    missing = AUTO_VERBS - PRESETS[tier.preset].verbs
    if missing:
        problems.append(
            f"`auto` offers {', '.join(sorted(AUTO_VERBS))} to members but `{tier.preset}` cannot do "
            f"{', '.join(sorted(missing))}: set VIDEOBOT_MODEL={tier.preset} so the bot offers only what "
            "this card can do"
        )
    return AutoPlan(tier.preset, options, reason, tier.gb, tier.source, tuple(problems))
