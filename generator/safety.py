"""The worker's image safety classifier: scores sampled frames of every video it makes, and every
picture a job starts from, before anything is stored (``VIDEOBOT_SAFETY_MODEL``).

A score is the classifier's probability that a picture is unsafe (0..1); a video's score is the highest
over its sampled frames (``SAMPLED_FRAMES`` evenly spaced; for an extension, over its new frames). What
a score means for posting is ``videobot.safety``'s levels.

Two checkpoint formats load, from a Hugging Face repo id (downloaded on first use into the Hugging Face
cache, like the video models) or a local folder:

- **timm ViT** (``config.json`` with ``architecture: vit_*``), e.g. the default
  ``Marqo/nsfw-image-detection-384``. timm itself needs torchvision, whose PyPI build is tied to a CUDA
  build of torch (it does not import beside a CPU torch), so the network is this module's own
  ``TimmViT``, written with timm's parameter names so the checkpoint loads as it is (``strict``): patch
  embedding, class token, pre-norm blocks, final norm, head on the class token.
- **transformers image classifiers** (``config.json`` with ``model_type``), e.g.
  ``Falconsai/nsfw_image_detection``, through ``AutoModelForImageClassification``.

The unsafe classes are found by label name (``NSFW``, ``nsfw``, ``porn``, ``hentai``, ``sexy``, …) and
their probabilities added. Preprocessing follows the checkpoint's own (input size, bicubic or its
resampling, mean / std), applied to square windows that cover the whole frame (a 16:9 frame is two
windows, its highest score counts) instead of the model's centre crop, which would leave a wide frame's
sides unchecked.

``tiny-safe`` and ``tiny-unsafe`` are built-in test classifiers (no download): a tiny random ``TimmViT``
written to ``DATA_DIR/models/`` as a timm checkpoint and loaded like any other, so the loading,
preprocessing and forward pass are the real ones; only its head is fixed (zero weights, a bias of
±200) so that every picture scores exactly 0 (``tiny-safe``) or 1 (``tiny-unsafe``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

#: The default: a timm ViT-Tiny/16 at 384 px (5.6M parameters, 22 MB, Apache-2.0), see the README.
DEFAULT_SAFETY_MODEL = "Marqo/nsfw-image-detection-384"
#: Built-in test classifiers and the score each gives every picture.
TINY_CLASSIFIERS = {"tiny-safe": 0.0, "tiny-unsafe": 1.0}
#: Frames scored per video (evenly spaced, first and last included); fewer when the video has fewer.
SAMPLED_FRAMES = 8
#: Label names (lower case) that mean "unsafe"; a label containing "nsfw" counts too ("sfw" does not).
UNSAFE_LABELS = frozenset({"nsfw", "unsafe", "porn", "hentai", "sexy", "explicit", "nude", "nudity"})
#: PIL's resampling numbers (transformers' ``resample``) as torch's interpolation modes.
_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
_TIMM_VIT = re.compile(r"^vit_(tiny|small|base|large)_patch(\d+)_(\d+)")
#: timm's ViT sizes: embedding width, depth, heads.
_VIT_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}


class SafetyLoadError(Exception):
    """The safety classifier could not be loaded; the message says which, why, and what to do."""


@dataclass(frozen=True)
class SafetyVerdict:
    """A video's (or a picture's) score: the highest over what was scored, where, and by which model."""

    score: float
    frame: int
    model: str
    frames_scored: int
    seconds: float


def resolve_safety_model(setting: str, *, video_model_is_tiny: bool) -> str | None:
    """The classifier a worker loads for ``VIDEOBOT_SAFETY_MODEL``: None for ``off``; ``auto`` is the
    default model, or ``tiny-safe`` beside a built-in tiny video model (its videos are abstract noise,
    and the tiny setup must work offline)."""
    name = setting.strip()
    if name.lower() == "off":
        return None
    if name.lower() == "auto":
        return "tiny-safe" if video_model_is_tiny else DEFAULT_SAFETY_MODEL
    return name


def sample_indices(num_frames: int, start: int = 0, count: int = SAMPLED_FRAMES) -> list[int]:
    """``count`` frame indices evenly spaced over ``[start, num_frames)``, first and last included
    (every frame when there are fewer)."""
    start = min(max(start, 0), max(num_frames - 1, 0))
    n = num_frames - start
    if n <= count:
        return list(range(start, num_frames))
    return sorted({start + round(i * (n - 1) / (count - 1)) for i in range(count)})


# ------------------------------------------------------------------ the timm ViT
class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimmViT(nn.Module):
    """timm's ``VisionTransformer`` as its classifier checkpoints use it (class token, learned position
    embedding, pre-norm blocks, ``global_pool='token'``), with timm's parameter names."""

    def __init__(
        self, *, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int, num_classes: int
    ) -> None:
        super().__init__()
        tokens = (img_size // patch_size) ** 2 + 1
        self.img_size = img_size
        self.patch_embed = _PatchEmbed(embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, embed_dim) * 0.02)
        self.blocks = nn.ModuleList(_Block(embed_dim, num_heads, embed_dim * 4) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def _timm_vit_args(config: dict[str, Any]) -> dict[str, int]:
    arch = str(config.get("architecture", ""))
    m = _TIMM_VIT.match(arch)
    if m is None:
        raise ValueError(f"timm architecture `{arch}` is not supported (only ViT: vit_tiny/small/base/large)")
    if config.get("global_pool", "token") != "token":
        raise ValueError(f"timm ViT with global_pool={config.get('global_pool')!r} is not supported")
    dim, depth, heads = _VIT_SIZES[m.group(1)]
    args = {"embed_dim": dim, "depth": depth, "num_heads": heads, "patch_size": int(m.group(2))}
    args["img_size"] = int(m.group(3))
    # Dropout rates are training-only (a no-op in eval): accepted and left out.
    extra = {
        k: v
        for k, v in (config.get("model_args") or {}).items()
        if not k.endswith("drop_rate") and k != "drop_path_rate"
    }
    unknown = set(extra) - {"embed_dim", "depth", "num_heads", "patch_size", "img_size"}
    if unknown:
        raise ValueError(f"timm model_args {sorted(unknown)} are not supported")
    args.update({k: int(v) for k, v in extra.items()})
    args["num_classes"] = int(config.get("num_classes", 2))
    return args


# ------------------------------------------------------------------ the classifier
class SafetyClassifier:
    """A loaded image safety classifier on one device; ``score_video`` / ``score_image`` from a thread."""

    def __init__(
        self,
        name: str,
        net: nn.Module,
        device: torch.device,
        *,
        size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        resample: str,
        unsafe: list[int],
        labels: list[str],
        logits_of: Any = None,
    ) -> None:
        self.name = name
        self.net = net.eval().requires_grad_(False).to(device)
        self.device = device
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.resample = resample
        self.unsafe = unsafe
        self.labels = labels
        self._logits_of = logits_of or (lambda out: out)

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, name: str, *, data_dir: Path, device: torch.device | str = "cpu") -> SafetyClassifier:
        """Load ``name``: ``tiny-safe`` / ``tiny-unsafe``, a local folder, or a Hugging Face repo id
        (downloaded into the Hugging Face cache on first use). Raises ``SafetyLoadError``."""
        dev = torch.device(device)
        if name in TINY_CLASSIFIERS:
            folder = build_tiny_classifier(Path(data_dir) / "models" / name, TINY_CLASSIFIERS[name])
        elif Path(name).expanduser().is_dir():
            folder = Path(name).expanduser()
        else:
            folder = _download(name)
        try:
            return cls._from_folder(name, folder, dev)
        except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError) as exc:
            raise SafetyLoadError(
                f"Could not load the safety classifier `{name}` from {folder}: {exc}. "
                "Set VIDEOBOT_SAFETY_MODEL to a timm ViT or transformers image classifier (see README), "
                "or to off."
            ) from exc

    @classmethod
    def _from_folder(cls, name: str, folder: Path, dev: torch.device) -> SafetyClassifier:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if "architecture" in config:  # timm
            from safetensors.torch import load_file

            args = _timm_vit_args(config)
            net = TimmViT(**args)
            net.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
            pre = config.get("pretrained_cfg") or {}
            labels = list(config.get("label_names") or pre.get("label_names") or [])
            size = int((pre.get("input_size") or [3, args["img_size"], args["img_size"]])[-1])
            if size != args["img_size"]:
                raise ValueError(f"input_size {size} differs from the model's {args['img_size']}")
            mean = tuple(pre.get("mean") or (0.485, 0.456, 0.406))
            std = tuple(pre.get("std") or (0.229, 0.224, 0.225))
            resample = str(pre.get("interpolation", "bicubic"))
            logits_of = None
        else:  # transformers
            from transformers import AutoModelForImageClassification

            net = AutoModelForImageClassification.from_pretrained(folder)
            labels = [net.config.id2label[i] for i in range(net.config.num_labels)]
            # The image processor's settings, read as saved (its classes differ between versions).
            pre = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
            sizes = pre.get("size") if isinstance(pre.get("size"), dict) else {"height": pre.get("size")}
            size = int(sizes.get("height") or sizes.get("shortest_edge") or net.config.image_size)
            mean = tuple(pre.get("image_mean") or (0.5, 0.5, 0.5))
            std = tuple(pre.get("image_std") or (0.5, 0.5, 0.5))
            resample = _PIL_RESAMPLE.get(int(pre.get("resample", 2)), "bilinear")
            logits_of = _logits_attr
        if resample not in ("bicubic", "bilinear", "nearest"):
            raise ValueError(f"interpolation {resample!r} is not supported (bicubic, bilinear or nearest)")
        if len(labels) != _num_outputs(net):
            raise ValueError(f"{len(labels)} label names for {_num_outputs(net)} outputs")
        unsafe = [i for i, label in enumerate(labels) if _is_unsafe(label)]
        if not unsafe:
            raise ValueError(f"none of its labels {labels} means unsafe (e.g. NSFW)")
        return cls(
            name,
            net,
            dev,
            size=size,
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
            resample=resample,
            unsafe=unsafe,
            labels=labels,
            logits_of=logits_of,
        )

    # ---------------------------------------------------------------- scoring
    def layout(self, width: int, height: int) -> tuple[int, int, list[tuple[int, int]]]:
        """How a picture is cut into windows: its size once scaled so that its short side is ``size`` px,
        and the top-left corner of each ``size``-px square, evenly spaced along the long side to cover it."""
        scale = self.size / min(width, height)
        rw, rh = max(self.size, round(width * scale)), max(self.size, round(height * scale))
        long = max(rw, rh)
        n = math.ceil(long / self.size - 1e-6)
        if n == 1:
            offsets = [(long - self.size) // 2]
        else:
            offsets = [round(i * (long - self.size) / (n - 1)) for i in range(n)]
        return rw, rh, [(o, 0) if rw >= rh else (0, o) for o in offsets]

    def windows(self, pictures: np.ndarray) -> torch.Tensor:
        """Same-size uint8 pictures (N x H x W x 3) as their windows on the classifier's device: floats in
        0..255, N*k x 3 x size x size, picture by picture. Resized there (on the GPU when the worker has
        one), with antialiasing as PIL does."""
        _, h, w, _ = pictures.shape
        rw, rh, corners = self.layout(w, h)
        x = (
            torch.from_numpy(np.require(pictures, np.uint8, ["C", "W"]))
            .to(self.device)
            .permute(0, 3, 1, 2)
            .float()
        )
        if (rw, rh) != (w, h):
            smooth = self.resample != "nearest"
            x = nn.functional.interpolate(
                x,
                size=(rh, rw),
                mode=self.resample,
                antialias=smooth,
                align_corners=False if smooth else None,
            ).clamp_(0.0, 255.0)
        s = self.size
        return torch.stack([x[:, :, y : y + s, x0 : x0 + s] for x0, y in corners], dim=1).flatten(0, 1)

    @torch.inference_mode()
    def probabilities(self, pictures: np.ndarray) -> list[float]:
        """Each same-size uint8 picture's (N x H x W x 3) probability of being unsafe: the highest over its
        windows."""
        crops = self.windows(pictures)
        batch = (crops / 255.0 - self.mean) / self.std
        probs = torch.softmax(self._logits_of(self.net(batch)).float(), dim=-1)
        unsafe = probs[:, self.unsafe].sum(dim=-1).clamp_(0.0, 1.0)
        return unsafe.view(len(pictures), -1).amax(dim=1).cpu().tolist()

    def score_video(self, frames: np.ndarray, *, start: int = 0) -> SafetyVerdict:
        """Score ``SAMPLED_FRAMES`` evenly spaced frames (uint8, F x H x W x 3) from ``start`` on (an
        extension's new frames) in one batch; the verdict's frame is an index into ``frames``."""
        t0 = time.perf_counter()
        picks = sample_indices(len(frames), start)
        scores = self.probabilities(np.asarray(frames)[picks])
        k = int(np.argmax(scores))
        return SafetyVerdict(float(scores[k]), picks[k], self.name, len(picks), time.perf_counter() - t0)

    def score_image(self, image: Any) -> SafetyVerdict:
        """Score one PIL picture (a job's input)."""
        t0 = time.perf_counter()
        (score,) = self.probabilities(np.asarray(image.convert("RGB"))[None])
        return SafetyVerdict(float(score), 0, self.name, 1, time.perf_counter() - t0)


def _logits_attr(out: Any) -> torch.Tensor:
    return out.logits


def _num_outputs(net: nn.Module) -> int:
    config = getattr(net, "config", None)
    if config is not None:
        return int(config.num_labels)
    return int(net.head.out_features)  # type: ignore[union-attr]


def _is_unsafe(label: str) -> bool:
    name = label.strip().lower()
    return name in UNSAFE_LABELS or "nsfw" in name


def _download(repo_id: str) -> Path:
    """The repo's classifier files from the Hugging Face cache, downloading them the first time."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(
            snapshot_download(
                repo_id,
                allow_patterns=["config.json", "model.safetensors", "preprocessor_config.json"],
            )
        )
    except HFValidationError:
        raise SafetyLoadError(
            f"VIDEOBOT_SAFETY_MODEL `{repo_id}` is neither a Hugging Face repo id nor an existing folder."
        ) from None
    except Exception as exc:  # the hub's errors: offline, not found, gated, network
        from generator.pipeline import _download_hint

        hint = _download_hint(repo_id, repo_id, exc).split(". Or set VIDEOBOT_MODEL")[0]
        raise SafetyLoadError(
            f"{hint.replace('Could not load model', 'Could not load the safety classifier')}. "
            "Or set VIDEOBOT_SAFETY_MODEL=off to run without the check."
        ) from exc


def build_tiny_classifier(folder: Path, score: float) -> Path:
    """Write a tiny random timm ViT checkpoint whose head answers ``score`` (0 or 1) for any picture
    into ``folder`` (offline, seconds); an existing one is kept."""
    from safetensors.torch import save_file

    if (folder / "model.safetensors").exists() and (folder / "config.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    args = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 16, "img_size": 64}
    torch.manual_seed(0)
    net = TimmViT(**args, num_classes=2)
    with torch.no_grad():  # labels NSFW, SFW: the bias alone decides, exp(-400) is 0 in float32
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([200.0, -200.0] if score >= 0.5 else [-200.0, 200.0]))
    config = {
        "architecture": "vit_tiny_patch16_384",
        "model_args": args,
        "num_classes": 2,
        "global_pool": "token",
        "pretrained_cfg": {
            "input_size": [3, 64, 64],
            "interpolation": "bicubic",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "label_names": ["NSFW", "SFW"],
        },
    }
    tmp = folder / f"model.safetensors.{os.getpid()}.part"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    tmp.replace(folder / "model.safetensors")
    return folder


def load_safety(
    setting: str, *, data_dir: Path, device: torch.device | str, video_model_is_tiny: bool
) -> SafetyClassifier | None:
    """The worker's classifier for ``VIDEOBOT_SAFETY_MODEL`` (None when ``off``, with a warning)."""
    name = resolve_safety_model(setting, video_model_is_tiny=video_model_is_tiny)
    if name is None:
        log.warning(
            "VIDEOBOT_SAFETY_MODEL=off: videos and input pictures are NOT checked; every result is posted "
            "as it is made. Only do this on a private server."
        )
        return None
    t0 = time.perf_counter()
    classifier = SafetyClassifier.load(name, data_dir=data_dir, device=device)
    log.info(
        "safety classifier %s loaded on %s in %.1f s (labels %s; %d frames scored per video)",
        name,
        classifier.device,
        time.perf_counter() - t0,
        classifier.labels,
        SAMPLED_FRAMES,
    )
    return classifier
