"""Live previews: a small picture of a render in progress, made between denoising steps.

At most every ``VIDEOBOT_PREVIEW_SECONDS`` the pipeline callback takes the current latents (what
``callback_on_step_end`` hands over), picks the first video's middle latent frame and turns it into a
small WebP, in one of two ways (``preview_plan`` says which, and why):

- ``vae``: shrink the frame and decode it with the model's own VAE. Only when nothing is offloaded: the
  VAE already sits on the GPU, so the decode costs a fraction of a frame's decode and nothing else.
- ``projection``: one matmul per latent pixel with the family's published latent -> RGB factors
  (``generator.latent_rgb``; ComfyUI's numbers), then an upscale. Used under every offload mode (model,
  sequential, group): decoding there would first bring the offloaded VAE back to the GPU (and, with model
  offload, swap the transformer out and back) between two steps. Families without published factors, or
  latents of another channel count (the tiny models), get a fixed per-channel projection stretched to the
  picture's own range: coarse colours, but the shapes and motion of the render.

Nothing here draws random numbers or writes into the latents, so the final video is the same with
previews on or off (tests/generator/test_previews.py).

Per family (diffusers 0.42): Wan / Wan 2.2 latents are ``[B, C, F, h, w]``, normalised by the VAE's
``latents_mean`` / ``latents_std``; CogVideoX latents are ``[B, F, C, h, w]`` scaled by the VAE's
``scaling_factor``; LTX and LTX-2 latents are packed ``[B, S, D]`` tokens (conditioning tokens first),
normalised, and their VAE takes a decode timestep. Every supported family reports ``latents`` per step;
a pipeline without a known layout (``latent_layout`` returns None) gets no preview, which the worker
says once at start.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from generator import latent_rgb

if TYPE_CHECKING:  # torch is imported where it is used: the worker imports this module before the model
    import torch

log = logging.getLogger(__name__)

#: The preview's longer side at most (pixels), and its encoded size at most (it travels through the database).
MAX_SIDE = 256
MAX_BYTES = 96 * 1024
#: The shrunken latent frame keeps at least this many pixels on its short side.
MIN_LATENT_SIDE = 8
CONTENT_TYPE = "image/webp"


class PreviewSink(Protocol):
    """Where the pipeline thread hands previews (the worker): asked before any decode work is done."""

    def due(self, step: int, total: int) -> bool: ...

    def put(self, step: int, data: bytes, content_type: str) -> None: ...


#: Previews never take more than this share of a run's time so far: the next one is due only when the
#: time spent on previews, plus the next one (counted as costly as the last), stays under it. The
#: issue's budget is 5 %; 4 % leaves room for a preview slower than the one before.
MAX_SHARE = 0.04


class PreviewTimer:
    """A ``PreviewSink`` that is due at most every ``every`` seconds (the first one ``every`` seconds
    after it was made: the first steps are mostly noise) and within ``MAX_SHARE`` of the time since it
    was made; keeps the newest preview in ``latest`` (the worker's heartbeat stores it). Called from
    the pipeline thread."""

    def __init__(self, every: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self.started = self.last = clock()
        self.cost = 0.0  # seconds the last preview took
        self.spent = 0.0  # seconds all previews took
        self.asked: float | None = None
        self.latest: tuple[int, bytes, str] | None = None  # (step, data, content type)
        self.count = 0

    def due(self, step: int, total: int) -> bool:
        now = self.clock()
        if now - self.last < self.every or self.spent + self.cost > MAX_SHARE * (now - self.started):
            return False
        self.asked = now
        return True

    def put(self, step: int, data: bytes, content_type: str) -> None:
        now = self.clock()
        if self.asked is not None:
            self.cost = now - self.asked
            self.spent += self.cost
        self.last = now
        self.latest = (step, data, content_type)
        self.count += 1


def latent_layout(pipe: Any) -> str | None:
    """How ``pipe``'s callback latents are laid out: "packed" (LTX, LTX-2), "bcfhw" (Wan), "bfchw"
    (CogVideoX), or None (unknown: no preview)."""
    name = type(pipe).__name__
    if name.startswith("LTX"):
        return "packed"
    if name.startswith("Wan"):
        return "bcfhw"
    if name.startswith("CogVideoX"):
        return "bfchw"
    return None


def _model_frame(pipe: Any, layout: str, latents: torch.Tensor, call: dict[str, Any]) -> torch.Tensor:
    """The first video's middle latent frame as ``[1, C, 1, h, w]``, as the model sees it (normalised)."""
    if layout == "bcfhw":
        return latents[:1, :, latents.shape[2] // 2 : latents.shape[2] // 2 + 1]
    if layout == "bfchw":
        return latents[:1, latents.shape[1] // 2 : latents.shape[1] // 2 + 1].permute(0, 2, 1, 3, 4)
    # Packed tokens: [B, S, D], conditioning tokens (if any) first, then F x h x w video tokens.
    p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
    h = call["height"] // pipe.vae_spatial_compression_ratio // p
    w = call["width"] // pipe.vae_spatial_compression_ratio // p
    f = ((call["num_frames"] - 1) // pipe.vae_temporal_compression_ratio + 1) // pt
    tokens = latents[:1, latents.shape[1] - f * h * w :]
    video = pipe._unpack_latents(tokens, f, h, w, p, pt)  # [1, C, F, h, w]
    mid = video.shape[2] // 2
    return video[:, :, mid : mid + 1]


def _vae_scale(pipe: Any, layout: str, frame: torch.Tensor) -> torch.Tensor:
    """``frame`` (from ``_model_frame``) in the VAE's (denormalised) scale, ready to decode."""
    import torch

    vae = pipe.vae
    if layout == "bcfhw":
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
        return frame * std.to(frame) + mean.to(frame)
    if layout == "bfchw":
        return frame / vae.config.scaling_factor
    mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(frame)
    std = vae.latents_std.view(1, -1, 1, 1, 1).to(frame)
    return frame * std / vae.config.scaling_factor + mean


#: Preview methods (``PreviewPlan.method``).
VAE = "vae"
PROJECTION = "projection"


@dataclass(frozen=True)
class PreviewPlan:
    """How a loaded model makes its previews: ``method`` is "vae", "projection" or None (no previews),
    ``why`` one sentence for the log and ``videobot check``."""

    method: str | None
    why: str


def preview_plan(family: str | None, offload: str, latent_channels: int | None = None) -> PreviewPlan:
    """The preview method for a model family under an offload mode ("none", "model", "sequential",
    "group"); ``latent_channels`` (when known) tells whether the family's published factors fit. Needs no
    loaded model: ``videobot check`` asks it for the plan of a card."""
    if family is None:
        return PreviewPlan(None, "this pipeline's latents have no known layout, so no live previews")
    if offload == "none":
        return PreviewPlan(
            VAE, "live previews decode a shrunken latent frame with the model's VAE (on the GPU)"
        )
    factors = latent_rgb.FACTORS.get(family)
    if factors is not None and latent_channels in (None, len(factors[0])):
        how = f"the published latent->RGB factors for `{family}`"
    else:
        how = "a fixed per-channel latent->RGB projection (no published factors for these latents)"
    return PreviewPlan(PROJECTION, f"offload={offload}: live previews use {how}, without the offloaded VAE")


def pipeline_family(pipe: Any) -> str | None:
    """The latent family of a diffusers pipeline, by its class (None: unknown layout)."""
    name = type(pipe).__name__
    if name.startswith("LTX2"):
        return "ltx2"
    if name.startswith("LTX"):
        return "ltx"
    if name.startswith("Wan"):
        vae = getattr(pipe, "vae", None)
        return "wan22" if getattr(getattr(vae, "config", None), "z_dim", 16) == 48 else "wan"
    if name.startswith("CogVideoX"):
        return "cogvideox"
    return None


def _fallback_factors(channels: int) -> np.ndarray:
    """A fixed ``channels x 3`` projection: channel ``c`` gets the hue at angle ``2 pi c / channels``, so
    every channel shows and neighbouring ones differ in colour."""
    angles = 2 * np.pi * np.arange(channels) / max(channels, 1)
    rows = np.stack([np.cos(angles - k * 2 * np.pi / 3) for k in range(3)], axis=1)
    return rows / np.sqrt(max(channels, 1))


def _project(pipe: Any, frame: torch.Tensor, family: str | None) -> np.ndarray:
    """``frame`` (``[1, C, 1, h, w]``, model space) as H x W x 3 uint8, upscaled towards the video's size
    (at most ``MAX_SIDE``)."""
    import torch

    x = frame[0, :, 0].float()  # [C, h, w]
    channels = x.shape[0]
    factors = latent_rgb.FACTORS.get(family or "")
    if factors is not None and len(factors[0]) == channels:
        matrix = torch.tensor(factors[0], dtype=torch.float32, device=x.device)
        bias = torch.tensor(factors[1], dtype=torch.float32, device=x.device)
        rgb = (torch.einsum("chw,ck->khw", x, matrix) + bias.view(3, 1, 1)).clamp(-1, 1)
    else:
        matrix = torch.from_numpy(_fallback_factors(channels)).to(device=x.device, dtype=torch.float32)
        rgb = torch.einsum("chw,ck->khw", x, matrix)
        # No known scale: stretch the picture to its own range (the same for R, G and B, to keep hues).
        low, high = rgb.min(), rgb.max()
        rgb = (rgb - low) / (high - low).clamp_min(1e-6) * 2 - 1
    pixels = ((rgb + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    scale = int(
        getattr(pipe, "vae_spatial_compression_ratio", None) or getattr(pipe, "vae_scale_factor_spatial", 8)
    )
    h, w = pixels.shape[:2]
    grow = max(1.0, min(float(scale), MAX_SIDE / max(h, w)))
    if grow > 1:
        from PIL import Image

        size = (max(1, round(w * grow)), max(1, round(h * grow)))
        pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
    return pixels


def preview_image(
    pipe: Any, latents: torch.Tensor, call: dict[str, Any], method: str = VAE, family: str | None = None
) -> bytes | None:
    """A small WebP of the render so far (``call``: the pipeline's call keywords; ``method``: "vae" or
    "projection", from ``preview_plan``), or None if the pipeline's latents have no known layout."""
    import torch

    with torch.inference_mode():
        layout = latent_layout(pipe)
        if layout is None:
            return None
        frame = _model_frame(pipe, layout, latents.detach(), call)
        if method == PROJECTION:
            return encode_webp(_project(pipe, frame, family or pipeline_family(pipe)))
        return encode_webp(_vae_decode(pipe, layout, frame, call))


def _vae_decode(pipe: Any, layout: str, frame: torch.Tensor, call: dict[str, Any]) -> np.ndarray:
    import torch

    vae = pipe.vae
    frame = _vae_scale(pipe, layout, frame)
    # Reduced size: average the latent pixels so the decode costs a fraction of a full frame.
    scale = int(
        getattr(pipe, "vae_spatial_compression_ratio", None) or getattr(pipe, "vae_scale_factor_spatial", 8)
    )
    side = max(frame.shape[-2:]) * scale
    # Keep at least 8 latent pixels on the short side: a 32x VAE (LTX) gets no shrink at 480p, its
    # latent is 15 px tall already; an 8x one (Wan) shrinks 4x at 832x480 and decodes 208x120.
    shrink = max(1, min(math.ceil(side / MAX_SIDE), min(frame.shape[-2:]) // MIN_LATENT_SIDE))
    if shrink > 1:
        frame = torch.nn.functional.avg_pool3d(frame, (1, shrink, shrink))
    frame = frame.to(dtype=vae.dtype)
    kwargs: dict[str, Any] = {}
    if layout == "packed" and getattr(vae.config, "timestep_conditioning", False):
        t = call.get("decode_timestep", 0.0)
        t = t[0] if isinstance(t, list) else t
        kwargs["temb"] = torch.tensor([float(t or 0.0)], device=frame.device, dtype=frame.dtype)
    decoded = vae.decode(frame, return_dict=False, **kwargs)[0]  # [1, 3, F', H, W] in [-1, 1]
    picture = decoded[0, :, decoded.shape[2] // 2].float().clamp(-1, 1)
    return ((picture + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def encode_webp(pixels: np.ndarray) -> bytes | None:
    """A WebP of ``pixels`` (H x W x 3 uint8) no bigger than ``MAX_BYTES`` (smaller or worse if needed)."""
    from PIL import Image

    image = Image.fromarray(pixels)
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    for quality in (75, 50, 30):
        out = io.BytesIO()
        image.save(out, format="WEBP", quality=quality, method=4)
        if out.tell() <= MAX_BYTES:
            return out.getvalue()
    return None
