"""Model presets and request planning: turn a user's prompt/duration/aspect into valid pipeline parameters.

Pure Python on purpose: the bot uses this for validation, autocomplete and cost without importing torch.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import unicodedata
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from videobot.errors import InvalidParameters

MAX_PROMPT_CHARS = 1000
MAX_SEED = 2**32 - 1
ASPECT_RATIOS = ("16:9", "9:16", "1:1")


@dataclass(frozen=True)
class Preset:
    """A model the worker can load, with the settings people run it at."""

    name: str
    repo_id: str
    pipeline_class: str
    family: str  # "wan" | "ltx" | "cogvideox"
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
    vram_gb: float
    description: str
    default_aspect: str = "16:9"
    #: Extra keyword arguments for the pipeline call (passed only where the pipeline accepts them).
    extra_call_kwargs: dict[str, Any] = field(default_factory=dict)

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


_WAN_SIZES = {"16:9": (832, 480), "9:16": (480, 832), "1:1": (624, 624)}
# LTX wants multiples of 32; 832x480 is the same pixel budget as its usual 768x512 but really 16:9.
_LTX_SIZES = {"16:9": (832, 480), "9:16": (480, 832), "1:1": (640, 640)}
# CogVideoX 1.0 was trained at 720x480 (3:2): offer that as "landscape" rather than an untrained 16:9 size.
_COG_SIZES = {"16:9": (720, 480), "9:16": (480, 720), "1:1": (480, 480)}

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
            description="Wan 2.1 1.3B: good quality on an 8 GB+ GPU, 5 s at 832x480.",
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
            vram_gb=18.0,
            description="LTX-Video: fast, 24 fps, up to ~10 s.",
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
            description="LTX-Video 0.9.7 distilled: 8 steps, the quickest real model.",
            # Lightricks' recommended settings for timestep-aware VAEs (0.9.1+).
            extra_call_kwargs={"decode_timestep": 0.05, "decode_noise_scale": 0.025},
        ),
        Preset(
            name="cogvideox-2b",
            repo_id="THUDM/CogVideoX-2b",
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
            description="CogVideoX 2B: 6 s at 720x480, 8 fps.",
        ),
        Preset(
            name="cogvideox-5b",
            repo_id="THUDM/CogVideoX-5b",
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
            description="CogVideoX 5B: better than 2B, needs a 24 GB GPU (or CPU offload).",
        ),
        Preset(
            name="tiny",
            repo_id="",
            pipeline_class="WanPipeline",
            family="wan",
            fps=8,
            default_frames=9,
            min_frames=5,
            max_frames=17,
            frame_rule=4,
            size_multiple=16,
            sizes={"16:9": (48, 32), "9:16": (32, 48), "1:1": (32, 32)},
            steps=2,
            guidance=5.0,
            default_dtype="float32",
            needs_gpu=False,
            vram_gb=0.0,
            description="Built-in tiny random model for tests and CPU-only setups: abstract noise videos.",
        ),
    )
}

DEFAULT_GPU_PRESET = "wan2.1-1.3b"

# Presets a custom repo id or folder borrows its settings from.
_FAMILY_BASE = {"wan": "wan2.1-1.3b", "ltx": "ltx-video", "cogvideox": "cogvideox-2b"}


@dataclass(frozen=True)
class GenerationParams:
    """Everything the worker needs to generate one video; stored as JSON in the job row."""

    prompt: str
    negative_prompt: str
    seed: int
    num_frames: int
    width: int
    height: int
    fps: int
    num_inference_steps: int
    guidance_scale: float

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationParams:
        """Rebuild from ``to_dict()`` output (unknown keys are ignored, missing ones raise ``KeyError``)."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            value = data[f.name]
            kwargs[f.name] = {"str": str, "int": int, "float": float}[str(f.type)](value)
        return cls(**kwargs)


def _fmt_s(seconds: float) -> str:
    return f"{round(seconds, 1):g}"


def clean_prompt(text: str, *, what: str = "prompt", allow_empty: bool = False) -> str:
    """Strip control characters (keeping newlines), trim, and enforce the length limit."""
    if not isinstance(text, str):
        raise InvalidParameters(f"The {what} must be text.")
    text = text.replace("\r\n", "\n").replace("\t", " ")
    text = "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch) != "Cc").strip()
    if not text and not allow_empty:
        raise InvalidParameters(
            f"The {what} is empty. Describe the video you want, e.g. `a cat surfing a wave`."
        )
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidParameters(
            f"The {what} is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}. Please shorten it."
        )
    return text


def frames_for_duration(preset: Preset, duration_s: float) -> int:
    """The valid frame count nearest to ``duration_s`` seconds, or ``InvalidParameters`` if out of range."""
    allowed = f"{_fmt_s(preset.min_duration_s)} and {_fmt_s(preset.max_duration_s)} seconds"
    if (
        not isinstance(duration_s, (int, float))
        or isinstance(duration_s, bool)
        or not math.isfinite(duration_s)
    ):
        raise InvalidParameters(f"The duration must be a number of seconds between {allowed}.")
    if duration_s <= 0:
        raise InvalidParameters(f"The duration must be positive: choose between {allowed}.")
    exact = duration_s * preset.fps
    # Half a frame-rule step of slack so the rounded limits shown to users are always accepted.
    slack = preset.frame_rule / 2
    if exact < preset.min_frames - slack or exact > preset.max_frames + slack:
        raise InvalidParameters(
            f"{_fmt_s(duration_s)} s is not possible with `{preset.name}`: choose a duration between {allowed}."
        )
    k = round((exact - 1) / preset.frame_rule)
    frames = k * preset.frame_rule + 1
    return max(preset.min_frames, min(preset.max_frames, frames))


def plan(
    preset: Preset,
    prompt: str,
    *,
    negative_prompt: str = "",
    seed: int | None = None,
    duration_s: float | None = None,
    aspect_ratio: str | None = None,
) -> GenerationParams:
    """Validate a user's request and map it onto the preset's valid frames, size and defaults."""
    prompt = clean_prompt(prompt)
    negative_prompt = clean_prompt(negative_prompt or "", what="negative prompt", allow_empty=True)
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidParameters(f"The seed must be a whole number from 0 to {MAX_SEED}.")
    num_frames = preset.default_frames if duration_s is None else frames_for_duration(preset, duration_s)
    aspect = preset.default_aspect if aspect_ratio is None else aspect_ratio.strip()
    if aspect not in preset.sizes:
        raise InvalidParameters(
            f"Unknown aspect ratio `{aspect_ratio}`. Choose one of: {', '.join(preset.sizes)}."
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
    )


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _family_from_text(text: str) -> str | None:
    t = text.lower()
    if "cogvideo" in t:
        return "cogvideox"
    if "ltx" in t:
        return "ltx"
    if "wan" in t:
        return "wan"
    return None


def _unknown_model(model: str, why: str) -> InvalidParameters:
    return InvalidParameters(
        f"Unknown model `{model}`: {why}. Use one of the presets ({', '.join(PRESETS)}), "
        "a Hugging Face repo id of a Wan, LTX-Video or CogVideoX diffusers model, or a local diffusers folder."
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
            raise _unknown_model(model, "the folder has no readable diffusers `model_index.json`") from None
        family = _family_from_text(pipeline_class)
    elif _REPO_ID.match(model):
        family = _family_from_text(model)
    else:
        raise _unknown_model(model, "it is neither a preset, a repo id (`org/name`) nor a folder")
    if family is None:
        raise _unknown_model(model, "cannot tell whether it is a Wan, LTX-Video or CogVideoX model")
    base = presets.get(_FAMILY_BASE[family]) or PRESETS[_FAMILY_BASE[family]]
    return replace(
        base,
        name=model,
        repo_id=model,
        pipeline_class=pipeline_class or base.pipeline_class,
        description=f"Custom {family} model {model} (settings of {base.name}).",
        extra_call_kwargs={},
    )


def cost_weight(params: GenerationParams, preset: Preset | None = None) -> float:
    """Frames x pixels x steps relative to ``preset``'s default plan (default: the default GPU preset)."""
    ref = preset or PRESETS[DEFAULT_GPU_PRESET]
    ref_w, ref_h = ref.sizes[ref.default_aspect]
    ref_work = ref.default_frames * ref_w * ref_h * ref.steps
    return params.num_frames * params.width * params.height * params.num_inference_steps / ref_work
