"""HD videos: a posted video made again at twice its width and height.

An HD job carries its source's parameters (prompt, seed, length, first image) with ``width`` and ``height``
doubled and ``hd`` set (``videobot.planning.hd_params``). It runs the model cards' two-stage recipe
(diffusers' LTX-Video and LTX-2 docs):

1. the source's video is made again at its own size, with its seed, its prompt and its picture, up to its
   denoised latents (``output_type="latent"``): the very latents the source's video was decoded from;
2. the family's latent upsampler (``LTXLatentUpsamplePipeline`` / ``LTX2LatentUpsamplePipeline``) doubles
   them in width and height;
3. the model refines the upsampled latents at twice the size in a few steps (``Preset.hd_refine``: LTX-Video
   distilled's ``[1000, 909, 725, 421, 0]`` at ``denoise_strength`` 0.999, LTX-2 distilled's three stage-2
   sigmas renoised to the first), and decodes them; LTX-2's soundtrack is refined alongside.

Why not upsample the posted mp4 instead (encode its frames with the VAE): that video went through H.264
and its latents through the VAE twice; re-running the first stage gives the source's exact latents, so the
HD video is the source's video up to the refine, at the cost of the first stage's steps again.

The upsampler is loaded on the first HD job and kept (a few hundred MB, small next to the model).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generator.encode import frames_to_uint8
from generator.preview import PreviewSink
from generator.speed import reset_step_cache
from videobot.errors import InvalidParameters
from videobot.i18n import N_, msg
from videobot.images import pixel_digest
from videobot.presets import TINY_UPSAMPLER, GenerationParams, Preset, hd_base_size, run_steps, tiny_family

log = logging.getLogger(__name__)

#: Why an HD job failed when the upsampler could not be loaded (stored in English, shown translated).
UPSAMPLER_MISSING = N_(
    "The HD upsampler of this server's model could not be loaded, so no HD video was made. "
    "Your credits were refunded; please tell a moderator."
)


def upsampler_source(preset: Preset, override: str | None = None) -> str:
    """Where the upsampler comes from: ``VIDEOBOT_HD_UPSAMPLER`` when set, else the preset's (empty: none)."""
    return (override or "").strip() or preset.upsampler


def load_upsampler(
    pipe: Any, preset: Preset, source: str, *, data_dir: Path, device: torch.device, dtype: torch.dtype
) -> Any:
    """The family's latent upsample pipeline around ``pipe``'s VAE, with the upsampler from ``source``
    (``repo_id``, ``repo_id:subfolder``, a local folder, or ``TINY_UPSAMPLER``: built offline)."""
    if preset.family == "ltx2":
        from diffusers import LTX2LatentUpsamplePipeline as Upsample
        from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel as Model
    else:
        from diffusers import LTXLatentUpsamplePipeline as Upsample
        from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel as Model
    family = tiny_family(preset)
    if source == TINY_UPSAMPLER and family is not None:
        from generator.tiny import build_tiny_upsampler

        where, subfolder = (
            str(build_tiny_upsampler(data_dir / "models" / f"{preset.name}-upsampler", family)),
            None,
        )
    elif Path(source).expanduser().is_dir():
        where, subfolder = str(Path(source).expanduser()), None
    else:
        where, _, sub = source.partition(":")
        subfolder = sub or None
    log.info("loading the HD latent upsampler from %s%s", where, f" ({subfolder})" if subfolder else "")
    model = Model.from_pretrained(where, subfolder=subfolder, dtype=dtype)
    model.to(device)
    upsample = Upsample(vae=pipe.vae, latent_upsampler=model)
    upsample.set_progress_bar_config(disable=True)
    return upsample


def _accepted(fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    names = set(inspect.signature(fn).parameters)
    return {k: v for k, v in kwargs.items() if k in names}


def run_hd(
    pipeline: Any,
    params: GenerationParams,
    on_step: Callable[[int, int], None] | None = None,
    *,
    image: Any = None,
    previews: PreviewSink | None = None,
) -> Any:  # -> generator.pipeline.RunOutput
    """The HD video of ``params`` (``params.hd``; ``pipeline`` a loaded ``VideoPipeline``): see the module.

    ``on_step`` counts both stages' steps as one run (``presets.run_steps``); previews come from the first
    stage. Raises ``GenerationOOM`` when either stage runs out of GPU memory.
    """
    from generator.pipeline import RunOutput, _fit_image

    preset = pipeline.preset
    total = run_steps(preset, params)
    width, height = hd_base_size(params)
    base = dataclasses.replace(params, width=width, height=height, hd=False)
    digest = None
    if params.verb == "image":
        digest = pixel_digest(_fit_image(image, width, height))
    upsample = pipeline.upsampler()

    # Stage 1: the source's video again, up to its denoised latents.
    pipe, first, _ = pipeline.call_kwargs(base, image=image)
    first["output_type"] = "latent"
    first["callback_on_step_end"] = pipeline.step_callback(pipe, first, on_step, total, previews)
    # Stage 3's call: the HD size, the source's picture fitted to it, the refine schedule.
    pipe2, second, _ = pipeline.call_kwargs(params, image=image)
    accepted = set(inspect.signature(pipe2.__call__).parameters)
    for key in ("timesteps", "sigmas"):
        second.pop(key, None)
    second.update({k: v for k, v in preset.hd_refine.items() if k in accepted})
    second["num_inference_steps"] = preset.hd_refine_steps
    second["callback_on_step_end"] = pipeline.step_callback(
        pipe2, second, on_step, total, None, offset=params.num_inference_steps
    )

    def stages() -> Any:
        reset_step_cache(pipe, list(pipeline.pipes.values()))
        stage1 = pipe(**first)
        latents = stage1.frames
        audio_latents = getattr(stage1, "audio", None)
        # Stage 2: twice the width and height in latent space.
        upsampled = upsample(
            latents=latents,
            output_type="latent",
            return_dict=False,
            **_accepted(upsample.__call__, preset.hd_upsample),
        )[0]
        log.info("HD: latents %s upsampled to %s", tuple(latents.shape), tuple(upsampled.shape))
        second["latents"] = upsampled
        if audio_latents is not None and "audio_latents" in accepted:
            second["audio_latents"] = audio_latents
        reset_step_cache(pipe2, list(pipeline.pipes.values()))
        return pipe2(**second)

    output = pipeline.call_guarded(pipe2, stages)
    video = frames_to_uint8(output.frames[0])
    audio = None
    rate = None
    waveform = getattr(output, "audio", None)
    if params.audio and waveform is not None and hasattr(pipe2, "vocoder"):
        audio = np.asarray(waveform[0].float().cpu().numpy(), dtype=np.float32)
        rate = int(pipe2.vocoder.config.output_sampling_rate)
    return RunOutput(
        frames=video,
        variations=(video,),
        audio=audio,
        audio_sample_rate=rate,
        audios=(audio,) if audio is not None else (),
        conditioning_digest=digest,
    )


def check_hd(preset: Preset, params: GenerationParams, has_upsampler: bool) -> None:
    """Refuse an HD job the loaded model cannot make (before any GPU work)."""
    if not params.hd:
        return
    if "hd" not in preset.verbs or not has_upsampler:
        raise InvalidParameters(msg("The model `{model}` cannot make HD videos.", model=preset.name))
    if params.verb == "extend":
        raise InvalidParameters(
            msg("An extended clip cannot be made in HD: only videos made from text or a picture.")
        )
    if params.end_image or params.loop:
        raise InvalidParameters(
            msg(
                "A video that ends on a picture or loops can't be made in HD yet, only videos made from "
                "text or a single picture."
            )
        )
    step = 2 * preset.size_multiple
    if params.num_videos != 1 or params.width % step or params.height % step:
        raise InvalidParameters(msg("An HD video is one video at twice its source's width and height."))
