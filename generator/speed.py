"""Speed options applied once at load: attention backend, a step cache, regional compile, VAE slicing.

Each option is a setting with a safe default (see ``.env.example`` and the README for what each costs in
quality). An option the loaded family or this installation cannot honour stops start-up with
``SpeedOptionError``, whose message names the setting, instead of being silently ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ATTENTION_BACKENDS = ("native", "flash", "sage", "auto")
STEP_CACHES = ("off", "first_block", "mag", "taylorseer", "pab")
COMPILE_MODES = ("off", "regional")

#: Families whose transformer blocks diffusers 0.42 has not registered for FirstBlockCache / MagCache
#: (they raise "not registered"; read in diffusers/hooks/_helpers.py and tried, see NOTES.md).
_UNREGISTERED_BLOCKS = frozenset({"ltx2", "hunyuan15", "hunyuanvideo15", "skyreels", "skyreels2"})
#: Families where PyramidAttentionBroadcast runs into a shape mismatch at its first reused step (LTX-2's
#: audio-video attention; tried on the tiny LTX-2 model).
_PAB_BREAKS = frozenset({"ltx2"})
#: Families whose transformer has no ``_repeated_blocks``, so ``compile_repeated_blocks`` cannot work.
_NO_REPEATED_BLOCKS = frozenset({"cogvideox", "mochi", "allegro"})
_CACHE_NAMES = {
    "first_block": "FirstBlockCache",
    "mag": "MagCache",
    "taylorseer": "TaylorSeer",
    "pab": "PyramidAttentionBroadcast",
}

#: Attention modules of the transformer blocks (Wan ``blocks.N.attn1``, LTX/CogVideoX ``transformer_blocks.N.attn1``).
_ATTENTION_MODULES = r"(blocks|transformer_blocks|single_transformer_blocks)\.\d+\.attn\d*"


class SpeedOptionError(ValueError):
    """A speed option the loaded model (or this installation) does not support; the message names the setting."""


@dataclass(frozen=True)
class SpeedOptions:
    """The speed settings, as the worker reads them once at start-up."""

    attention_backend: str = "native"
    step_cache: str = "off"
    compile: str = "off"
    vae_slicing: bool = False
    #: Applied with the memory options (generator/pipeline.py); only checked here, so it is never ignored.
    vae_tiling: bool = False

    @classmethod
    def from_settings(cls, settings: Any) -> SpeedOptions:
        return cls(
            attention_backend=settings.attention_backend,
            step_cache=settings.step_cache,
            compile=settings.compile,
            vae_slicing=settings.vae_slicing,
            vae_tiling=bool(settings.vae_tiling),
        )

    @property
    def needs_warm_up(self) -> bool:
        """Whether the first call pays a one-off cost (compile) or may fail late (a cache hook): run one at load."""
        return self.compile != "off" or self.step_cache != "off"


def _installed_backend(name: str) -> bool:
    """Whether diffusers can use attention backend ``name`` here (its own requirement check)."""
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _check_attention_backend_requirements,
    )

    try:
        _check_attention_backend_requirements(AttentionBackendName(name))
    except RuntimeError:
        return False
    return True


#: Families whose transformers pass an attention mask (the prompt mask to cross-attention), which diffusers'
#: flash and sage backends refuse with a ValueError in every job (diffusers/models/attention_dispatch.py), or
#: whose attention processor calls PyTorch directly and ignores the backend (CogVideoX).
_NATIVE_ATTENTION_ONLY = {
    "ltx": "its transformer passes the prompt's attention mask, which the {backend} backend refuses",
    "ltx2": "its transformer passes the prompt's attention mask, which the {backend} backend refuses",
    "cogvideox": "its attention calls PyTorch directly and would ignore the setting",
}


def choose_attention_backend(
    family: str, backend: str, device: Any, dtype: Any, *, installed: Callable[[str], bool] | None = None
) -> str:
    """The attention backend that will run for ``backend`` (a VIDEOBOT_ATTENTION_BACKEND value) on a model of
    ``family`` that runs on ``device`` in ``dtype``, or ``SpeedOptionError`` naming the setting.

    ``device`` and ``dtype`` are where and how the model *runs* (the worker's device and compute dtype), not
    where its weights are now: under offload they sit on the CPU, under fp8 layerwise casting in float8.
    """
    import torch

    installed = installed or _installed_backend
    half = dtype in (torch.bfloat16, torch.float16)
    cuda = torch.device(device).type == "cuda"
    if backend == "auto":
        # flash is exact attention in fewer memory passes; sage (int8 Q/K) is never chosen for you.
        usable = cuda and half and family not in _NATIVE_ATTENTION_ONLY
        return "flash" if usable and installed("flash") else "native"
    if backend == "native":
        return backend
    why = _NATIVE_ATTENTION_ONLY.get(family)
    if why is not None:
        raise SpeedOptionError(
            f"VIDEOBOT_ATTENTION_BACKEND={backend} does not work with the {family} family: "
            f"{why.format(backend=backend)}. Set VIDEOBOT_ATTENTION_BACKEND=native (or auto)."
        )
    package = {"flash": "flash-attn", "sage": "sageattention"}[backend]
    if not installed(backend):
        raise SpeedOptionError(
            f"VIDEOBOT_ATTENTION_BACKEND={backend} needs the `{package}` package, which is not installed (or too "
            f"old): install it, or set VIDEOBOT_ATTENTION_BACKEND=native."
        )
    if not (cuda and half):
        raise SpeedOptionError(
            f"VIDEOBOT_ATTENTION_BACKEND={backend} needs the {family} model on a CUDA GPU in bfloat16 or float16 "
            f"(it runs on {torch.device(device).type} in {str(dtype).removeprefix('torch.')}): set "
            "VIDEOBOT_ATTENTION_BACKEND=native, or VIDEOBOT_DTYPE=bfloat16."
        )
    return backend


def _set_attention(pipe: Any, family: str, backend: str, notes: list[str], device: Any, dtype: Any) -> None:
    chosen = choose_attention_backend(family, backend, device, dtype)
    if backend == "auto":
        notes.append(f"attention backend auto -> {chosen}")
    for t in _transformers(pipe):
        t.set_attention_backend(chosen)
    if chosen == "native":
        notes.append("attention: native (PyTorch scaled_dot_product_attention)")
    else:
        notes.append(f"attention: {chosen}")


def _cache_config(pipe: Any, family: str, cache: str, pipes: Sequence[Any] = ()) -> Any:
    from diffusers.hooks import (
        FirstBlockCacheConfig,
        PyramidAttentionBroadcastConfig,
        TaylorSeerCacheConfig,
    )

    setting = f"VIDEOBOT_STEP_CACHE={cache}"
    if cache in ("first_block", "mag") and family in _UNREGISTERED_BLOCKS:
        raise SpeedOptionError(
            f"{setting} is not supported by the {family} family: diffusers has not registered its transformer "
            f"blocks for {_CACHE_NAMES[cache]}. Use VIDEOBOT_STEP_CACHE=taylorseer or off."
        )
    if cache == "mag":
        # MagCache skips steps by per-model magnitude ratios; diffusers 0.42 ships them for Flux only.
        raise SpeedOptionError(
            f"{setting} is not supported by the {family} family: MagCache needs magnitude ratios calibrated for "
            "the model, and diffusers ships them only for Flux. Use VIDEOBOT_STEP_CACHE=first_block, "
            "taylorseer or off."
        )
    if cache == "first_block":
        # 0.05 is diffusers' default and the conservative end: a step is skipped only when the first block's
        # output moved less than 5 % since the previous step.
        return FirstBlockCacheConfig(threshold=0.05)
    if cache == "taylorseer":
        # diffusers' default patterns end in "attn" and miss Wan's and LTX's attn1/attn2: name them.
        return TaylorSeerCacheConfig(
            cache_interval=5, disable_cache_before_step=3, max_order=1, cache_identifiers=[_ATTENTION_MODULES]
        )
    if cache == "pab":
        if family in _PAB_BREAKS:
            raise SpeedOptionError(
                f"{setting} is not supported by the {family} family: PyramidAttentionBroadcast fails on its "
                "audio-video attention. Use VIDEOBOT_STEP_CACHE=taylorseer or off."
            )
        if not hasattr(type(pipe), "current_timestep"):
            raise SpeedOptionError(
                f"{setting} is not supported by the {family} family: its pipeline does not expose the current "
                "timestep that PyramidAttentionBroadcast follows. Use VIDEOBOT_STEP_CACHE=first_block or off."
            )
        running = [pipe, *(p for p in pipes if p is not pipe)]
        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=2,
            spatial_attention_timestep_skip_range=(100, 800),
            # The verbs' pipelines share this transformer (from_pipe): follow whichever one is running.
            current_timestep_callback=lambda: next(
                (p.current_timestep for p in running if p.current_timestep is not None), None
            ),
        )
    raise SpeedOptionError(f"Unknown {setting}: use one of {', '.join(STEP_CACHES)}.")


def apply_speed_options(
    pipe: Any,
    family: str,
    options: SpeedOptions,
    *,
    pipes: Sequence[Any] = (),
    device: Any = None,
    dtype: Any = None,
) -> list[str]:
    """Apply ``options`` to a loaded pipeline (after the memory options); returns what was applied, in words.

    ``pipes`` are the other pipelines built on ``pipe``'s modules (one per verb, ``from_pipe``); every
    transformer (``transformer`` and Wan 2.2 A14B's ``transformer_2``) gets the options. ``device`` and
    ``dtype`` are where and how the model runs (default: where its transformer's weights are now, which under
    offload or fp8 storage is not where it runs). Raises ``SpeedOptionError`` naming the setting when the
    family or this installation does not support one.
    """
    notes: list[str] = []
    transformer = getattr(pipe, "transformer", None)
    if transformer is None:
        raise SpeedOptionError(
            f"The {family} pipeline has no transformer: the speed options cannot be applied."
        )
    if options.attention_backend not in ATTENTION_BACKENDS:
        raise SpeedOptionError(
            f"Unknown VIDEOBOT_ATTENTION_BACKEND={options.attention_backend}: use one of "
            f"{', '.join(ATTENTION_BACKENDS)}."
        )
    if options.compile not in COMPILE_MODES:
        raise SpeedOptionError(
            f"Unknown VIDEOBOT_COMPILE={options.compile}: use one of {', '.join(COMPILE_MODES)}."
        )
    if options.compile == "regional" and (
        family in _NO_REPEATED_BLOCKS or not all(_repeated_blocks(t) for t in _transformers(pipe))
    ):
        raise SpeedOptionError(
            f"VIDEOBOT_COMPILE=regional is not supported by the {family} family: its transformer declares no "
            "repeated blocks to compile. Set VIDEOBOT_COMPILE=off."
        )
    if options.vae_tiling and not hasattr(getattr(pipe, "vae", None), "enable_tiling"):
        raise SpeedOptionError(
            f"VIDEOBOT_VAE_TILING=true is not supported by the {family} family: its VAE cannot decode in tiles. "
            "Set VIDEOBOT_VAE_TILING=false."
        )
    if options.vae_slicing and not hasattr(getattr(pipe, "vae", None), "enable_slicing"):
        raise SpeedOptionError(
            f"VIDEOBOT_VAE_SLICING=true is not supported by the {family} family: its VAE cannot decode in slices. "
            "Set VIDEOBOT_VAE_SLICING=false."
        )

    _set_attention(
        pipe,
        family,
        options.attention_backend,
        notes,
        transformer.device if device is None else device,
        transformer.dtype if dtype is None else dtype,
    )
    if options.step_cache != "off":
        for t in _transformers(pipe):
            _enable_cache(
                t, _cache_config(pipe, family, options.step_cache, pipes), family, options.step_cache
            )
        notes.append(f"step cache: {_CACHE_NAMES[options.step_cache]}")
    if options.vae_slicing:
        pipe.vae.enable_slicing()
        notes.append("VAE slicing")
    if options.compile == "regional":
        # dynamic=True: one compile serves every size and length, so the warm-up at load covers all jobs.
        # diffusers' hooks break the graph (a step cache; fp8 layerwise casting builds a Parameter; group
        # offload calls a compiler-disabled function), so fullgraph only on a transformer without any.
        for t in _transformers(pipe):
            t.compile_repeated_blocks(fullgraph=_hook_count(t) == 0, dynamic=True)
        notes.append(f"regional compile of {', '.join(_repeated_blocks(transformer))}")
    for note in notes:
        log.info("speed: %s", note)
    return notes


def _enable_cache(transformer: Any, config: Any, family: str, cache: str) -> None:
    before = _hook_count(transformer)
    try:
        transformer.enable_cache(config)
    except (ValueError, TypeError) as exc:  # e.g. "Model class ... not registered"
        raise SpeedOptionError(
            f"VIDEOBOT_STEP_CACHE={cache} is not supported by the {family} family: {exc}. Use VIDEOBOT_STEP_CACHE=off."
        ) from exc
    except IndexError as exc:  # FirstBlockCache pops a leader block and needs another after it
        raise SpeedOptionError(
            f"VIDEOBOT_STEP_CACHE={cache} is not supported by this {family} model: its transformer has too few "
            "blocks to cache. Use VIDEOBOT_STEP_CACHE=off."
        ) from exc
    if _hook_count(transformer) <= before:  # diffusers found no module to hook: it would do nothing
        transformer.disable_cache()
        raise SpeedOptionError(
            f"VIDEOBOT_STEP_CACHE={cache} is not supported by the {family} family: {_CACHE_NAMES[cache]} found "
            "no block of its transformer to cache. Use VIDEOBOT_STEP_CACHE=off."
        )


def _transformers(pipe: Any) -> list[Any]:
    """The denoisers of ``pipe``: ``transformer``, plus ``transformer_2`` on Wan 2.2 A14B."""
    return [
        t for t in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if t is not None
    ]


def _hook_count(module: Any) -> int:
    """How many diffusers hooks are registered on ``module`` and its children."""
    return sum(len(getattr(getattr(m, "_diffusers_hook", None), "hooks", ())) for m in module.modules())


def _repeated_blocks(transformer: Any) -> list[str]:
    return list(getattr(transformer, "_repeated_blocks", None) or [])


def reset_step_cache(pipe: Any, pipes: Sequence[Any] = ()) -> None:
    """Forget a step cache's state: a run stopped by an exception (cancel, shutdown, OOM) skips the reset
    diffusers does at the end of ``__call__``, and the next run must not reuse its residuals.

    ``pipes`` are the pipelines sharing ``pipe``'s transformer (one per verb): each one's current timestep is
    cleared too, since PyramidAttentionBroadcast follows whichever pipeline has one, and a cancelled run on
    another verb's pipeline would leave its last timestep behind."""
    for p in {id(p): p for p in (pipe, *pipes)}.values():
        if hasattr(p, "_current_timestep"):
            p._current_timestep = None
    for transformer in _transformers(pipe):
        if getattr(transformer, "is_cache_enabled", False):
            transformer._reset_stateful_cache()


def warm_up(
    pipeline_callable: Callable[[], Any], options: SpeedOptions | None = None, *, memory: Sequence[str] = ()
) -> float:
    """Run one small generation at load so the compile (or a cache hook's first-call failure) happens now,
    not in a member's job. Returns the seconds it took; a failure is a ``SpeedOptionError`` naming the settings
    (``memory``: the memory settings in effect, e.g. ``VIDEOBOT_FP8=true``, which change what is compiled)."""
    t0 = time.monotonic()
    try:
        pipeline_callable()
    except Exception as exc:
        if options is None:
            raise
        settings = ", ".join(
            [
                f"VIDEOBOT_COMPILE={options.compile}",
                f"VIDEOBOT_STEP_CACHE={options.step_cache}",
                f"VIDEOBOT_ATTENTION_BACKEND={options.attention_backend}",
                *memory,
            ]
        )
        raise SpeedOptionError(
            f"The warm-up run failed with {settings}: {type(exc).__name__}: {exc}. Turn these options off "
            "(or back to native) and start again."
        ) from exc
    seconds = time.monotonic() - t0
    log.info("speed: warm-up run took %.1f s", seconds)
    return seconds
