"""Load a diffusers text-to-video pipeline once and run it with validation, progress, cancel and OOM handling."""

from __future__ import annotations

import gc
import inspect
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generator.encode import frames_to_uint8
from videobot.errors import GenerationOOM, InvalidParameters
from videobot.presets import DEFAULT_GPU_PRESET, GenerationParams, Preset, clean_prompt, resolve_preset

log = logging.getLogger(__name__)

OOM_MESSAGE = "Not enough GPU memory for this video. Try a shorter duration or a smaller aspect ratio."
OFFLOAD_MODES = ("none", "model", "sequential", "group")
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class ModelLoadError(Exception):
    """The model could not be loaded; the message says which model, why, and what to do."""


def resolve_auto_model(model: str) -> str:
    """``"auto"`` means the default GPU preset when CUDA is available, else the built-in tiny model."""
    if model != "auto":
        return model
    if torch.cuda.is_available():
        return DEFAULT_GPU_PRESET
    log.warning(
        "No CUDA GPU found: using the built-in `tiny` model, which makes abstract test videos. "
        "To generate real videos install a CUDA build of torch and pick a model with VIDEOBOT_MODEL "
        "(or `--model`), e.g. %s.",
        DEFAULT_GPU_PRESET,
    )
    return "tiny"


def _resolve_device(device: str, model: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ModelLoadError(f"Unknown device `{device}` for `{model}`: use auto, cpu or cuda.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"Device `{device}` was requested for `{model}` but torch sees no CUDA GPU. "
            "Install a CUDA build of torch (see README) or set VIDEOBOT_DEVICE=auto."
        )
    return dev


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


class VideoPipeline:
    """A loaded diffusers pipeline plus the preset it is run with."""

    def __init__(self, pipe: Any, preset: Preset, device: torch.device, dtype: torch.dtype) -> None:
        self.pipe = pipe
        self.preset = preset
        self.device = device
        self.dtype = dtype
        pipe.set_progress_bar_config(disable=True)  # progress goes through on_step instead
        self._call_params = set(inspect.signature(pipe.__call__).parameters)

    @classmethod
    def load(
        cls,
        model: str,
        *,
        data_dir: Path,
        device: str = "auto",
        dtype: str = "auto",
        offload: str = "none",
        vae_tiling: bool = False,
        layerwise_fp8: bool = False,
    ) -> VideoPipeline:
        """Resolve ``model`` (preset, Hub repo id or local folder), load it and apply memory options."""
        try:
            preset = resolve_preset(resolve_auto_model(model))
        except InvalidParameters as exc:
            raise ModelLoadError(str(exc)) from None
        if offload not in OFFLOAD_MODES:
            raise ModelLoadError(f"Unknown offload mode `{offload}`: use one of {', '.join(OFFLOAD_MODES)}.")
        dev = _resolve_device(device, preset.name)
        if preset.needs_gpu and dev.type == "cpu":
            if device == "auto":
                raise ModelLoadError(
                    f"Model `{preset.name}` needs a CUDA GPU but torch sees none. Install a CUDA build of torch "
                    "(see README), or set VIDEOBOT_MODEL=tiny to try the bot with the built-in test model."
                )
            log.warning("running %s on the CPU as requested: expect hours per video", preset.name)
        if dtype == "auto":
            torch_dtype = _DTYPES[preset.default_dtype] if dev.type == "cuda" else torch.float32
        elif dtype in _DTYPES:
            torch_dtype = _DTYPES[dtype]
        else:
            raise ModelLoadError(f"Unknown dtype `{dtype}`: use auto, {', '.join(_DTYPES)}.")

        from diffusers import DiffusionPipeline

        if preset.name == "tiny":
            from generator.tiny import build_tiny_model

            source = str(build_tiny_model(Path(data_dir) / "models" / "tiny"))
            if dev.type == "cpu":
                # Its tensors are tiny: extra intra-op threads only spin, and on a busy machine
                # (CI, tests in parallel) that made runs 30x slower. Process-wide, fine for a worker.
                torch.set_num_threads(1)
        else:
            source = preset.repo_id
        log.info("loading %s from %s (%s, %s)", preset.name, source, dev, torch_dtype)
        try:
            pipe = DiffusionPipeline.from_pretrained(source, dtype=torch_dtype)
        except ImportError as exc:
            raise ModelLoadError(f"Model `{preset.name}` needs a missing Python package: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise ModelLoadError(_download_hint(preset.name, source, exc)) from exc

        _apply_memory_options(pipe, dev, torch_dtype, offload, vae_tiling, layerwise_fp8)
        return cls(pipe, preset, dev, torch_dtype)

    def check_inputs(self, params: GenerationParams) -> None:
        """Validate ``params`` against the preset before any GPU work; raises ``InvalidParameters``."""
        p = self.preset
        clean_prompt(params.prompt)
        if not p.valid_frames(params.num_frames):
            raise InvalidParameters(
                f"{params.num_frames} frames is not valid for `{p.name}`: use {p.frame_rule}k+1 frames "
                f"between {p.min_frames} and {p.max_frames}."
            )
        for name, value in (("width", params.width), ("height", params.height)):
            if not 0 < value <= 2048 or value % p.size_multiple:
                raise InvalidParameters(
                    f"A {name} of {value} px is not valid for `{p.name}`: use a multiple of {p.size_multiple} "
                    "up to 2048."
                )
        if not 1 <= params.num_inference_steps <= 200:
            raise InvalidParameters("The number of steps must be between 1 and 200.")
        if not math.isfinite(params.guidance_scale) or not 0 <= params.guidance_scale <= 30:
            raise InvalidParameters("The guidance scale must be between 0 and 30.")
        if not 1 <= params.fps <= 120:
            raise InvalidParameters("The frame rate must be between 1 and 120 fps.")
        if not 0 <= params.seed <= 2**32 - 1:
            raise InvalidParameters(f"The seed must be a whole number from 0 to {2**32 - 1}.")

    def run(self, params: GenerationParams, on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Generate frames as uint8 (F, H, W, 3); exceptions raised by ``on_step`` stop the loop at once."""
        self.check_inputs(params)
        total = params.num_inference_steps

        def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if on_step is not None:
                on_step(step + 1, total)
            return kwargs

        # A CPU generator gives the same starting noise for a seed on any device and offload mode.
        kwargs: dict[str, Any] = {
            "prompt": params.prompt,
            "negative_prompt": params.negative_prompt or None,
            "num_frames": params.num_frames,
            "width": params.width,
            "height": params.height,
            "num_inference_steps": total,
            "guidance_scale": params.guidance_scale,
            "generator": torch.Generator(device="cpu").manual_seed(params.seed),
            "output_type": "np",
            "callback_on_step_end": callback,
            "frame_rate": params.fps,  # LTX uses it for its rotary embeddings
            **self.preset.extra_call_kwargs,
        }
        kwargs = {k: v for k, v in kwargs.items() if k in self._call_params}
        out_of_memory = False
        try:
            with torch.inference_mode():
                frames = self.pipe(**kwargs).frames
        except Exception as exc:
            if not _is_oom(exc):
                raise
            out_of_memory = True
        if out_of_memory:  # outside the except block so the traceback no longer pins GPU tensors
            self._free_memory()
            raise GenerationOOM(OOM_MESSAGE)
        return frames_to_uint8(frames[0])

    def _free_memory(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.warning("out of GPU memory; freed the cache")


def _apply_memory_options(
    pipe: Any, dev: torch.device, dtype: torch.dtype, offload: str, vae_tiling: bool, layerwise_fp8: bool
) -> None:
    if layerwise_fp8:
        pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    if vae_tiling and hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling()
    if offload != "none" and dev.type == "cpu":
        log.warning("offload=%s has no effect on the CPU; ignoring it", offload)
        offload = "none"
    if offload == "model":
        pipe.enable_model_cpu_offload(device=dev)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=dev)
    elif offload == "group":
        pipe.enable_group_offload(onload_device=dev, offload_type="leaf_level", use_stream=dev.type == "cuda")
    else:
        pipe.to(dev)


def _download_hint(name: str, source: str, exc: BaseException) -> str:
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 10:  # diffusers often wraps the hub error in a plain OSError
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, GatedRepoError) for e in chain):
        why = "the repository is gated: accept its terms on huggingface.co and log in with `hf auth login`"
    elif any(isinstance(e, RepositoryNotFoundError) for e in chain):
        why = "no such repository on the Hugging Face Hub: check the repo id (or log in if it is private)"
    elif any(isinstance(e, LocalEntryNotFoundError) for e in chain) or any(
        word in text for word in ("offline", "cached", "connect", "outgoing traffic")
    ):
        why = (
            "it is not in the local Hugging Face cache and could not be downloaded: connect to the internet "
            "(and unset HF_HUB_OFFLINE) once so it can download"
        )
    else:
        why = f"{type(exc).__name__}: {exc}"
    return f"Could not load model `{name}` from `{source}`: {why}. Or set VIDEOBOT_MODEL=tiny to test without it."
