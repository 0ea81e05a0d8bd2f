"""Model presets and request planning: turn a user's prompt/duration/aspect into valid pipeline parameters.

Pure Python on purpose: the bot uses this for validation, autocomplete and cost without importing torch.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import unicodedata
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from videobot.errors import InvalidParameters
from videobot.i18n import Msg, msg

MAX_PROMPT_CHARS = 1000
MAX_SEED = 2**32 - 1
ASPECT_RATIOS = ("16:9", "9:16", "1:1")


VERBS = ("text", "image", "extend", "audio", "hd", "keyframes", "loop")
#: Verbs that make a video (``audio``, ``hd``, ``keyframes`` and ``loop`` are capabilities on top of them,
#: not request kinds): an HD video is its source's text or image video made again at twice the size
#: (``GenerationParams.hd``); ``keyframes``: the video can end on a given picture (``end_image``);
#: ``loop``: it can end where it starts (the pipeline conditions at the last frame too).
REQUEST_VERBS = ("text", "image", "extend")


#: The diffusers 0.42.1 pipeline classes with a LoRA loader (``load_lora_weights``, named adapters):
#: the model families whose presets offer server styles. A test checks them against diffusers.
LORA_PIPELINES = frozenset(
    {
        "WanPipeline",
        "WanImageToVideoPipeline",
        "LTXPipeline",
        "LTXImageToVideoPipeline",
        "LTXConditionPipeline",
        "LTX2Pipeline",
        "LTX2ImageToVideoPipeline",
        "LTX2ConditionPipeline",
        "CogVideoXPipeline",
        "CogVideoXImageToVideoPipeline",
    }
)

#: Largest LoRA scale accepted (either sign): beyond it a LoRA only adds noise.
MAX_LORA_SCALE = 10.0


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA the worker loads at start: a Hugging Face repo id or a local file/folder, the weight file
    inside it (None: the repo's only or default one), and its scale (1.0: as trained)."""

    source: str
    weight_name: str | None = None
    scale: float = 1.0

    def __str__(self) -> str:
        text = self.source + (f":{self.weight_name}" if self.weight_name else "")
        return text + (f"@{self.scale:g}" if self.scale != 1.0 else "")


def parse_loras(text: str) -> tuple[LoraSpec, ...]:
    """``VIDEOBOT_LORAS``: comma-separated ``SOURCE[:WEIGHT_NAME][@SCALE]`` entries, e.g.
    ``owner/repo:style.safetensors@0.8, /srv/loras/fast.safetensors``; raises ``ValueError`` saying
    which entry is wrong and how to write it."""
    specs = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        scale = 1.0
        if "@" in entry:
            entry, _, scale_text = entry.rpartition("@")
            try:
                scale = float(scale_text)
            except ValueError:
                raise ValueError(
                    f"`{raw.strip()}`: after `@` comes the scale, a number such as 0.8"
                ) from None
            if not math.isfinite(scale) or abs(scale) > MAX_LORA_SCALE:
                raise ValueError(
                    f"`{raw.strip()}`: the scale must be between -{MAX_LORA_SCALE:g} and {MAX_LORA_SCALE:g}"
                )
        source, _, weight_name = entry.partition(":")
        source, weight_name = source.strip(), weight_name.strip()
        if not source or (":" in entry and not weight_name):
            raise ValueError(
                f"`{raw.strip()}`: write SOURCE[:WEIGHT_NAME][@SCALE], e.g. owner/repo:lora.safetensors@0.8"
            )
        specs.append(LoraSpec(source, weight_name or None, scale))
    return tuple(specs)


@dataclass(frozen=True)
class Preset:
    """A model the worker can load, with the settings its model card gives and what it can do."""

    name: str
    repo_id: str
    pipeline_class: str  # the class the checkpoint loads as (model_index.json)
    family: str  # "wan" | "wan22" | "ltx" | "ltx2" | "cogvideox"
    fps: int
    default_frames: int
    min_frames: int
    max_frames: int
    frame_rule: int  # valid frame counts are frame_rule * k + 1
    size_multiple: int
    sizes: dict[str, tuple[int, int]]  # aspect ratio -> (width, height)
    steps: int
    guidance: float
    default_dtype: str
    needs_gpu: bool
    vram_gb: float  # GPU memory at the default size with ``memory_options``
    description: str
    default_aspect: str = "16:9"
    #: Extra keyword arguments for the pipeline call (passed only where the pipeline accepts them).
    extra_call_kwargs: dict[str, Any] = field(default_factory=dict)
    #: What it can do: a subset of ``VERBS``.
    verbs: frozenset[str] = frozenset({"text"})
    #: Pipeline class per verb; verbs not listed use ``pipeline_class``. All share one set of components.
    pipelines: dict[str, str] = field(default_factory=dict)
    #: Scheduler config overrides (e.g. Wan's ``flow_shift``), applied with ``Scheduler.from_config``.
    scheduler: dict[str, Any] = field(default_factory=dict)
    #: Pipeline config values the checkpoint must carry (e.g. Wan 2.2 TI2V's ``expand_timesteps``).
    pipeline_config: dict[str, Any] = field(default_factory=dict)
    #: Used when the request has no negative prompt.
    negative_prompt: str = ""
    #: Component -> dtype on a GPU, overriding ``default_dtype`` (Wan's VAE in float32).
    component_dtypes: dict[str, str] = field(default_factory=dict)
    #: ``extend``: frames one extension adds, frames of the source's end it is conditioned on, and how
    #: many times a clip may be extended.
    extend_frames: int = 0
    extend_context_frames: int = 0
    max_extensions: int = 4
    #: Most videos one batch may hold on the GPU (variations).
    batch_cap: int = 1
    #: Settings that make ``vram_gb`` true (VideoPipeline.load option -> value), and where the figure comes from.
    memory_options: dict[str, Any] = field(default_factory=dict)
    vram_source: str = "estimate"
    #: LoRAs fused into the model at load, before any the owner adds with ``VIDEOBOT_LORAS`` (a "fast"
    #: variant's step-distillation LoRA; its ``steps`` / ``guidance`` are the LoRA's).
    loras: tuple[LoraSpec, ...] = ()
    #: ``hd``: the latent upsampler that doubles width and height (``repo_id`` or ``repo_id:subfolder``;
    #: ``TINY_UPSAMPLER``: built offline beside a tiny model), the upsample pipeline's keyword arguments,
    #: and the refine pass's (its schedule) with its number of steps. See ``generator.hd``.
    upsampler: str = ""
    hd_upsample: dict[str, Any] = field(default_factory=dict)
    hd_refine: dict[str, Any] = field(default_factory=dict)
    hd_refine_steps: int = 0

    @property
    def min_duration_s(self) -> float:
        return self.min_frames / self.fps

    @property
    def max_duration_s(self) -> float:
        return self.max_frames / self.fps

    @property
    def default_duration_s(self) -> float:
        return self.default_frames / self.fps

    def valid_frames(self, num_frames: int) -> bool:
        """Whether ``num_frames`` follows the frame rule and lies within the preset's range."""
        return self.min_frames <= num_frames <= self.max_frames and (num_frames - 1) % self.frame_rule == 0

    def pipeline_for(self, verb: str) -> str:
        """The diffusers pipeline class name that runs ``verb``."""
        return self.pipelines.get(verb, self.pipeline_class)

    @property
    def styles(self) -> bool:
        """Whether members may pick a server style (a LoRA loaded as a named adapter) on this model."""
        return all(self.pipeline_for(v) in LORA_PIPELINES for v in self.verbs if v in REQUEST_VERBS)

    @property
    def extend_window(self) -> int:
        """Frames the model generates for one extension: the source's last frames plus the new ones."""
        return self.extend_context_frames + self.extend_frames


# Only sizes a model was trained at are offered (a ratio without one is not offered for that model).
# Wan 2.1 1.3B: 480p, 832x480 landscape or 480x832 portrait (model card; diffusers' example is 480x832).
_WAN_SIZES = {"16:9": (832, 480), "9:16": (480, 832)}
# Wan 2.2 TI2V-5B is a 720p model, 1280x704 or 704x1280 (model card); its VAE compresses 16x and patches
# 2x, so sizes are multiples of 32.
_WAN22_SIZES = {"16:9": (1280, 704), "9:16": (704, 1280)}
# LTX wants multiples of 32; 832x480 is the same pixel budget as its usual 768x512 but really 16:9.
_LTX_SIZES = {"16:9": (832, 480), "9:16": (480, 832), "1:1": (640, 640)}
# CogVideoX 1.0 was trained at 720x480 (3:2) only (model card): offered as "landscape", no portrait or square.
_COG_SIZES = {"16:9": (720, 480)}
_TINY_SIZES = {"16:9": (48, 32), "9:16": (32, 48), "1:1": (32, 32)}
_TINY_SIZES_32 = {"16:9": (64, 32), "9:16": (32, 64), "1:1": (32, 32)}

# The negative prompts the model cards / diffusers docs use.
WAN_NEGATIVE = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, "
    "poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still "
    "picture, messy background, three legs, many people in the background, walking backwards"
)
LTX_NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"

_TEXT = frozenset({"text"})
_TEXT_IMAGE = frozenset({"text", "image"})
_TEXT_IMAGE_EXTEND = frozenset({"text", "image", "extend"})
#: Pipelines that condition at any frame index (LTX-Video's and LTX-2's condition pipelines): an end
#: picture and a loop are conditions at the last frame.
_KEYFRAMES = frozenset({"keyframes", "loop"})
_LTX_COND = {
    "text": "LTXConditionPipeline",
    "image": "LTXConditionPipeline",
    "extend": "LTXConditionPipeline",
}
_WAN22 = {"text": "WanPipeline", "image": "WanImageToVideoPipeline"}
_LTX2 = {"text": "LTX2Pipeline", "image": "LTX2ImageToVideoPipeline"}
# One LTX-2 pipeline for every verb: conditions (a first image, a clip's last frames) at any frame index.
_LTX2_COND = {
    "text": "LTX2ConditionPipeline",
    "image": "LTX2ConditionPipeline",
    "extend": "LTX2ConditionPipeline",
}
#: ``diffusers.pipelines.ltx2.utils.DISTILLED_SIGMA_VALUES`` (0.42.1), copied so this module needs no
#: diffusers; a test checks they agree. The scheduler appends the final 0.
LTX2_DISTILLED_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875)
# Distilled LTX-2.x runs without any guidance pass: CFG, spatio-temporal and modality guidance all off
# (their pipeline defaults are on: 4 transformer passes per step instead of 1).
_LTX2_NO_GUIDANCE = {
    "sigmas": list(LTX2_DISTILLED_SIGMAS),
    "stg_scale": 0.0,
    "audio_stg_scale": 0.0,
    "modality_scale": 1.0,
    "audio_modality_scale": 1.0,
    "audio_guidance_scale": 1.0,
}
# LTX-2's own default size (the pipeline's 768x512, the size of the published speed figures).
_LTX2_SIZES = {"16:9": (768, 512), "9:16": (512, 768), "1:1": (640, 640)}
# Lightricks' recommended settings for timestep-aware VAEs (0.9.1+).
_LTX_DECODE = {"decode_timestep": 0.05, "decode_noise_scale": 0.025, "image_cond_noise_scale": 0.025}
#: The 8-step schedule the LTX-Video distilled checkpoints were distilled for (diffusers' LTX docs and
#: Lightricks' configs); without it LTXConditionPipeline's default 8-step schedule ends at t=421.88, not
#: near 0, and the video comes out unfinished.
LTX_DISTILLED_TIMESTEPS = (1000.0, 993.0, 987.0, 981.0, 975.0, 909.0, 725.0, 0.03)
_LTX_DISTILLED = {**_LTX_DECODE, "timesteps": list(LTX_DISTILLED_TIMESTEPS)}

#: ``Preset.upsampler`` of the tiny models: a tiny random upsampler built offline (``generator.tiny``).
TINY_UPSAMPLER = "tiny"
#: LTX-Video 0.9.7's spatial upsampler (diffusers' LTX docs); Lightricks' 0.9.8 upsampler file in
#: ``Lightricks/LTX-Video`` is a copy of it, so both distilled presets use this one.
LTX_UPSAMPLER = "Lightricks/ltxv-spatial-upscaler-0.9.7:latent_upsampler"
#: diffusers' LTX docs, distilled two-stage example: the upsampled latents refined with these timesteps at
#: ``denoise_strength=0.999`` (4 of the 5 steps run), the upsampler with AdaIN against the stage-1 latents.
_LTX_HD_REFINE = {"timesteps": [1000.0, 909.0, 725.0, 421.0, 0.0], "denoise_strength": 0.999}
_LTX_HD = dict(
    upsampler=LTX_UPSAMPLER, hd_upsample={"adain_factor": 1.0}, hd_refine=_LTX_HD_REFINE, hd_refine_steps=4
)
#: ``diffusers.pipelines.ltx2.utils.STAGE_2_DISTILLED_SIGMA_VALUES`` (0.42.1; a test checks they agree):
#: diffusers' LTX-2 distilled two-stage example refines the upsampled latents in these 3 steps, renoised
#: to the first sigma.
LTX2_STAGE_2_SIGMAS = (0.909375, 0.725, 0.421875)
_LTX2_HD_REFINE = {"sigmas": list(LTX2_STAGE_2_SIGMAS), "noise_scale": LTX2_STAGE_2_SIGMAS[0]}


def _tiny(name: str, family: str, pipeline_class: str, description: str, **kw: Any) -> Preset:
    base: dict[str, Any] = dict(
        name=name,
        repo_id="",
        pipeline_class=pipeline_class,
        family=family,
        fps=8,
        default_frames=9,
        min_frames=5,
        max_frames=17,
        frame_rule=4,
        size_multiple=16,
        sizes=_TINY_SIZES,
        steps=2,
        guidance=5.0,
        default_dtype="float32",
        needs_gpu=False,
        vram_gb=0.0,
        description=description,
        vram_source="CPU only",
        batch_cap=4,
    )
    base.update(kw)
    return Preset(**base)


_TINY_LTX = dict(
    frame_rule=8,
    min_frames=9,
    max_frames=25,
    default_frames=9,
    size_multiple=32,
    sizes=_TINY_SIZES_32,
    guidance=3.0,
    verbs=_TEXT_IMAGE_EXTEND | _KEYFRAMES | {"hd"},
    pipelines=_LTX_COND,
    negative_prompt=LTX_NEGATIVE,
    extend_frames=8,
    extend_context_frames=9,
    extra_call_kwargs=_LTX_DECODE,
    **{**_LTX_HD, "upsampler": TINY_UPSAMPLER},
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="wan2.1-1.3b",
            repo_id="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
            pipeline_class="WanPipeline",
            family="wan",
            fps=16,
            default_frames=81,
            min_frames=17,
            max_frames=81,
            frame_rule=4,
            size_multiple=16,
            sizes=_WAN_SIZES,
            steps=50,
            guidance=5.0,
            default_dtype="bfloat16",
            needs_gpu=True,
            vram_gb=8.2,
            description="Wan 2.1 1.3B: good quality on an 8 GB+ GPU, 5 s at 832x480. Text only.",
            verbs=_TEXT,
            pipelines={"text": "WanPipeline"},
            scheduler={"flow_shift": 3.0},  # the card: 3.0 at 480p
            negative_prompt=WAN_NEGATIVE,
            component_dtypes={"vae": "float32"},
            memory_options={"offload": "model"},
            vram_source="model card (8.19 GB, with offload)",
            batch_cap=2,
        ),
        Preset(
            # A "fast" variant: Wan 2.1 T2V 14B with lightx2v's 4-step, CFG-distilled LoRA fused at load.
            # Repo and file as listed on huggingface.co/lightx2v/Wan2.1-Distill-Loras (not yet run here:
            # no GPU; diffusers converts its ComfyUI-style keys, see README).
            name="wan2.1-14b-lightx2v",
            repo_id="Wan-AI/Wan2.1-T2V-14B-Diffusers",
            pipeline_class="WanPipeline",
            family="wan",
            fps=16,
            default_frames=81,
            min_frames=17,
            max_frames=81,
            frame_rule=4,
            size_multiple=16,
            sizes=_WAN_SIZES,
            steps=4,
            guidance=1.0,
            default_dtype="bfloat16",
            needs_gpu=True,
            vram_gb=20.0,
            description="Wan 2.1 14B with the lightx2v 4-step LoRA: 4 steps, no CFG, 5 s at 832x480. Text only.",
            verbs=_TEXT,
            pipelines={"text": "WanPipeline"},
            scheduler={"flow_shift": 5.0},  # lightx2v's 4-step configs use shift 5 (not verified here)
            negative_prompt=WAN_NEGATIVE,
            component_dtypes={"vae": "float32"},
            memory_options={"offload": "model", "layerwise_fp8": True},
            vram_source="estimate",
            loras=(
                LoraSpec(
                    "lightx2v/Wan2.1-Distill-Loras", "wan2.1_t2v_14b_lora_rank64_lightx2v_4step.safetensors"
                ),
            ),
        ),
        Preset(
            name="wan2.2-ti2v-5b",
            repo_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
            pipeline_class="WanPipeline",
            family="wan22",
            fps=24,
            default_frames=121,
            min_frames=25,
            max_frames=121,
            frame_rule=4,
            size_multiple=32,
            sizes=_WAN22_SIZES,
            steps=50,
            guidance=5.0,
            default_dtype="bfloat16",
            needs_gpu=True,
            vram_gb=24.0,
            description="Wan 2.2 TI2V 5B: text or a first image to 5 s of 720p at 24 fps in one model.",
            verbs=_TEXT_IMAGE,
            pipelines=_WAN22,
            scheduler={"flow_shift": 5.0},  # the card: 5.0 at 720p
            pipeline_config={"expand_timesteps": True},
            negative_prompt=WAN_NEGATIVE,
            component_dtypes={"vae": "float32"},
            # Its VAE decode jumps to ~26 GB at 1280x704x121 without tiling (diffusers issue 12097).
            memory_options={"offload": "model", "vae_tiling": True},
            vram_source="model card (24 GB with offload)",
        ),
        Preset(
            name="ltx-video",
            repo_id="Lightricks/LTX-Video",
            pipeline_class="LTXPipeline",
            family="ltx",
            fps=24,
            default_frames=121,
            min_frames=25,
            max_frames=257,
            frame_rule=8,
            size_multiple=32,
            sizes=_LTX_SIZES,
            steps=50,
            guidance=3.0,
            default_dtype="bfloat16",
            needs_gpu=True,
            vram_gb=10.0,
            description="LTX-Video 2B (0.9.0): fast, 24 fps, up to ~10 s; text or a first image.",
            verbs=_TEXT_IMAGE,
            pipelines={"text": "LTXPipeline", "image": "LTXImageToVideoPipeline"},
            negative_prompt=LTX_NEGATIVE,
            memory_options={"offload": "group"},
            vram_source="diffusers docs (~10 GB with group offload)",
            batch_cap=2,
        ),
        Preset(
            name="ltx-video-distilled",
            repo_id="Lightricks/LTX-Video-0.9.7-distilled",
            pipeline_class="LTXConditionPipeline",
            family="ltx",
            fps=24,
            default_frames=121,
            min_frames=25,
            max_frames=257,
            frame_rule=8,
            size_multiple=32,
            sizes=_LTX_SIZES,
            steps=8,
            guidance=1.0,
            default_dtype="bfloat16",
            needs_gpu=True,
            vram_gb=18.0,
            description="LTX-Video 0.9.7 13B distilled: 8 steps; text, a first image, or extend a clip.",
            extra_call_kwargs=_LTX_DISTILLED,
            verbs=_TEXT_IMAGE_EXTEND | _KEYFRAMES | {"hd"},
            pipelines=_LTX_COND,
            negative_prompt=LTX_NEGATIVE,
            extend_frames=48,
            extend_context_frames=25,
            memory_options={"layerwise_fp8": True, "offload": "model"},
            vram_source="estimate (13B in fp8 storage ~13 GB + activations; T5 offloaded)",
            **_LTX_HD,
        ),
        Preset(
            name="ltx-video-0.9.8-distilled",
            repo_id="Lightricks/LTX-Video-0.9.8-13B-distilled",
            pipeline_class="LTXConditionPipeline",
            family="ltx",
            fps=24,
            default_frames=121,
            min_frames=25,
            max_frames=257,
            frame_rule=8,
            size_multiple=32,
            sizes=_LTX_SIZES,
            steps=8,
            guidance=1.0,
            default_dtype="bfloat16",
            needs_gpu=True,
            vram_gb=18.0,
            description="LTX-Video 0.9.8 13B distilled: 8 steps; text, a first image, or extend a clip.",
            extra_call_kwargs=_LTX_DISTILLED,
            verbs=_TEXT_IMAGE_EXTEND | _KEYFRAMES | {"hd"},
            pipelines=_LTX_COND,
            negative_prompt=LTX_NEGATIVE,
            extend_frames=48,
            extend_context_frames=25,
            memory_options={"layerwise_fp8": True, "offload": "model"},
            vram_source="estimate (13B in fp8 storage ~13 GB + activations; T5 offloaded)",
            # 0.9.8 adds tone mapping of the upsampled latents, 0.6 as diffusers' LTX docs recommend.
            **{**_LTX_HD, "hd_upsample": {"adain_factor": 1.0, "tone_map_compression_ratio": 0.6}},
        ),
        Preset(
            name="ltx-2",
            repo_id="Lightricks/LTX-2",
            pipeline_class="LTX2Pipeline",
            family="ltx2",
            fps=24,
            default_frames=121,
            min_frames=25,
            max_frames=257,
            frame_rule=8,
            size_multiple=32,
            sizes=_LTX_SIZES,
            steps=40,
            guidance=4.0,
            default_dtype="bfloat16",
            needs_gpu=True,
            vram_gb=32.0,
            description="LTX-2 19B: video with sound, from text or a first image.",
            verbs=frozenset({"text", "image", "audio"}),
            pipelines=_LTX2,
            negative_prompt=LTX_NEGATIVE,
            # diffusers' LTX-2 page decodes in tiles at this size (the LTX-2 family always tiles, see load).
            memory_options={"layerwise_fp8": True, "offload": "model", "vae_tiling": True},
            vram_source="estimate (19B in fp8 storage ~19 GB + Gemma 3 offloaded; docs use sequential offload)",
        ),
        Preset(
            name="ltx-2.3-distilled",
            repo_id="diffusers/LTX-2.3-Distilled-Diffusers",
            pipeline_class="LTX2Pipeline",
            family="ltx2",
            fps=24,
            default_frames=121,
            min_frames=25,
            max_frames=257,
            frame_rule=8,
            size_multiple=32,
            sizes=_LTX2_SIZES,
            steps=len(LTX2_DISTILLED_SIGMAS),
            guidance=1.0,
            default_dtype="bfloat16",
            needs_gpu=True,
            vram_gb=75.0,
            description="LTX-2.3 22B distilled: video with sound in 8 steps; text, a first image, or extend a clip.",
            extra_call_kwargs=_LTX2_NO_GUIDANCE,
            verbs=frozenset({"text", "image", "extend", "audio"}) | _KEYFRAMES | {"hd"},
            pipelines=_LTX2_COND,
            negative_prompt=LTX_NEGATIVE,
            extend_frames=48,
            extend_context_frames=25,
            # LTX-2 needs VAE tiling at its default size (diffusers' LTX-2 page).
            memory_options={"vae_tiling": True},
            vram_source="estimate (22B + Gemma 3 12B in bf16 ~68 GB + activations); `auto` tiers in README",
            # LTX-2.3's x2 upsampler in diffusers' layout (a conversion of Lightricks' file by a diffusers
            # contributor; VIDEOBOT_HD_UPSAMPLER names another).
            upsampler="dg845/LTX-2.3-Spatial-Upsampler-Diffusers:latent_upsampler",
            hd_refine=_LTX2_HD_REFINE,
            hd_refine_steps=len(LTX2_STAGE_2_SIGMAS),
        ),
        Preset(
            name="cogvideox-2b",
            repo_id="zai-org/CogVideoX-2b",
            pipeline_class="CogVideoXPipeline",
            family="cogvideox",
            fps=8,
            default_frames=49,
            min_frames=17,
            max_frames=49,
            frame_rule=4,
            size_multiple=16,
            sizes=_COG_SIZES,
            steps=50,
            guidance=6.0,
            default_dtype="float16",
            needs_gpu=True,
            vram_gb=12.5,
            description="CogVideoX 2B: 6 s at 720x480, 8 fps. Text only.",
            pipelines={"text": "CogVideoXPipeline"},
            # The card's figure was measured with model offload and VAE tiling (without: ~3x more).
            memory_options={"offload": "model", "vae_tiling": True},
            vram_source="model card (12.5 GB in diffusers, with model offload and VAE tiling)",
        ),
        Preset(
            name="cogvideox-5b",
            repo_id="zai-org/CogVideoX-5b",
            pipeline_class="CogVideoXPipeline",
            family="cogvideox",
            fps=8,
            default_frames=49,
            min_frames=17,
            max_frames=49,
            frame_rule=4,
            size_multiple=16,
            sizes=_COG_SIZES,
            steps=50,
            guidance=6.0,
            default_dtype="bfloat16",
            needs_gpu=True,
            vram_gb=20.7,
            description="CogVideoX 5B: better than 2B, needs a 24 GB GPU (or CPU offload). Text only.",
            pipelines={"text": "CogVideoXPipeline"},
            memory_options={"offload": "model", "vae_tiling": True},
            vram_source="model card (20.7 GB in diffusers, with model offload and VAE tiling)",
        ),
        Preset(
            name="cogvideox-5b-i2v",
            repo_id="zai-org/CogVideoX-5b-I2V",
            pipeline_class="CogVideoXImageToVideoPipeline",
            family="cogvideox",
            fps=8,
            default_frames=49,
            min_frames=17,
            max_frames=49,
            frame_rule=4,
            size_multiple=16,
            sizes=_COG_SIZES,
            steps=50,
            guidance=6.0,
            default_dtype="bfloat16",
            needs_gpu=True,
            vram_gb=20.7,
            description="CogVideoX 5B I2V: animates a first image (no text-only videos), 6 s at 720x480.",
            verbs=frozenset({"image"}),
            pipelines={"image": "CogVideoXImageToVideoPipeline"},
            memory_options={"offload": "model", "vae_tiling": True},
            vram_source="estimate (the CogVideoX-5b transformer; its card gives 20.7 GB with model offload and "
            "VAE tiling)",
        ),
        _tiny(
            "tiny",
            "ltx",
            "LTXConditionPipeline",
            "Built-in tiny random model for tests and CPU-only setups: abstract noise videos; text, image, extend.",
            **_TINY_LTX,
        ),
        _tiny(
            "tiny-ltx",
            "ltx",
            "LTXConditionPipeline",
            "Tiny random LTX-Video (condition pipeline).",
            **_TINY_LTX,
        ),
        _tiny(
            "tiny-wan",
            "wan",
            "WanPipeline",
            "Tiny random Wan 2.1.",
            pipelines={"text": "WanPipeline"},
            scheduler={"flow_shift": 3.0},
            negative_prompt=WAN_NEGATIVE,
            component_dtypes={"vae": "float32"},
        ),
        _tiny(
            "tiny-wan22",
            "wan22",
            "WanPipeline",
            "Tiny random Wan 2.2 TI2V (text and image, expand_timesteps).",
            size_multiple=32,
            sizes=_TINY_SIZES_32,
            verbs=_TEXT_IMAGE,
            pipelines=_WAN22,
            scheduler={"flow_shift": 5.0},
            pipeline_config={"expand_timesteps": True},
            negative_prompt=WAN_NEGATIVE,
            component_dtypes={"vae": "float32"},
        ),
        _tiny(
            "tiny-ltx2",
            "ltx2",
            "LTX2Pipeline",
            "Tiny random LTX-2 (text, image, extend, with sound), run as ltx-2.3-distilled runs it.",
            frame_rule=8,
            min_frames=9,
            max_frames=25,
            size_multiple=32,
            sizes=_TINY_SIZES_32,
            steps=len(LTX2_DISTILLED_SIGMAS),  # the distilled schedule reaches the call, as on a GPU
            guidance=1.0,
            verbs=frozenset({"text", "image", "extend", "audio"}) | _KEYFRAMES | {"hd"},
            pipelines=_LTX2_COND,
            negative_prompt=LTX_NEGATIVE,
            extra_call_kwargs=_LTX2_NO_GUIDANCE,
            extend_frames=8,
            extend_context_frames=9,
            upsampler=TINY_UPSAMPLER,
            hd_refine=_LTX2_HD_REFINE,
            hd_refine_steps=len(LTX2_STAGE_2_SIGMAS),
        ),
        _tiny(
            "tiny-cogvideox",
            "cogvideox",
            "CogVideoXPipeline",
            "Tiny random CogVideoX.",
            size_multiple=16,
            guidance=6.0,
            pipelines={"text": "CogVideoXPipeline"},
        ),
    )
}

#: ``auto``'s choice on 12-40 GB cards (``videobot.autoplan`` picks by the card's memory; every tier from
#: 12 GB does text, image and extend, which is what the bot offers with ``auto``). See README "Models".
DEFAULT_GPU_PRESET = "ltx-video-0.9.8-distilled"
#: Costs are measured against this preset's default video, so quotas do not move when the default does.
COST_REFERENCE_PRESET = "wan2.1-1.3b"
#: ``tiny-<family>`` names the tiny model of each family; ``tiny`` is one of them.
TINY_FAMILIES = ("wan", "wan22", "ltx", "ltx2", "cogvideox")
TINY_DEFAULT_FAMILY = "ltx"

# Presets a custom repo id or folder borrows its settings from.
_FAMILY_BASE = {
    "wan": "wan2.1-1.3b",
    "wan22": "wan2.2-ti2v-5b",
    "ltx": "ltx-video",
    "ltx2": "ltx-2",
    "cogvideox": "cogvideox-2b",
}


def tiny_family(preset: Preset) -> str | None:
    """The tiny family a built-in tiny preset is made of, or ``None`` for a real model."""
    if preset.name == "tiny":
        return TINY_DEFAULT_FAMILY
    if preset.name.startswith("tiny-") and preset.name[5:] in TINY_FAMILIES and not preset.repo_id:
        return preset.name[5:]
    return None


def offered_verbs(model_setting: str, presets: dict[str, Preset] = PRESETS) -> frozenset[str]:
    """The verbs a worker configured with ``model_setting`` (VIDEOBOT_MODEL) can run; empty if unknown.

    ``auto`` resolves to the GPU default or ``tiny`` depending on the worker's machine, so it offers what
    both offer.
    """
    if (model_setting or "").strip() == "auto":
        # Not ``hd``: ``auto`` may stream the model layer by layer on a 12 GB card, where a video of
        # twice the width and height would not fit; an owner names a preset to offer it.
        return (presets[DEFAULT_GPU_PRESET].verbs & presets["tiny"].verbs) - {"hd"}
    try:
        return resolve_preset(model_setting, presets).verbs
    except InvalidParameters:
        return frozenset()


def offers_styles(model_setting: str, presets: dict[str, Preset] = PRESETS) -> bool:
    """Whether a worker configured with ``model_setting`` can load server styles (``auto``: both of its
    choices can; an unknown model: no)."""
    if (model_setting or "").strip() == "auto":
        return presets[DEFAULT_GPU_PRESET].styles and presets["tiny"].styles
    try:
        return resolve_preset(model_setting, presets).styles
    except InvalidParameters:
        return False


def offered_ratios(model_setting: str, presets: dict[str, Preset] = PRESETS) -> tuple[str, ...]:
    """The aspect ratios a worker configured with ``model_setting`` has a trained size for, in
    ``ASPECT_RATIOS`` order; ``auto`` offers what both of its choices have, an unknown model all of them."""
    if (model_setting or "").strip() == "auto":
        sizes = presets[DEFAULT_GPU_PRESET].sizes.keys() & presets["tiny"].sizes.keys()
    else:
        try:
            sizes = resolve_preset(model_setting, presets).sizes.keys()
        except InvalidParameters:
            return ASPECT_RATIOS
    return tuple(r for r in ASPECT_RATIOS if r in sizes)


@dataclass(frozen=True)
class GenerationParams:
    """Everything the worker needs to generate one video; stored as JSON in the job row.

    Fields after ``guidance_scale`` came later and have defaults, so older job rows still load. The input
    image or clip itself is not in here: ``image`` / ``source_video`` only name where the worker finds it.
    """

    prompt: str
    negative_prompt: str
    seed: int
    num_frames: int
    width: int
    height: int
    fps: int
    num_inference_steps: int
    guidance_scale: float
    verb: str = "text"  # "text" | "image" | "extend"
    image: str | None = None  # reference to the first-frame image (a file path for now)
    source_video: str | None = None  # reference to the clip to extend (a file path for now)
    num_videos: int = 1  # variations, 1..MAX_VIDEOS
    audio: bool = False  # also make a soundtrack (presets with "audio")
    #: An HD video (presets with "hd"): ``width`` x ``height`` is twice its source's size; the source's
    #: video is made again at half of it (same seed), its latents upsampled 2x and refined (``generator.hd``).
    hd: bool = False
    #: A server style (``videobot.styles``), snapshotted at submit: its name (shown), its LoRA
    #: ("owner/repo:weight.safetensors", what the worker loads), its scale and its trigger words.
    style: str | None = None
    style_source: str | None = None
    style_scale: float = 1.0
    style_trigger: str | None = None
    end_image: str | None = None  # reference to the last-frame picture (presets with "keyframes")
    loop: bool = False  # end where it starts: the first frame again at the end (presets with "loop")
    #: Rewrite ``prompt`` with the worker's language model first (``generator.enhance``); ``prompt`` stays
    #: the member's words, the rewrite is stored in ``jobs.enhanced_prompt``.
    enhance: bool = False
    #: The rewrite to use as it is, without asking the language model (with ``enhance``): an HD job's is its
    #: source's, so the larger video is made from the same words (``planning.hd_params``).
    enhanced_prompt: str | None = None

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    @property
    def passes(self) -> int:
        """Pipeline runs one video takes: two for a loop without a picture (its first frame, then the video)."""
        return loop_passes(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationParams:
        """Rebuild from ``to_dict()`` output (unknown keys are ignored; missing required ones raise ``KeyError``)."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data and f.default is not MISSING:
                continue
            value = data[f.name]
            kind = str(f.type)
            if value is None and "None" in kind:
                kwargs[f.name] = None
            elif kind == "bool":
                kwargs[f.name] = bool(value)
            else:
                conv = {"str": str, "int": int, "float": float, "str | None": str}[kind]
                kwargs[f.name] = conv(value)
        return cls(**kwargs)


MAX_VIDEOS = 4


def loop_passes(params: dict[str, Any]) -> int:
    """``GenerationParams.passes`` of a job's JSON parameters (a bare request's too)."""
    return 2 if params.get("loop") and params.get("verb", "text") != "image" else 1


def _fmt_s(seconds: float) -> str:
    return f"{round(seconds, 1):g}"


def clean_prompt(text: str, *, what: str = "prompt", allow_empty: bool = False) -> str:
    """Strip control characters (keeping newlines), trim, and enforce the length limit."""
    if not isinstance(text, str):
        if what == "negative prompt":
            raise InvalidParameters(msg("The negative prompt must be text."))
        raise InvalidParameters(msg("The prompt must be text."))
    text = text.replace("\r\n", "\n").replace("\t", " ")
    text = "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch) != "Cc").strip()
    if not text and not allow_empty:
        raise InvalidParameters(
            msg("The prompt is empty. Describe the video you want, e.g. `a cat surfing a wave`.")
        )
    if len(text) > MAX_PROMPT_CHARS:
        if what == "negative prompt":
            raise InvalidParameters(
                msg(
                    "The negative prompt is {length} characters long; the limit is {limit}. Please shorten it.",
                    length=len(text),
                    limit=MAX_PROMPT_CHARS,
                )
            )
        raise InvalidParameters(
            msg(
                "The prompt is {length} characters long; the limit is {limit}. Please shorten it.",
                length=len(text),
                limit=MAX_PROMPT_CHARS,
            )
        )
    return text


def frames_for_duration(preset: Preset, duration_s: float) -> int:
    """The valid frame count nearest to ``duration_s`` seconds, or ``InvalidParameters`` if out of range."""
    low, high = _fmt_s(preset.min_duration_s), _fmt_s(preset.max_duration_s)
    if (
        not isinstance(duration_s, (int, float))
        or isinstance(duration_s, bool)
        or not math.isfinite(duration_s)
    ):
        raise InvalidParameters(
            msg("The duration must be a number of seconds between {low} and {high}.", low=low, high=high)
        )
    if duration_s <= 0:
        raise InvalidParameters(
            msg("The duration must be positive: choose between {low} and {high} seconds.", low=low, high=high)
        )
    exact = duration_s * preset.fps
    # Half a frame-rule step of slack so the rounded limits shown to users are always accepted.
    slack = preset.frame_rule / 2
    if exact < preset.min_frames - slack or exact > preset.max_frames + slack:
        raise InvalidParameters(
            msg(
                "{duration} s is not possible with `{model}`: choose a duration between {low} and {high} seconds.",
                duration=_fmt_s(duration_s),
                model=preset.name,
                low=low,
                high=high,
            )
        )
    k = round((exact - 1) / preset.frame_rule)
    frames = k * preset.frame_rule + 1
    return max(preset.min_frames, min(preset.max_frames, frames))


def check_verb(preset: Preset, verb: str) -> None:
    """Raise ``InvalidParameters`` unless ``preset`` can run ``verb`` (says what it can do instead)."""
    if verb not in REQUEST_VERBS:
        raise InvalidParameters(
            msg(
                "Unknown kind of video `{verb}`: use one of {verbs}.",
                verb=verb,
                verbs=", ".join(REQUEST_VERBS),
            )
        )
    if verb not in preset.verbs:
        offered = ", ".join(v for v in REQUEST_VERBS if v in preset.verbs) or "-"
        cannot = {
            "text": msg(
                "The model `{model}` cannot make videos from text alone; it offers: {verbs}.",
                model=preset.name,
                verbs=offered,
            ),
            "image": msg(
                "The model `{model}` cannot make videos from an image; it offers: {verbs}.",
                model=preset.name,
                verbs=offered,
            ),
            "extend": msg(
                "The model `{model}` cannot make clip extensions; it offers: {verbs}.",
                model=preset.name,
                verbs=offered,
            ),
        }
        raise InvalidParameters(cannot[verb])


#: A loop without a first picture makes one first: a short clip of this many frames (the shortest an LTX
#: model makes, 8k+1) at the job's size and steps, whose first frame then starts and ends the video.
LOOP_START_FRAMES = 9


def check_keyframes(model: str, verbs: frozenset[str], *, end_image: bool, loop: bool) -> None:
    """Raise ``InvalidParameters`` unless the model ``model`` that offers ``verbs`` can end a video on a
    picture (``end_image``) or on its own first frame (``loop``); asking for both is refused (a loop
    already says how it ends)."""
    if end_image and loop:
        raise InvalidParameters(
            msg(
                "A loop ends on its own first frame, so it cannot also end on another picture. "
                "Leave out either the loop or the end picture."
            )
        )
    offered = ", ".join(v for v in VERBS if v in verbs) or "-"
    if end_image and "keyframes" not in verbs:
        raise InvalidParameters(
            msg(
                "The model `{model}` cannot end a video on a given picture; it offers: {verbs}.",
                model=model,
                verbs=offered,
            )
        )
    if loop and "loop" not in verbs:
        raise InvalidParameters(
            msg(
                "The model `{model}` cannot make looping videos; it offers: {verbs}.",
                model=model,
                verbs=offered,
            )
        )


def plan(
    preset: Preset,
    prompt: str,
    *,
    negative_prompt: str = "",
    seed: int | None = None,
    duration_s: float | None = None,
    aspect_ratio: str | None = None,
    verb: str | None = None,
    image: str | None = None,
    source_video: str | None = None,
    num_videos: int = 1,
    audio: bool | None = None,
    end_image: str | None = None,
    loop: bool = False,
) -> GenerationParams:
    """Validate a user's request and map it onto the preset's valid frames, size and defaults.

    ``extend`` ignores ``duration_s``: the model generates ``preset.extend_window`` frames, of which the
    first ``extend_context_frames`` repeat the source's end. ``verb=None`` means ``text`` (``image`` for an
    image-only model); ``audio=None`` means "if the model can". ``end_image`` (a reference like ``image``)
    is the picture the video ends on, ``loop`` ends it on its own first frame (``check_keyframes``); an
    extension continues a clip and has neither.
    """
    if verb is None:
        verb = "text" if "text" in preset.verbs or "image" not in preset.verbs else "image"
    check_verb(preset, verb)
    if verb == "extend":
        end_image, loop = None, False
    check_keyframes(preset.name, preset.verbs, end_image=bool(end_image), loop=bool(loop))
    prompt = clean_prompt(prompt)
    negative_prompt = clean_prompt(negative_prompt or "", what="negative prompt", allow_empty=True)
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidParameters(msg("The seed must be a whole number from 0 to {max}.", max=MAX_SEED))
    if isinstance(num_videos, bool) or not isinstance(num_videos, int) or not 1 <= num_videos <= MAX_VIDEOS:
        raise InvalidParameters(msg("The number of videos must be from 1 to {max}.", max=MAX_VIDEOS))
    if verb == "extend":
        num_frames = preset.extend_window
    else:
        num_frames = preset.default_frames if duration_s is None else frames_for_duration(preset, duration_s)
    aspect = preset.default_aspect if aspect_ratio is None else aspect_ratio.strip()
    if aspect in ASPECT_RATIOS and aspect not in preset.sizes:
        raise InvalidParameters(
            msg(
                "The model `{model}` has no trained size for {ratio} videos. Choose one of: {ratios}.",
                model=preset.name,
                ratio=aspect,
                ratios=", ".join(preset.sizes),
            )
        )
    if aspect not in preset.sizes:
        raise InvalidParameters(
            msg(
                "Unknown aspect ratio `{ratio}`. Choose one of: {ratios}.",
                ratio=aspect_ratio,
                ratios=", ".join(preset.sizes),
            )
        )
    width, height = preset.sizes[aspect]
    return GenerationParams(
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=seed,
        num_frames=num_frames,
        width=width,
        height=height,
        fps=preset.fps,
        num_inference_steps=preset.steps,
        guidance_scale=preset.guidance,
        verb=verb,
        image=image if verb == "image" else None,
        source_video=source_video if verb == "extend" else None,
        num_videos=num_videos,
        audio=("audio" in preset.verbs) if audio is None else bool(audio and "audio" in preset.verbs),
        end_image=end_image or None,
        loop=bool(loop),
    )


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _family_from_text(text: str) -> str | None:
    t = text.lower()
    if "cogvideo" in t:
        return "cogvideox"
    if "ltx2" in t or "ltx-2" in t:
        return "ltx2"
    if "ltx" in t:
        return "ltx"
    if "wan2.2" in t and "ti2v" in t:
        return "wan22"
    if "wan" in t:
        return "wan"
    return None


def _unknown_model(model: str, why: Msg) -> InvalidParameters:
    return InvalidParameters(
        msg(
            "Unknown model `{model}`: {why}. Use one of the presets ({presets}), a Hugging Face repo id "
            "of a Wan, LTX-Video or CogVideoX diffusers model, or a local diffusers folder.",
            model=model,
            why=why,
            presets=", ".join(PRESETS),
        )
    )


def resolve_preset(model: str, presets: dict[str, Preset] = PRESETS) -> Preset:
    """A preset by name, or a generic preset for a Hub repo id / local diffusers folder of a known family."""
    model = (model or "").strip()
    if model in presets:
        return presets[model]
    path = Path(model).expanduser() if model else None
    pipeline_class: str | None = None
    if path is not None and path.is_dir():
        index = path / "model_index.json"
        try:
            pipeline_class = str(json.loads(index.read_text(encoding="utf-8"))["_class_name"])
        except (OSError, ValueError, KeyError, TypeError):
            raise _unknown_model(
                model, msg("the folder has no readable diffusers `model_index.json`")
            ) from None
        family = _family_from_text(pipeline_class)
    elif _REPO_ID.match(model):
        family = _family_from_text(model)
    else:
        raise _unknown_model(model, msg("it is neither a preset, a repo id (`org/name`) nor a folder"))
    if family is None:
        raise _unknown_model(model, msg("cannot tell whether it is a Wan, LTX-Video or CogVideoX model"))
    base = presets.get(_FAMILY_BASE[family]) or PRESETS[_FAMILY_BASE[family]]
    pipeline_class = pipeline_class or base.pipeline_class
    verbs, pipelines = base.verbs, base.pipelines
    if pipeline_class == "LTXConditionPipeline":
        verbs, pipelines = (
            PRESETS["ltx-video-0.9.8-distilled"].verbs,
            PRESETS["ltx-video-0.9.8-distilled"].pipelines,
        )
    elif pipeline_class not in base.pipelines.values():
        # Unknown to the family preset (an I2V-only checkpoint, say): offer only what its class does.
        verb = "image" if "ImageToVideo" in pipeline_class else "text"
        verbs, pipelines = frozenset({verb}), {verb: pipeline_class}
    return replace(
        base,
        name=model,
        repo_id=model,
        pipeline_class=pipeline_class,
        description=f"Custom {family} model {model} (settings of {base.name}).",
        extra_call_kwargs={},
        verbs=verbs,
        pipelines=pipelines,
    )


def run_steps(preset: Preset, params: GenerationParams) -> int:
    """Denoising steps one batch of ``params`` takes: an HD video adds the preset's refine steps, a loop
    without a picture takes two passes (its first frame, then the video: ``VideoPipeline.run``)."""
    return params.num_inference_steps * params.passes + (preset.hd_refine_steps if params.hd else 0)


def hd_base_size(params: GenerationParams) -> tuple[int, int]:
    """The size an HD video's first stage is made at (its source's): half its width and height."""
    return params.width // 2, params.height // 2


def cost_weight(params: GenerationParams, preset: Preset | None = None) -> float:
    """Frames x pixels x steps relative to ``preset``'s default plan (default: ``COST_REFERENCE_PRESET``)."""
    ref = preset or PRESETS[COST_REFERENCE_PRESET]
    ref_w, ref_h = ref.sizes[ref.default_aspect]
    ref_work = ref.default_frames * ref_w * ref_h * ref.steps
    frames = params.num_frames
    if params.passes > 1:
        frames += LOOP_START_FRAMES  # the short first pass that makes the picture it starts and ends on
    work = frames * params.width * params.height * params.num_inference_steps * params.num_videos
    return work / ref_work
