"""Load a checkpoint's diffusers pipelines once and run them (text, image, extend) with validation,
progress, cancel and OOM handling."""

from __future__ import annotations

import dataclasses
import gc
import inspect
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generator.encode import frames_to_uint8
from generator.preview import CONTENT_TYPE as PREVIEW_CONTENT_TYPE
from generator.preview import PreviewPlan, PreviewSink, latent_layout, preview_image, preview_plan
from generator.speed import SpeedOptionError, SpeedOptions, apply_speed_options, reset_step_cache, warm_up
from videobot.errors import GenerationOOM, InvalidParameters
from videobot.i18n import N_, msg
from videobot.images import fit, pixel_digest
from videobot.presets import (
    LOOP_START_FRAMES,
    MAX_VIDEOS,
    REQUEST_VERBS,
    GenerationParams,
    LoraSpec,
    Preset,
    check_keyframes,
    check_verb,
    clean_prompt,
    plan,
    resolve_preset,
    run_steps,
    tiny_family,
)
from videobot.styles import model_prompt

log = logging.getLogger(__name__)

#: Why a variation is missing from a result (stored in English, shown translated by the bot).
VARIATION_OOM = N_("not enough GPU memory")
OOM_MESSAGE = N_("Not enough GPU memory for this video. Try a shorter duration or a smaller aspect ratio.")
OFFLOAD_MODES = ("none", "model", "sequential", "group")
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class _SchedulerTimestepsNote(logging.Filter):
    """Drops diffusers' "`timesteps` were passed without `sigmas`" warning, logged on every LTX-Video job:
    ``LTXConditionPipeline`` itself always hands the scheduler timesteps and never sigmas (its own
    linear-quadratic schedule, or a distilled preset's documented one), so the warning says nothing about
    this job. Explained once at load instead (``_explain_ltx_timesteps``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "were passed without `sigmas`" not in record.getMessage()


_TIMESTEPS_NOTE = _SchedulerTimestepsNote()


def _explain_ltx_timesteps(pipes: dict[str, Any]) -> None:
    if not any(type(p).__name__ == "LTXConditionPipeline" for p in pipes.values()):
        return
    scheduler_log = logging.getLogger("diffusers.schedulers.scheduling_flow_match_euler_discrete")
    if _TIMESTEPS_NOTE not in scheduler_log.filters:
        scheduler_log.addFilter(_TIMESTEPS_NOTE)
        log.info(
            "LTXConditionPipeline passes its timestep schedule without sigmas on every call, as diffusers' "
            "LTX docs do: diffusers' warning about that is not repeated for each job"
        )


class ModelLoadError(Exception):
    """The model could not be loaded; the message says which model, why, and what to do."""


def resolve_auto_model(model: str, device: str = "auto") -> str:
    """``"auto"`` means what ``videobot.autoplan`` picks for this machine's GPU memory (``tiny`` without
    CUDA); any other name is returned as it is."""
    if model != "auto":
        return model
    from generator.machine import auto_plan

    return auto_plan(device=device).model


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


@dataclass(frozen=True)
class Variation:
    """One video of a request with variations: its place (0-based), its seed, and what it made or why not."""

    index: int
    seed: int
    output: RunOutput | None = None
    error: str | None = None  # safe to show a member: why this one could not be made


@dataclass(frozen=True)
class RunOutput:
    """What one run made: the video (uint8 F x H x W x 3), its variations, and a soundtrack if any."""

    frames: np.ndarray  # the first (or only) video; for ``extend``: the source followed by the new frames
    variations: tuple[np.ndarray, ...] = ()  # every video of the batch, ``frames`` first
    audio: np.ndarray | None = None  # float32 [channels, samples] in [-1, 1], ``frames``' soundtrack
    audio_sample_rate: int | None = None
    #: ``images.pixel_digest`` of the first frame the pipeline was given (``image`` jobs): logged by the
    #: worker so a test (or an owner) can tell which picture a video was made from.
    conditioning_digest: str | None = None
    audios: tuple[np.ndarray, ...] = ()  # every video's soundtrack, in ``variations``' order (if any)
    #: The same for the picture the video ends on (an end picture, or a loop's first frame).
    end_digest: str | None = None

    def split(self) -> list[RunOutput]:
        """One ``RunOutput`` per video of the batch, each with its own soundtrack."""
        videos = self.variations or (self.frames,)
        return [
            RunOutput(
                frames=v,
                variations=(v,),
                audio=self.audios[i] if i < len(self.audios) else (self.audio if i == 0 else None),
                audio_sample_rate=self.audio_sample_rate,
                audios=(self.audios[i],) if i < len(self.audios) else (),
                conditioning_digest=self.conditioning_digest,
                end_digest=self.end_digest,
            )
            for i, v in enumerate(videos)
        ]

    def audio_kwargs(self, encode: Callable[..., Any]) -> dict[str, Any]:
        """``audio=`` / ``audio_sample_rate=`` for ``encode`` when there is a soundtrack and it takes one."""
        if self.audio is None:
            return {}
        accepted = inspect.signature(encode).parameters
        if "audio" not in accepted or "audio_sample_rate" not in accepted:
            log.warning("the mp4 encoder cannot mux audio yet: the soundtrack is dropped")
            return {}
        return {"audio": self.audio, "audio_sample_rate": self.audio_sample_rate}


class VideoPipeline:
    """Loaded diffusers pipelines for one checkpoint (one per verb, sharing components) plus their preset."""

    def __init__(
        self,
        pipe: Any,
        preset: Preset,
        device: torch.device,
        dtype: torch.dtype,
        pipes: dict[str, Any] | None = None,
    ) -> None:
        self.pipe = pipe
        self.preset = preset
        self.device = device
        self.dtype = dtype
        #: verb -> pipeline; all built from ``pipe`` with ``from_pipe``, so they share its modules.
        self.pipes: dict[str, Any] = pipes or {v: pipe for v in preset.verbs if v in REQUEST_VERBS}
        self._call_params: dict[int, set[str]] = {}
        self.offload = "none"  # set by ``load``
        #: HD videos (``generator.hd``): where the latent upsampler comes from (set by ``load``; empty: no HD),
        #: the folder a tiny one is built in, and the upsample pipeline once the first HD job loaded it.
        self.upsampler_source = ""
        self.data_dir = Path("data")
        self._upsample: Any = None
        #: Server styles loaded as named adapters (``generator.styles``); None: this model cannot load them.
        self.styles: Any = None
        for p in {id(p): p for p in (pipe, *self.pipes.values())}.values():
            p.set_progress_bar_config(disable=True)  # progress goes through on_step instead
            self._call_params[id(p)] = set(inspect.signature(p.__call__).parameters)

    @property
    def verbs(self) -> frozenset[str]:
        """The request verbs this loaded model runs."""
        return frozenset(self.pipes)

    @classmethod
    def load(
        cls,
        model: str | Preset,
        *,
        data_dir: Path,
        device: str = "auto",
        dtype: str = "auto",
        offload: str | None = None,
        vae_tiling: bool | None = None,
        layerwise_fp8: bool | None = None,
        speed: SpeedOptions | None = None,
        loras: Sequence[LoraSpec] = (),
        build: Callable[[Preset, Any], Any] | None = None,
        hd_upsampler: str | None = None,
        style_cache: int = 3,
    ) -> VideoPipeline:
        """Resolve ``model`` (preset, Hub repo id or local folder), load it and apply memory options.

        A memory option left ``None`` was not set by the owner: ``auto`` then takes the one it picks for
        the card's memory (``videobot.autoplan``), any other model has it off.
        ``loras`` (``VIDEOBOT_LORAS``), after the preset's own, are fused into the model (``_fuse_loras``).
        ``hd_upsampler`` (``VIDEOBOT_HD_UPSAMPLER``) replaces the preset's latent upsampler for HD videos.
        ``build(preset, dtype)`` makes the diffusers pipeline instead of reading the checkpoint (``dtype`` as
        ``from_pretrained`` takes it): ``bench/gpu.py`` and ``bench/gpu_check.py`` give every model full-size
        random weights that way, and everything after it is the worker's own path.
        """
        from generator.machine import auto_plan

        if isinstance(model, Preset):  # a preset changed in code (the benches: a LoRA file built offline)
            preset_given: Preset | None = model
            model = model.name
        else:
            preset_given = None

        explicit = {"offload": offload, "vae_tiling": vae_tiling, "layerwise_fp8": layerwise_fp8}
        if model == "auto":
            chosen = auto_plan(explicit, device)
            model, options = chosen.model, chosen.options
        else:
            options = {"offload": "none", "vae_tiling": False, "layerwise_fp8": False}
            options.update({k: v for k, v in explicit.items() if v is not None})
        offload, vae_tiling, layerwise_fp8 = (
            options["offload"],
            options["vae_tiling"],
            options["layerwise_fp8"],
        )
        try:
            preset = preset_given or resolve_preset(model)
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

        import diffusers
        from diffusers import DiffusionPipeline

        family = tiny_family(preset)
        if build is not None:
            source = f"{getattr(build, '__name__', 'build')}()"
        elif family is not None:
            from generator.tiny import build_tiny_model

            source = str(build_tiny_model(Path(data_dir) / "models" / preset.name, family))
            if dev.type == "cpu":
                # Its tensors are tiny: extra intra-op threads only spin, and on a busy machine
                # (CI, tests in parallel) that made runs 30x slower. Process-wide, fine for a worker.
                torch.set_num_threads(1)
        else:
            source = preset.repo_id
        # Per-component dtypes at load (Wan's VAE in float32): read from the checkpoint straight into them, not
        # rounded through ``torch_dtype`` first.
        load_dtype: Any = torch_dtype
        if preset.component_dtypes:
            load_dtype = {"default": torch_dtype} | {
                name: _DTYPES[dtype_name] for name, dtype_name in preset.component_dtypes.items()
            }
        log.info("loading %s from %s (%s, %s)", preset.name, source, dev, torch_dtype)
        try:
            pipe = (
                build(preset, load_dtype)
                if build
                else DiffusionPipeline.from_pretrained(source, dtype=load_dtype)
            )
        except ImportError as exc:
            raise ModelLoadError(f"Model `{preset.name}` needs a missing Python package: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise ModelLoadError(_download_hint(preset.name, source, exc)) from exc

        _apply_preset_settings(pipe, preset)
        _fuse_loras(pipe, preset.name, (*preset.loras, *loras), len(preset.loras))
        # One checkpoint, several pipelines: from_pipe reuses the loaded modules (no second copy).
        pipes: dict[str, Any] = {}
        for verb in sorted(v for v in preset.verbs if v in REQUEST_VERBS):
            name = preset.pipeline_for(verb)
            built = {type(p).__name__: p for p in (pipe, *pipes.values())}
            if name in built:  # one pipeline serves every verb it runs (LTX-2's condition pipeline)
                pipes[verb] = built[name]
                continue
            pipe_cls = getattr(diffusers, name, None)
            if pipe_cls is None:
                raise ModelLoadError(f"Model `{preset.name}` wants `{name}`, which this diffusers lacks.")
            # from_pipe casts every module to one dtype: put back the very tensors of the float32 VAE and the
            # kept-in-fp32 layers (a cast back would keep the rounding).
            saved = _tensors_not_in(pipe, torch_dtype)
            pipes[verb] = pipe_cls.from_pipe(pipe, dtype=torch_dtype)
            _restore_tensors(pipe, saved)
        if preset.family == "ltx2" and not vae_tiling:
            # diffusers' LTX-2 page decodes in tiles: its VAE does not fit a whole default-size clip otherwise.
            log.info("VAE tiling on: the %s family decodes its video in tiles", preset.family)
            vae_tiling = True
        _explain_ltx_timesteps(pipes)
        _apply_memory_options(pipe, dev, torch_dtype, offload, vae_tiling, layerwise_fp8)
        speed = speed or SpeedOptions(vae_tiling=vae_tiling)
        try:
            apply_speed_options(
                pipe, preset.family, speed, pipes=list(pipes.values()), device=dev, dtype=torch_dtype
            )
            loaded = cls(pipe, preset, dev, torch_dtype, pipes)
            loaded.offload = offload
            loaded.data_dir = Path(data_dir)
            if "hd" in preset.verbs:
                from generator.hd import upsampler_source

                loaded.upsampler_source = upsampler_source(preset, hd_upsampler)
            if preset.styles and hasattr(pipe, "load_lora_weights"):
                from generator.styles import StyleCache

                loaded.styles = StyleCache(pipe, preset.name, style_cache)
            shown = loaded.preview_plan()  # said once, here: a run never turns previews off on its own
            log.log(logging.INFO if shown.method else logging.WARNING, "%s: %s", preset.name, shown.why)
            if speed.needs_warm_up:  # the compile (or a cache's first-call failure) happens now, not in a job
                warm = dataclasses.replace(plan(preset, "warm-up", seed=0), num_inference_steps=2)
                # An image-only model warms up on a plain grey first frame.
                inputs = {"image": _grey(warm.width, warm.height)} if warm.verb == "image" else {}
                memory = [f"VIDEOBOT_OFFLOAD={offload}"] + (["VIDEOBOT_FP8=true"] if layerwise_fp8 else [])
                warm_up(lambda: loaded.run(warm, **inputs), speed, memory=memory)
        except SpeedOptionError as exc:
            raise ModelLoadError(str(exc)) from None
        return loaded

    def preview_plan(self, pipe: Any | None = None) -> PreviewPlan:
        """How runs show previews under this model's memory options (``generator.preview.preview_plan``):
        the VAE where nothing is offloaded, else a latent projection that never touches the VAE."""
        pipe = pipe or self.pipe
        if latent_layout(pipe) is None:
            return preview_plan(None, self.offload)
        channels = _latent_channels(pipe)
        return preview_plan(self.preset.family, self.offload, channels)

    def previews_supported(self, pipe: Any | None = None) -> bool:
        """Whether runs can show previews: the pipeline's latents have a known layout (whatever is offloaded)."""
        return self.preview_plan(pipe).method is not None

    def check_inputs(self, params: GenerationParams) -> None:
        """Validate ``params`` against the preset before any GPU work; raises ``InvalidParameters``."""
        p = self.preset
        check_verb(p, params.verb)
        if params.verb not in self.pipes:
            raise InvalidParameters(
                msg(
                    "The loaded model `{model}` has no pipeline for `{verb}`.", model=p.name, verb=params.verb
                )
            )
        clean_prompt(params.prompt)
        if params.verb == "extend":
            if params.num_frames != p.extend_window:
                raise InvalidParameters(
                    msg(
                        "An extension with `{model}` generates {frames} frames, not {asked}.",
                        model=p.name,
                        frames=p.extend_window,
                        asked=params.num_frames,
                    )
                )
        elif not p.valid_frames(params.num_frames):
            raise InvalidParameters(
                msg(
                    "{frames} frames is not valid for `{model}`: use {rule}k+1 frames between {low} and {high}.",
                    frames=params.num_frames,
                    model=p.name,
                    rule=p.frame_rule,
                    low=p.min_frames,
                    high=p.max_frames,
                )
            )
        for name, value in (("width", params.width), ("height", params.height)):
            if not 0 < value <= 2048 or value % p.size_multiple:
                size = {
                    "width": N_(
                        "A width of {value} px is not valid for `{model}`: use a multiple of {step} up to 2048."
                    ),
                    "height": N_(
                        "A height of {value} px is not valid for `{model}`: use a multiple of {step} up to 2048."
                    ),
                }[name]
                raise InvalidParameters(msg(size, value=value, model=p.name, step=p.size_multiple))
        if not 1 <= params.num_inference_steps <= 200:
            raise InvalidParameters(msg("The number of steps must be between 1 and 200."))
        if not math.isfinite(params.guidance_scale) or not 0 <= params.guidance_scale <= 30:
            raise InvalidParameters(msg("The guidance scale must be between 0 and 30."))
        if not 1 <= params.fps <= 120:
            raise InvalidParameters(msg("The frame rate must be between 1 and 120 fps."))
        if not 0 <= params.seed <= 2**32 - 1:
            raise InvalidParameters(msg("The seed must be a whole number from 0 to {max}.", max=2**32 - 1))
        if not 1 <= params.num_videos <= MAX_VIDEOS:
            raise InvalidParameters(msg("The number of videos must be from 1 to {max}.", max=MAX_VIDEOS))
        if params.style_source is not None and self.styles is None:
            raise InvalidParameters(
                msg("The model `{model}` cannot use styles. Leave the style option empty.", model=p.name)
            )
        if params.end_image or params.loop:
            check_keyframes(p.name, p.verbs, end_image=bool(params.end_image), loop=params.loop)
            self._end_condition(self.pipes[params.verb], params.num_frames)
        if params.hd:
            from generator.hd import check_hd

            check_hd(p, params, bool(self.upsampler_source))

    def _end_condition(self, pipe: Any, num_frames: int) -> Callable[[Any], Any]:
        """``_end_condition_maker`` for ``pipe``, or the refusal when it cannot condition on the last frame."""
        end = _end_condition_maker(type(pipe).__name__, num_frames)
        if end is None:
            raise InvalidParameters(
                msg(
                    "The loaded model `{model}` has no pipeline that conditions on the last frame.",
                    model=self.preset.name,
                )
            )
        return end

    def upsampler(self) -> Any:
        """The latent upsample pipeline HD videos use, loaded on the first HD job and kept."""
        if self._upsample is None:
            from generator.hd import UPSAMPLER_MISSING, load_upsampler

            try:
                self._upsample = load_upsampler(
                    self.pipe,
                    self.preset,
                    self.upsampler_source,
                    data_dir=self.data_dir,
                    device=self.device,
                    dtype=self.dtype,
                )
            except (OSError, ValueError, ImportError) as exc:
                log.error("cannot load the HD upsampler %s: %s", self.upsampler_source, _short(exc))
                raise InvalidParameters(msg(UPSAMPLER_MISSING)) from exc
        return self._upsample

    def call_kwargs(
        self,
        params: GenerationParams,
        *,
        image: Any = None,
        video: np.ndarray | None = None,
        end_image: Any = None,
    ) -> tuple[Any, dict[str, Any], int]:
        """The pipeline for ``params.verb``, the keyword arguments it gets, and how many leading frames
        of its output repeat the source clip (``extend``). Keywords the pipeline does not take are dropped.

        The last frame is conditioned too (``_end_condition_maker``) when the video ends on ``end_image``,
        or (``params.loop``) on ``image``, the picture it starts from."""
        pipe = self.pipes[params.verb]
        n = params.num_videos
        # A CPU generator gives the same starting noise for a seed on any device and offload mode.
        generator: Any = torch.Generator(device="cpu").manual_seed(params.seed)
        if n > 1:
            generator = [
                torch.Generator(device="cpu").manual_seed((params.seed + i) % 2**32) for i in range(n)
            ]
        kwargs: dict[str, Any] = {
            "prompt": model_prompt(params.prompt, params.style_trigger),
            "negative_prompt": params.negative_prompt or self.preset.negative_prompt or None,
            "num_frames": params.num_frames,
            "width": params.width,
            "height": params.height,
            "num_inference_steps": params.num_inference_steps,
            "guidance_scale": params.guidance_scale,
            "num_videos_per_prompt": n,
            "generator": generator,
            "output_type": "np",
            "frame_rate": params.fps,  # LTX uses it for its rotary embeddings
            **self.preset.extra_call_kwargs,
        }
        for key in ("timesteps", "sigmas"):
            # A preset's fixed (distilled) schedule is for its own step count: a job of another length
            # (the 2-step warm-up, `videobot check --run`) gets the scheduler's own spacing instead.
            schedule = kwargs.get(key)
            if isinstance(schedule, (list, tuple)) and len(schedule) != params.num_inference_steps:
                del kwargs[key]
        if n > 1:
            # diffusers 0.42 sizes these per prompt, not per video: a scalar breaks the VAE decode of a batch.
            for key in ("decode_timestep", "decode_noise_scale"):
                if isinstance(kwargs.get(key), (int, float)):
                    kwargs[key] = [kwargs[key]] * n
        context = 0
        condition = _condition_maker(type(pipe).__name__)
        if params.verb == "image" or (params.loop and image is not None):
            picture = _fit_image(image, params.width, params.height)
            if condition is not None:
                kwargs["conditions"] = [condition(picture)]
            else:
                kwargs["image"] = picture
            if params.loop:
                end_image = picture
        elif params.verb == "extend":
            if condition is None:
                raise InvalidParameters(msg("`{model}` cannot extend clips.", model=self.preset.name))
            source = _fit_video(video, params.width, params.height)
            rule = self.preset.frame_rule
            context = min(self.preset.extend_context_frames, (len(source) - 1) // rule * rule + 1)
            tail = [_to_pil(f) for f in source[len(source) - context :]]
            kwargs["conditions"] = [condition(tail)]
            kwargs["num_frames"] = context + self.preset.extend_frames
        if end_image is not None and params.verb != "extend":
            end = self._end_condition(pipe, params.num_frames)
            last = _fit_image(end_image, params.width, params.height)
            kwargs["conditions"] = [*kwargs.get("conditions", []), end(last)]
        accepted = self._call_params[id(pipe)]
        dropped = sorted(k for k in self.preset.extra_call_kwargs if k not in accepted)
        if dropped:
            log.warning("%s does not take %s; the preset's value is not used", type(pipe).__name__, dropped)
        return pipe, {k: v for k, v in kwargs.items() if k in accepted}, context

    def run(
        self,
        params: GenerationParams,
        on_step: Callable[[int, int], None] | None = None,
        *,
        image: Any = None,
        video: np.ndarray | None = None,
        end_image: Any = None,
        previews: PreviewSink | None = None,
    ) -> RunOutput:
        """Generate the video(s) of ``params``; exceptions raised by ``on_step`` stop the loop at once.

        ``previews`` is asked after every step (but the last) whether a preview is due, and then gets a
        small WebP of the current latents (``generator.preview``); a failed preview is logged and ends
        the previews of this run, never the run.

        ``image`` (a PIL image) is the first frame for ``image``; ``video`` (frames F x H x W x 3, uint8 or
        float in [0, 1]) is the clip that ``extend`` continues. The result of an extension starts with
        every frame of ``video`` and adds ``preset.extend_frames`` frames. One batch: at most
        ``preset.batch_cap`` videos (``run_variations`` splits a larger request).

        ``end_image`` (a PIL image) is the picture the video ends on. A loop (``params.loop``) ends on the
        picture it starts from; without an ``image`` it first makes that picture: a short clip
        (``LOOP_START_FRAMES``) of the prompt with the same seed, whose first frame then conditions both
        ends of the video (``on_step`` then counts both passes' steps). Both end with ``close_ending``.
        """
        self.check_inputs(params)
        if params.loop and params.verb != "image" and image is None:
            steps = params.num_inference_steps

            def step(offset: int) -> Callable[[int, int], None] | None:
                if on_step is None:
                    return None
                return lambda k, _n: on_step(offset + k, 2 * steps)

            first = dataclasses.replace(
                params, loop=False, end_image=None, num_frames=LOOP_START_FRAMES, num_videos=1
            )
            start = self._render(first, step(0), image=None, video=None, end_image=None, previews=None)
            image = _to_pil(start.frames[0])
            log.info("loop: its first frame made by a %d-frame pass (%d steps)", LOOP_START_FRAMES, steps)
            return self._render(
                params, step(steps), image=image, video=video, end_image=None, previews=previews
            )
        return self._render(params, on_step, image=image, video=video, end_image=end_image, previews=previews)

    def _render(
        self,
        params: GenerationParams,
        on_step: Callable[[int, int], None] | None,
        *,
        image: Any,
        video: np.ndarray | None,
        end_image: Any,
        previews: PreviewSink | None,
    ) -> RunOutput:
        """One pipeline call for ``params`` (checked by ``run``)."""
        if params.num_videos > batch_size(self.preset, params):
            raise InvalidParameters(
                msg(
                    "`{model}` makes at most {n} videos at once.",
                    model=self.preset.name,
                    n=batch_size(self.preset, params),
                )
            )
        if params.verb == "image" and image is None:
            raise InvalidParameters(msg("A video from an image needs the image."))
        if params.verb == "extend" and (video is None or len(video) < 2):
            raise InvalidParameters(msg("Extending a clip needs the clip (at least two frames)."))
        if self.styles is not None:
            self.styles.apply(params)  # exactly this job's style, or none: nothing leaks between jobs
        if params.hd:
            from generator.hd import run_hd

            return run_hd(self, params, on_step, image=image, previews=previews)
        total = params.num_inference_steps
        digest = None
        if params.verb == "image" or (params.loop and image is not None):
            # Fitted once here, so the digest names exactly the picture the pipeline receives.
            image = _fit_image(image, params.width, params.height)
            digest = pixel_digest(image)
        if end_image is not None:
            end_image = _fit_image(end_image, params.width, params.height)
        end_digest = pixel_digest(end_image) if end_image is not None else (digest if params.loop else None)

        pipe, kwargs, context = self.call_kwargs(params, image=image, video=video, end_image=end_image)
        kwargs["callback_on_step_end"] = self.step_callback(pipe, kwargs, on_step, total, previews)
        # A cancelled run skipped diffusers' own end-of-call reset: drop its cached residuals and timesteps.
        reset_step_cache(pipe, list(self.pipes.values()))
        output = self.call_guarded(pipe, lambda: pipe(**kwargs))
        videos = [frames_to_uint8(v) for v in output.frames]
        if params.loop or end_image is not None:
            seam = min(self.preset.frame_rule, (params.num_frames - 1) // 2)
            videos = [
                close_ending(v, v[0] if params.loop else np.asarray(end_image, dtype=np.uint8), seam)
                for v in videos
            ]
        if params.verb == "extend":
            source = _fit_video(video, params.width, params.height)
            videos = [np.concatenate([source, v[context:]]) for v in videos]
        audios: tuple[np.ndarray, ...] = ()
        rate = None
        waveform = getattr(output, "audio", None)
        if params.audio and waveform is not None and hasattr(pipe, "vocoder"):
            audios = tuple(
                np.asarray(w.float().cpu().numpy(), dtype=np.float32) for w in waveform[: len(videos)]
            )
            rate = int(pipe.vocoder.config.output_sampling_rate)
            if params.verb == "extend":
                # The model made sound for its window (the source's last frames and the new ones); the
                # source's earlier part has none here: silence keeps the soundtrack in step with the frames.
                lead = len(videos[0]) - self.preset.extend_frames - context
                pad = round(lead / params.fps * rate)
                audios = tuple(
                    np.concatenate([np.zeros((a.shape[0], pad), np.float32), a], axis=1) for a in audios
                )
        return RunOutput(
            frames=videos[0],
            variations=tuple(videos),
            audio=audios[0] if audios else None,
            audio_sample_rate=rate,
            audios=audios,
            conditioning_digest=digest,
            end_digest=end_digest,
        )

    def step_callback(
        self,
        pipe: Any,
        kwargs: dict[str, Any],
        on_step: Callable[[int, int], None] | None,
        total: int,
        previews: PreviewSink | None,
        offset: int = 0,
    ) -> Callable[..., dict[str, Any]]:
        """The ``callback_on_step_end`` of one call of ``pipe`` with ``kwargs``: after its step ``k`` (of a
        run of ``total`` steps, of which ``offset`` came before this call) ``on_step(offset + k, total)``,
        and a preview into ``previews`` when one is due (never after the run's last step). A failed preview
        is logged and ends this call's previews, never the run."""
        method = self.preview_plan(pipe).method
        sink = previews if method is not None else None

        def callback(pipe: Any, step: int, timestep: Any, cb_kwargs: dict[str, Any]) -> dict[str, Any]:
            nonlocal sink
            done = offset + step + 1
            if on_step is not None:
                on_step(done, total)
            latents = cb_kwargs.get("latents")
            if sink is not None and latents is not None and done < total and sink.due(done, total):
                try:
                    data = preview_image(pipe, latents, kwargs, method, self.preset.family)
                except Exception:
                    log.warning("preview failed; no more previews for this run", exc_info=True)
                    sink = None
                else:
                    if data is not None:
                        sink.put(done, data, PREVIEW_CONTENT_TYPE)
            return cb_kwargs

        return callback

    def call_guarded(self, pipe: Any, call: Callable[[], Any]) -> Any:
        """``call()`` (the pipeline calls of one run) in inference mode; ``pipe``'s offload re-armed after
        it, whatever happened; running out of GPU memory frees the cache and raises ``GenerationOOM``."""
        out_of_memory = False
        completed = False
        try:
            with torch.inference_mode():
                result = call()
            completed = True
        except Exception as exc:
            if not _is_oom(exc):
                raise
            out_of_memory = True
        finally:
            self._rearm_offload(pipe, completed)
        if out_of_memory:  # outside the except block so the traceback no longer pins GPU tensors
            self._free_memory()
            raise GenerationOOM(msg(OOM_MESSAGE))
        return result

    def _rearm_offload(self, pipe: Any, completed: bool) -> None:
        """Put every model back on the CPU after a model-offloaded run, as diffusers does at the end of a call
        (``maybe_free_model_hooks``), where diffusers did not: the offload hooks belong to ``self.pipe``, so a
        verb pipeline built with ``from_pipe`` never frees them, and a stopped run (cancel, OOM) skips it."""
        if self.offload == "model" and (pipe is not self.pipe or not completed):
            self.pipe.maybe_free_model_hooks()

    def _free_memory(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.warning("out of GPU memory; freed the cache")


def close_ending(frames: np.ndarray, last: np.ndarray, seam: int) -> np.ndarray:
    """``frames`` (uint8 F x H x W x 3) whose last ``seam`` frames dissolve into ``last``: the final frame
    is ``last`` itself, the one ``seam`` frames before it untouched.

    The model was conditioned on ``last`` at the final frame (a keyframe it approaches, not pixels it
    must reproduce: LTX-Video and LTX-2 add it as extra tokens), so what it made ends near the picture
    but rarely on it; this dissolve over the last latent frame's span (``frame_rule`` frames, 1/3 s at
    24 fps) removes the rest, so a loop has no jump where it starts again and an end picture is the
    video's last frame.
    """
    if seam < 1 or len(frames) < 2:
        return frames
    seam = min(seam, len(frames) - 1)
    out = frames.copy()
    target = last.astype(np.float32)
    for j in range(seam):  # j = 0 is the last frame
        weight = 1.0 - j / seam
        index = len(frames) - 1 - j
        blended = (1.0 - weight) * frames[index].astype(np.float32) + weight * target
        out[index] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def batch_size(preset: Preset, params: GenerationParams) -> int:
    """How many videos of ``params`` one pipeline call makes: up to ``preset.batch_cap``, but one at a
    time for a loop without a picture (each video starts from its own first pass) and for a last-frame
    condition on LTX-Video (diffusers 0.42's ``LTXConditionPipeline`` concatenates its keyframe tokens,
    made for one video, with the batch's latents: a batch of two fails). LTX-2 batches them as usual."""
    if params.passes > 1 or ((params.loop or params.end_image) and preset.family == "ltx"):
        return 1
    return max(1, min(preset.batch_cap, params.num_videos))


def total_steps(preset: Preset, params: GenerationParams) -> int:
    """Denoising steps of the whole job (every batch of its variations), as ``run_variations`` counts them."""
    return run_steps(preset, params) * -(-params.num_videos // batch_size(preset, params))


def run_variations(
    pipeline: Any,
    params: GenerationParams,
    on_step: Callable[[int, int], None] | None = None,
    **inputs: Any,
) -> list[Variation]:
    """``params.num_videos`` videos with seeds ``seed``, ``seed + 1``, …, in batches of at most
    ``preset.batch_cap``; a batch that runs out of GPU memory is made again one video at a time.
    ``pipeline`` is a ``VideoPipeline`` (or what stands in for one: ``ParallelPipeline``); ``inputs``
    are ``run``'s ``image`` / ``video``.

    Variation ``i`` has seed ``seed + i`` and the same starting noise batched or alone. One that runs
    out of memory on its own is returned with its ``error``; when none could be made the OOM is
    raised (``GenerationOOM``). ``on_step`` sees the steps of all batches as one count.
    """
    pipeline.check_inputs(params)
    n = params.num_videos
    steps = run_steps(pipeline.preset, params)
    cap = batch_size(pipeline.preset, params)
    pending = list(range(n))
    made: dict[int, Variation] = {}
    done_steps = 0
    last_oom: GenerationOOM | None = None
    while pending:
        chunk = pending[:cap]
        total = done_steps + steps * math.ceil(len(pending) / cap)
        sub = dataclasses.replace(params, seed=(params.seed + chunk[0]) % 2**32, num_videos=len(chunk))

        def step(k: int, _n: int, offset: int = done_steps, total: int = total) -> None:
            if on_step is not None:
                on_step(offset + k, total)

        try:
            out = pipeline.run(sub, step, **inputs)
        except GenerationOOM as exc:
            if len(chunk) > 1:
                log.warning(
                    "a batch of %d videos ran out of GPU memory; making them one at a time", len(chunk)
                )
                cap = 1
                continue
            last_oom = exc
            made[chunk[0]] = Variation(chunk[0], sub.seed, error=VARIATION_OOM)
            pending = pending[1:]
            continue
        for i, one in zip(chunk, out.split(), strict=True):
            made[i] = Variation(i, (params.seed + i) % 2**32, output=one)
        pending = pending[len(chunk) :]
        done_steps += steps
    if last_oom is not None and all(v.output is None for v in made.values()):
        raise last_oom
    return [made[i] for i in range(n)]


def _latent_channels(pipe: Any) -> int | None:
    """Latent channels of ``pipe``'s VAE, from its config (None when it does not say)."""
    config = getattr(getattr(pipe, "vae", None), "config", None)
    for key in ("z_dim", "latent_channels"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def _condition_maker(pipeline_class: str) -> Callable[[Any], Any] | None:
    """For pipelines that take ``conditions``: a function from a picture (or a list of frames) to the
    condition that holds it from frame 0 at full strength; ``None`` for the others."""
    if pipeline_class == "LTXConditionPipeline":
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        def ltx(frames: Any) -> Any:
            if isinstance(frames, list):
                return LTXVideoCondition(video=frames, frame_index=0, strength=1.0)
            return LTXVideoCondition(image=frames, frame_index=0, strength=1.0)

        return ltx
    if pipeline_class == "LTX2ConditionPipeline":
        from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

        return lambda frames: LTX2VideoCondition(frames=frames, index=0, strength=1.0)
    return None


def _end_condition_maker(pipeline_class: str, num_frames: int) -> Callable[[Any], Any] | None:
    """For pipelines that take ``conditions``: a function from a picture to the condition that holds it
    at the video's last frame; ``None`` for the others.

    LTX-Video (``LTXConditionPipeline``) takes a pixel frame index: ``num_frames - 1`` (its latents are
    8k+1 frames, the last one's pixel index is 8k; a picture at a non-zero index becomes keyframe tokens
    placed there, as ComfyUI's ``LTXVAddGuide`` does with -1). LTX-2 takes a latent index: -1, the last.
    """
    if pipeline_class == "LTXConditionPipeline":
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        return lambda picture: LTXVideoCondition(image=picture, frame_index=num_frames - 1, strength=1.0)
    if pipeline_class == "LTX2ConditionPipeline":
        from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

        return lambda picture: LTX2VideoCondition(frames=picture, index=-1, strength=1.0)
    return None


def _to_pil(frame: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(frame)


def _fit_image(image: Any, width: int, height: int) -> Any:
    """``image`` (PIL, or encoded bytes) as an RGB picture of exactly ``width`` x ``height`` (centre crop,
    ``videobot.images.fit``); a picture already of that size and mode is returned as it is."""
    import io

    from PIL import Image

    if isinstance(image, (bytes, bytearray)):
        image = Image.open(io.BytesIO(image))
    if not isinstance(image, Image.Image):
        raise InvalidParameters(msg("The input image could not be read."))
    if image.mode == "RGB" and image.size == (width, height):
        return image
    return fit(image, width, height)


def _fit_video(video: Any, width: int, height: int) -> np.ndarray:
    """Frames (F x H x W x 3, uint8 or float in [0, 1]) as uint8 at ``width`` x ``height``."""
    frames = np.asarray(video)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InvalidParameters(msg("The clip to extend could not be read."))
    if frames.dtype != np.uint8:
        frames = frames_to_uint8(frames)
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(_fit_image(_to_pil(f), width, height)) for f in frames])


def _modules(pipe: Any) -> dict[str, torch.nn.Module]:
    return {k: m for k, m in pipe.components.items() if isinstance(m, torch.nn.Module)}


def _tensors_not_in(pipe: Any, dtype: torch.dtype) -> dict[tuple[str, str], torch.Tensor]:
    """The parameters' and buffers' data of ``pipe`` that is not in ``dtype`` (the same tensors, not copies)."""
    return {
        (name, key): t.data
        for name, module in _modules(pipe).items()
        for key, t in (*module.named_parameters(), *module.named_buffers())
        if t.is_floating_point() and t.dtype != dtype
    }


def _restore_tensors(pipe: Any, saved: dict[tuple[str, str], torch.Tensor]) -> None:
    for name, module in _modules(pipe).items():
        for key, t in (*module.named_parameters(), *module.named_buffers()):
            data = saved.get((name, key))
            if data is not None and t.data is not data:
                t.data = data


def _grey(width: int, height: int) -> Any:
    from PIL import Image

    return Image.new("RGB", (width, height), (128, 128, 128))


def _apply_preset_settings(pipe: Any, preset: Preset) -> None:
    """Scheduler shift and pipeline config flags from the preset; refuse silent no-ops."""
    if preset.scheduler:
        unknown = sorted(k for k in preset.scheduler if k not in pipe.scheduler.config)
        if unknown:
            raise ModelLoadError(
                f"`{preset.name}`: the scheduler {type(pipe.scheduler).__name__} has no setting {unknown}."
            )
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **preset.scheduler)
    if preset.pipeline_config:
        init = set(inspect.signature(type(pipe).__init__).parameters)
        unknown = sorted(k for k in preset.pipeline_config if k not in init)
        if unknown:
            raise ModelLoadError(f"`{preset.name}`: {type(pipe).__name__} has no setting {unknown}.")
        pipe.register_to_config(**preset.pipeline_config)


def _fuse_loras(pipe: Any, model: str, loras: Sequence[LoraSpec], preset_loras: int = 0) -> None:
    """Load each LoRA with the family's ``load_lora_weights``, check every one of its layers found a
    place in the model, then fuse them all at their scales into the weights and drop the adapters.

    Fused, not kept as adapters: adapters add two small matmuls per adapted layer to every step (on the
    tiny Wan model a run took 1.25-1.56x as long, ``bench/bench_lora.py``), a fused LoRA leaves the
    same matmuls as no LoRA (same video, measured), and a worker's LoRAs never change while it runs.
    Fused before the memory options, so fp8 storage and offload see the final weights. A LoRA that
    does not fit stops start-up with its name; ``preset_loras`` (the first ones) are the preset's own.
    """
    if not loras:
        return
    if not hasattr(pipe, "load_lora_weights"):
        raise ModelLoadError(
            f"VIDEOBOT_LORAS: `{model}` ({type(pipe).__name__}) cannot load LoRAs; remove VIDEOBOT_LORAS."
        )
    names = []
    for i, lora in enumerate(loras):
        name = f"lora{i}"
        origin = f"preset `{model}`'s own" if i < preset_loras else "VIDEOBOT_LORAS"
        try:
            expected = _lora_layer_keys(pipe, lora)
        except ImportError as exc:
            raise ModelLoadError(f"LoRAs need a missing Python package: {exc}") from exc
        except Exception as exc:
            raise ModelLoadError(
                f"The LoRA `{lora}` ({origin}) could not be read: {_short(exc)}. Check the repo id, "
                "the weight name and the path (a Hub LoRA downloads once, then comes from the cache)."
            ) from exc
        try:
            pipe.load_lora_weights(lora.source, weight_name=lora.weight_name, adapter_name=name)
        except Exception as exc:
            raise ModelLoadError(
                f"The LoRA `{lora}` ({origin}) does not fit `{model}`: {_short(exc)}. It was made "
                f"for another model: remove it or use one made for this model ({type(pipe).__name__})."
            ) from exc
        placed = _lora_layers(pipe, name)
        if placed < expected or placed == 0:
            raise ModelLoadError(
                f"The LoRA `{lora}` ({origin}) does not fit `{model}`: {placed} of its {expected} "
                "layers match the model. It was made for another model: remove it or use one made for "
                f"this model's family ({type(pipe).__name__})."
            )
        names.append(name)
        log.info("LoRA %s: %d layers into %s", lora, placed, model)
    pipe.set_adapters(names, adapter_weights=[lora.scale for lora in loras])
    pipe.fuse_lora(adapter_names=names)
    pipe.unload_lora_weights()  # the fused weights stay; the adapter layers go


def _short(exc: BaseException) -> str:
    """An exception as one line of at most 300 characters (diffusers' are long)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def _lora_layer_keys(pipe: Any, lora: LoraSpec, **hub: Any) -> int:
    """How many layers the LoRA file holds (its ``lora_A`` weights, after diffusers' key conversion);
    ``hub``: more ``lora_state_dict`` keywords (a ``cache_dir``)."""
    state = type(pipe).lora_state_dict(lora.source, weight_name=lora.weight_name, **hub)
    if isinstance(state, tuple):
        state = state[0]
    return sum(1 for key in state if "lora_A" in key or "lora_down" in key)


def _lora_layers(pipe: Any, adapter: str) -> int:
    """How many of the model's layers carry the adapter ``adapter``."""
    return sum(
        1
        for module in _modules(pipe).values()
        for layer in module.modules()
        if adapter in getattr(layer, "lora_A", {})
    )


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
