"""GPU speed of each preset with each speed option off and on, side by side in one run.

Builds every preset's full-size architecture from its config with random weights (no download: the
time of a step does not depend on the weight values; step caches excepted — they skip steps when
outputs change little, which random weights do not reproduce, so their rows say nothing about a real
model's speed-up). The text encoder is not built: each job gets random prompt embeddings of the real
encoder's shape (UMT5-XXL / T5-XXL: 4096 wide; LTX-2: Gemma-3-12B's 49 stacked hidden states), so
"total" leaves out one text encode per job (about a second or less on a GPU). Everything else is the real diffusers pipeline: transformer, scheduler,
classifier-free guidance, VAE decode.

Per preset and option: one warm-up job (2 steps, same size; compiles and caches pay their first-call
cost there), then ``--runs`` timed jobs at the preset's default size, steps and guidance. Reported:
median seconds per denoising step, median total seconds (min–max), peak memory, and the ratio of total
time to plain diffusers defaults (bf16, native attention, nothing else) measured in the same run.

    python bench/gpu.py --presets all --options all --runs 3 --out bench/gpu-results.md   # on a GPU
    python bench/gpu.py --smoke                                                          # CPU, tiny sizes

Speed options come from ``generator/speed.py`` (``SpeedOptions`` / ``apply_speed_options``) when it is
there; options it does not provide are skipped with a line saying which. fp8 is diffusers' layerwise
casting, as ``VIDEOBOT_FP8`` applies it in ``generator/pipeline.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Arch:
    """A preset's real architecture (from its checkpoint's config.json) and a tiny one for the CPU smoke run."""

    preset: str
    family: str
    checkpoint: str
    pipeline: str
    transformer: tuple[str, dict[str, Any]]
    vae: tuple[str, dict[str, Any]]
    scheduler: tuple[str, dict[str, Any]]
    text_tokens: int  # prompt embedding length the pipeline pads to
    text_dim: int
    # Default job when the preset is not (yet) in videobot.presets: frames, width, height, steps, guidance, fps.
    job: tuple[int, int, int, int, float, int]
    tiny_transformer: dict[str, Any]
    tiny_vae: dict[str, Any]
    tiny_job: tuple[int, int, int]  # frames, width, height
    tiny_text_dim: int
    tiny_text_tokens: int = 16
    pipeline_kwargs: dict[str, Any] = field(default_factory=dict)
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Other modules of the pipeline: name -> (class, full-size config, tiny config).
    components: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=dict)


_WAN_TINY_T = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
    text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)  # fmt: skip
_WAN_TINY_VAE = dict(
    base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
)
_LTX_TINY_T = dict(
    in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4, attention_head_dim=8,
    cross_attention_dim=32, num_layers=2, caption_channels=32,
)  # fmt: skip
_LTX_TINY_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
    decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
    decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
    decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(False, False, False, False, False),
    upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1), timestep_conditioning=False,
    patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False,
)  # fmt: skip
_COG_TINY_T = dict(
    num_attention_heads=4, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=2, text_embed_dim=32,
    num_layers=2, sample_width=2, sample_height=2, sample_frames=9, patch_size=2, temporal_compression_ratio=4,
    max_text_seq_length=16,
)  # fmt: skip
_COG_TINY_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
    up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
    layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4,
)  # fmt: skip
_WAN_SCHED = (
    "UniPCMultistepScheduler",
    dict(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
)
_LTX_SCHED = (
    "FlowMatchEulerDiscreteScheduler",
    dict(base_image_seq_len=1024, base_shift=0.95, max_image_seq_len=4096, max_shift=2.05, shift_terminal=0.1,
         use_dynamic_shifting=True),
)  # fmt: skip

#: Written from each checkpoint's transformer/vae config.json (diffusers format). Class defaults fill the rest.
ARCHS: dict[str, Arch] = {
    a.preset: a
    for a in (
        Arch(
            preset="wan2.1-1.3b", family="wan", checkpoint="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", pipeline="WanPipeline",
            transformer=("WanTransformer3DModel", dict(
                patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)),
            vae=("AutoencoderKLWan", dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2)),
            scheduler=_WAN_SCHED, text_tokens=512, text_dim=4096, job=(81, 832, 480, 50, 5.0, 16),
            tiny_transformer=_WAN_TINY_T, tiny_vae=_WAN_TINY_VAE, tiny_job=(9, 48, 32), tiny_text_dim=32,
        ),
        Arch(
            preset="wan2.2-ti2v-5b", family="wan22", checkpoint="Wan-AI/Wan2.2-TI2V-5B-Diffusers", pipeline="WanPipeline",
            transformer=("WanTransformer3DModel", dict(
                patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48,
                out_channels=48, text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)),
            vae=("AutoencoderKLWan", dict(
                base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
                patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                latents_mean=[0.0] * 48, latents_std=[1.0] * 48)),
            scheduler=("UniPCMultistepScheduler", dict(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                       flow_shift=5.0)),
            text_tokens=512, text_dim=4096, job=(121, 1280, 704, 50, 5.0, 24),
            tiny_transformer={**_WAN_TINY_T, "in_channels": 48, "out_channels": 48},
            tiny_vae=dict(base_dim=3, z_dim=48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                          temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                          out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                          latents_mean=[0.0] * 48, latents_std=[1.0] * 48),
            tiny_job=(9, 64, 64), tiny_text_dim=32, pipeline_kwargs={"expand_timesteps": True},
        ),
        Arch(
            preset="ltx-video", family="ltx", checkpoint="Lightricks/LTX-Video (0.9.x 2B)", pipeline="LTXPipeline",
            transformer=("LTXVideoTransformer3DModel", dict(
                in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
                attention_head_dim=64, cross_attention_dim=2048, num_layers=28, caption_channels=4096)),
            vae=("AutoencoderKLLTXVideo", dict(latent_channels=128, block_out_channels=(128, 256, 512, 512),
                                               decoder_block_out_channels=(128, 256, 512, 512),
                                               timestep_conditioning=False)),
            scheduler=_LTX_SCHED, text_tokens=128, text_dim=4096, job=(121, 768, 512, 50, 3.0, 24),
            tiny_transformer=_LTX_TINY_T, tiny_vae=_LTX_TINY_VAE, tiny_job=(9, 32, 32), tiny_text_dim=32,
        ),
        Arch(
            preset="ltx-video-distilled", family="ltx", checkpoint="Lightricks/LTX-Video-0.9.7-distilled (13B)",
            pipeline="LTXPipeline",
            transformer=("LTXVideoTransformer3DModel", dict(
                in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
                attention_head_dim=128, cross_attention_dim=4096, num_layers=48, caption_channels=4096)),
            vae=("AutoencoderKLLTXVideo", dict(
                latent_channels=128, block_out_channels=(128, 256, 512, 1024, 2048),
                down_block_types=("LTXVideo095DownBlock3D",) * 4, decoder_block_out_channels=(256, 512, 1024),
                layers_per_block=(4, 6, 6, 2, 2), decoder_layers_per_block=(5, 5, 5, 5),
                spatio_temporal_scaling=(True, True, True, True), decoder_spatio_temporal_scaling=(True, True, True),
                decoder_inject_noise=(False, False, False, False), downsample_type=(
                    "spatial", "temporal", "spatiotemporal", "spatiotemporal"),
                upsample_residual=(True, True, True), upsample_factor=(2, 2, 2), timestep_conditioning=False,
                spatial_compression_ratio=32, temporal_compression_ratio=8)),
            scheduler=_LTX_SCHED, text_tokens=128, text_dim=4096, job=(121, 768, 512, 8, 1.0, 24),
            tiny_transformer=_LTX_TINY_T, tiny_vae=_LTX_TINY_VAE, tiny_job=(9, 32, 32), tiny_text_dim=32,
            call_kwargs={"decode_timestep": 0.05, "decode_noise_scale": 0.025},
        ),
        Arch(
            preset="ltx-2", family="ltx2", checkpoint="Lightricks/LTX-2 (19B, video + audio)", pipeline="LTX2Pipeline",
            # diffusers' class defaults are LTX-2's configuration (48 layers, 32 x 128 video, 32 x 64 audio).
            transformer=("LTX2VideoTransformer3DModel", dict(rope_type="split")),
            vae=("AutoencoderKLLTX2Video", {}),
            scheduler=("FlowMatchEulerDiscreteScheduler", dict(use_dynamic_shifting=True, base_shift=0.95,
                                                               max_shift=2.05, shift_terminal=0.1)),
            # Gemma-3-12B: every hidden state (48 layers + embeddings) of 3840 stacked, 1024 tokens.
            text_tokens=1024, text_dim=3840 * 49, job=(121, 768, 512, 0, 0.0, 24),
            tiny_transformer=dict(
                in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2,
                attention_head_dim=8, cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4,
                audio_num_attention_heads=2, audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2,
                qk_norm="rms_norm_across_heads", caption_channels=32, rope_double_precision=False, rope_type="split"),
            tiny_vae=dict(
                in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,),
                decoder_block_out_channels=(8,), layers_per_block=(1,), decoder_layers_per_block=(1, 1),
                spatio_temporal_scaling=(True,), decoder_spatio_temporal_scaling=(True,),
                decoder_inject_noise=(False, False), downsample_type=("spatial",), upsample_residual=(False,),
                upsample_factor=(1,), timestep_conditioning=False, patch_size=1, patch_size_t=1,
                encoder_causal=True, decoder_causal=False),
            tiny_job=(9, 32, 32), tiny_text_dim=32 * 3,
            components={
                "connectors": ("diffusers.pipelines.ltx2.connectors.LTX2TextConnectors", dict(
                    caption_channels=3840, text_proj_in_factor=49, video_connector_num_attention_heads=30,
                    video_connector_attention_head_dim=128, video_connector_num_layers=2,
                    video_connector_num_learnable_registers=128, audio_connector_num_attention_heads=30,
                    audio_connector_attention_head_dim=128, audio_connector_num_layers=2,
                    audio_connector_num_learnable_registers=128, rope_type="split"), dict(
                    caption_channels=32, text_proj_in_factor=3, video_connector_num_attention_heads=4,
                    video_connector_attention_head_dim=8, video_connector_num_layers=1,
                    video_connector_num_learnable_registers=None, audio_connector_num_attention_heads=4,
                    audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
                    audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32,
                    rope_double_precision=False, rope_type="split")),
                "audio_vae": ("AutoencoderKLLTX2Audio", {}, dict(
                    base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1, attn_resolutions=None,
                    in_channels=2, resolution=32, latent_channels=2, norm_type="pixel", causality_axis="height",
                    dropout=0.0, mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160,
                    is_causal=True, mel_bins=8)),
                "vocoder": ("diffusers.pipelines.ltx2.vocoder.LTX2Vocoder", {}, dict(
                    in_channels=16, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[4, 4],
                    upsample_factors=[2, 2], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]],
                    leaky_relu_negative_slope=0.1, output_sampling_rate=16000)),
            },
        ),
        Arch(
            preset="cogvideox-2b", family="cogvideox", checkpoint="THUDM/CogVideoX-2b", pipeline="CogVideoXPipeline",
            transformer=("CogVideoXTransformer3DModel", dict(
                num_attention_heads=30, attention_head_dim=64, in_channels=16, out_channels=16, time_embed_dim=512,
                text_embed_dim=4096, num_layers=30, sample_width=90, sample_height=60, sample_frames=49,
                patch_size=2, max_text_seq_length=226, use_rotary_positional_embeddings=False)),
            vae=("AutoencoderKLCogVideoX", dict(scaling_factor=1.15258426)),
            scheduler=("CogVideoXDDIMScheduler", dict(timestep_spacing="trailing", rescale_betas_zero_snr=True,
                                                      snr_shift_scale=3.0)),
            text_tokens=226, text_dim=4096, job=(49, 720, 480, 50, 6.0, 8),
            tiny_transformer=_COG_TINY_T, tiny_vae=_COG_TINY_VAE, tiny_job=(9, 16, 16), tiny_text_dim=32,
        ),
        Arch(
            preset="cogvideox-5b", family="cogvideox", checkpoint="THUDM/CogVideoX-5b", pipeline="CogVideoXPipeline",
            transformer=("CogVideoXTransformer3DModel", dict(
                num_attention_heads=48, attention_head_dim=64, in_channels=16, out_channels=16, time_embed_dim=512,
                text_embed_dim=4096, num_layers=42, sample_width=90, sample_height=60, sample_frames=49,
                patch_size=2, max_text_seq_length=226, use_rotary_positional_embeddings=True)),
            vae=("AutoencoderKLCogVideoX", dict(scaling_factor=0.7)),
            scheduler=("CogVideoXDPMScheduler", dict(timestep_spacing="trailing", rescale_betas_zero_snr=True,
                                                     snr_shift_scale=1.0)),
            text_tokens=226, text_dim=4096, job=(49, 720, 480, 50, 6.0, 8),
            tiny_transformer={**_COG_TINY_T, "attention_head_dim": 16, "use_rotary_positional_embeddings": True}, tiny_vae=_COG_TINY_VAE,
            tiny_job=(9, 16, 16), tiny_text_dim=32,
        ),
    )
}  # fmt: skip

#: Option name -> (SpeedOptions field, value); "fp8" and "vae_tiling" are applied directly, as the memory
#: options of generator/pipeline.py apply them (layerwise casting; the VAE's own tiling).
OPTIONS: dict[str, tuple[str, Any]] = {
    "videobot-defaults": ("", None),
    "attention=flash": ("attention_backend", "flash"),
    "attention=sage": ("attention_backend", "sage"),
    "cache=first_block": ("step_cache", "first_block"),
    "cache=taylorseer": ("step_cache", "taylorseer"),
    "cache=pab": ("step_cache", "pab"),
    "cache=mag": ("step_cache", "mag"),
    "compile=regional": ("compile", "regional"),
    "vae_slicing": ("vae_slicing", True),
    "vae_tiling": ("", None),
    "fp8": ("", None),
}
BASELINE = "diffusers-defaults"
#: The smoke run skips regional compile: on the CPU it spends a minute in the C++ compiler per model.
SMOKE_SKIP = {"compile=regional"}


@dataclass
class Row:
    preset: str
    option: str
    step_s: float | None = None
    total_s: list[float] = field(default_factory=list)
    peak_gb: float | None = None
    note: str = ""


# ----------------------------------------------------------------------------------------- building
def materialise(cls: Any, config: dict[str, Any], device: Any, dtype: Any) -> Any:
    """``cls.from_config(config)`` with parameters created empty, then filled on ``device`` with random values.

    Modules diffusers keeps in float32 when loading (``_keep_in_fp32_modules``) stay float32 here too.
    """
    import torch
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = cls.from_config(config)
    keep = list(getattr(model, "_keep_in_fp32_modules", None) or [])
    gen = torch.Generator(device=device).manual_seed(0)
    for mod_name, module in model.named_modules():
        for name, p in list(module._parameters.items()):
            if p is None:
                continue
            parts = f"{mod_name}.{name}".split(".")
            dt = torch.float32 if any(k in parts for k in keep) else dtype
            t = torch.empty(p.shape, device=device, dtype=dt)
            if p.ndim >= 2:  # scaled so activations stay O(1) through the layers (no inf/NaN on the way)
                fan_in = max(1, p[0].numel())
                t.normal_(0.0, fan_in**-0.5, generator=gen)
            elif name == "weight":
                t.fill_(1.0)
            else:
                t.zero_()
            module._parameters[name] = torch.nn.Parameter(t, requires_grad=False)
    return model.to(device).eval()


#: Published sizes (billions of transformer parameters), to check the configs above without a download.
PUBLISHED_B = {
    "wan2.1-1.3b": 1.3, "wan2.2-ti2v-5b": 5.0, "ltx-video": 1.9, "ltx-video-distilled": 13.0,
    "ltx-2": 19.0, "cogvideox-2b": 1.7, "cogvideox-5b": 5.6,
}  # fmt: skip


def parameter_counts() -> dict[str, tuple[float, float]]:
    """Billions of parameters of each full-size (transformer, VAE), built on the meta device (no memory)."""
    from accelerate import init_empty_weights

    counts = {}
    for name, arch in ARCHS.items():
        sizes = []
        for cls, cfg in (arch.transformer, arch.vae):
            with init_empty_weights():
                model = _cls(cls).from_config(cfg)
            sizes.append(sum(p.numel() for p in model.parameters()) / 1e9)
        counts[name] = (sizes[0], sizes[1])
    return counts


def _cls(name: str) -> Any:
    """A diffusers class by name, or by dotted path for those not exported at the top level."""
    import diffusers

    if "." not in name:
        return getattr(diffusers, name)
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def build(arch: Arch, device: Any, dtype: Any, *, tiny: bool) -> Any:
    tcls, tcfg = arch.transformer
    vcls, vcfg = arch.vae
    scls, scfg = arch.scheduler
    transformer = materialise(_cls(tcls), arch.tiny_transformer if tiny else tcfg, device, dtype)
    vae = materialise(_cls(vcls), arch.tiny_vae if tiny else vcfg, device, dtype)
    extra = {
        name: materialise(_cls(cls), small if tiny else full, device, dtype)
        for name, (cls, full, small) in arch.components.items()
    }
    scheduler = _cls(scls)(**scfg)
    pipe = _cls(arch.pipeline)(
        tokenizer=None, text_encoder=None, vae=vae, transformer=transformer, scheduler=scheduler,
        **extra, **arch.pipeline_kwargs,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def job_for(arch: Arch, *, tiny: bool) -> dict[str, Any]:
    """The preset's default job (from videobot.presets when the preset exists there), or a tiny one."""
    frames, width, height, steps, guidance, fps = arch.job
    try:
        from videobot.presets import PRESETS

        p = PRESETS[arch.preset]
        width, height = p.sizes[p.default_aspect]
        frames, steps, guidance, fps = p.default_frames, p.steps, p.guidance, p.fps
    except (ImportError, KeyError):
        pass
    if not steps:  # not given: the pipeline's own defaults
        import inspect

        defaults = inspect.signature(_cls(arch.pipeline).__call__).parameters
        steps, guidance = defaults["num_inference_steps"].default, defaults["guidance_scale"].default
    if tiny:
        frames, width, height = arch.tiny_job
        steps = 2
    return dict(num_frames=frames, width=width, height=height, num_inference_steps=steps, guidance_scale=guidance,
                fps=fps)  # fmt: skip


def _speed_module() -> Any | None:
    try:
        return importlib.import_module("generator.speed")
    except ImportError:
        return None


def apply_option(pipe: Any, arch: Arch, option: str, dtype: Any, speed: Any | None) -> str:
    """Apply one option to a fresh pipeline; returns a note ('' when applied), or raises ``Skip``."""
    import torch

    if option == BASELINE:
        return ""
    if option == "fp8":
        pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
        return ""
    if option == "vae_tiling":
        if not hasattr(pipe.vae, "enable_tiling"):
            raise Skip(f"the {arch.family} VAE cannot decode in tiles")
        pipe.vae.enable_tiling()
        return ""
    if speed is None or not hasattr(speed, "SpeedOptions") or not hasattr(speed, "apply_speed_options"):
        raise Skip("generator/speed.py (SpeedOptions, apply_speed_options) is not there yet")
    fname, value = OPTIONS[option]
    names = {f.name for f in dataclasses.fields(speed.SpeedOptions)}
    if fname and fname not in names:
        raise Skip(f"generator.speed.SpeedOptions has no `{fname}` yet")
    opts = speed.SpeedOptions(**({fname: value} if fname else {}))
    try:
        speed.apply_speed_options(pipe, arch.family, opts)
    except getattr(speed, "SpeedOptionError", ValueError) as exc:
        raise Skip(f"refused: {str(exc).splitlines()[0][:160]}") from None
    return ""


class Skip(Exception):
    """This option cannot run here; the message says why (shown in the table)."""


# ----------------------------------------------------------------------------------------- timing
def run_job(
    pipe: Any, arch: Arch, job: dict[str, Any], tokens: int, text_dim: int, device: Any, dtype: Any
) -> tuple[float, list[float]]:
    """One job; returns (total seconds, seconds of each denoising step)."""
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator(device="cpu").manual_seed(0)
    shape = (1, tokens, text_dim)
    kwargs: dict[str, Any] = {
        "prompt_embeds": torch.randn(shape, generator=gen).to(device, dtype),
        "negative_prompt_embeds": torch.randn(shape, generator=gen).to(device, dtype),
        "num_frames": job["num_frames"],
        "width": job["width"],
        "height": job["height"],
        "num_inference_steps": job["num_inference_steps"],
        "guidance_scale": job["guidance_scale"],
        "generator": torch.Generator(device="cpu").manual_seed(0),
        "output_type": "np",
        **arch.call_kwargs,
    }
    if arch.family in ("ltx", "ltx2"):
        mask = torch.ones(1, tokens, device=device, dtype=torch.long)
        kwargs.update(prompt_attention_mask=mask, negative_prompt_attention_mask=mask, frame_rate=job["fps"])
    marks: list[float] = []

    def on_step(p: Any, i: int, t: Any, kw: dict[str, Any]) -> dict[str, Any]:
        sync()
        marks.append(time.perf_counter())
        return kw

    sync()
    t0 = time.perf_counter()
    with torch.inference_mode():
        pipe(**kwargs, callback_on_step_end=on_step)
    sync()
    total = time.perf_counter() - t0
    steps = [b - a for a, b in zip([t0, *marks], marks, strict=False)]
    return total, steps


def _peak_reset(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: Any) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB -> GB: the process's peak RSS


def _free(device: Any) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_one(arch: Arch, option: str, args: argparse.Namespace, device: Any, dtype: Any, speed: Any) -> Row:
    tiny = args.smoke
    row = Row(arch.preset, option)
    job = job_for(arch, tiny=tiny)
    if args.steps and not tiny:
        job["num_inference_steps"] = args.steps
    text_dim = arch.tiny_text_dim if tiny else arch.text_dim
    tokens = arch.tiny_text_tokens if tiny else arch.text_tokens
    pipe = None
    try:
        pipe = build(arch, device, dtype, tiny=tiny)
        try:
            apply_option(pipe, arch, option, dtype, speed)
        except Skip as why:
            row.note = str(why)
            return row
        run_job(pipe, arch, {**job, "num_inference_steps": 2}, tokens, text_dim, device, dtype)  # warm-up
        _peak_reset(device)
        steps: list[float] = []
        for _ in range(args.runs):
            total, s = run_job(pipe, arch, job, tokens, text_dim, device, dtype)
            row.total_s.append(total)
            steps += s
        row.step_s = statistics.median(steps)
        row.peak_gb = _peak_gb(device)
        if option.startswith("cache="):
            row.note = "random weights: not the real skip rate"
    except Exception as exc:  # one failing combination must not lose the rest of the table
        import torch

        kind = "out of memory" if isinstance(exc, torch.OutOfMemoryError) else type(exc).__name__
        row.note = f"failed: {kind}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        row.total_s = []
    finally:
        del pipe
        _free(device)
    return row


def table(rows: list[Row], header: str) -> str:
    base = {r.preset: statistics.median(r.total_s) for r in rows if r.option == BASELINE and r.total_s}
    out = [header, "", "| preset | option | s/step | total s (median, min–max) | peak GB | × diffusers defaults | note |",
           "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        if r.total_s:
            med = statistics.median(r.total_s)
            total = f"{med:.3f} ({min(r.total_s):.3f}–{max(r.total_s):.3f})"
            ratio = f"{med / base[r.preset]:.2f}" if r.preset in base else "—"
            step = f"{r.step_s:.4f}" if r.step_s is not None else "—"
            peak = f"{r.peak_gb:.2f}" if r.peak_gb is not None else "—"
        else:
            total = step = peak = ratio = "—"
        out.append(f"| {r.preset} | {r.option} | {step} | {total} | {peak} | {ratio} | {r.note} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="all", help=f"comma list or all: {', '.join(ARCHS)}")
    ap.add_argument("--options", default="all", help=f"comma list or all: {', '.join(OPTIONS)}")
    ap.add_argument(
        "--runs", type=int, default=None, help="timed jobs per preset and option (default 3; smoke 2)"
    )
    ap.add_argument(
        "--steps", type=int, default=None, help="override every preset's step count (s/step stays comparable)"
    )
    ap.add_argument(
        "--smoke", action="store_true", help="tiny sizes on the CPU, float32: checks the code path"
    )
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    ap.add_argument("--params", action="store_true", help="only print each full-size model's parameter count")
    args = ap.parse_args(argv)
    if args.params:
        print(
            "| preset | checkpoint | transformer (B params) | published | VAE (B params) |\n|---|---|---:|---:|---:|"
        )
        for name, (t, v) in parameter_counts().items():
            print(f"| {name} | {ARCHS[name].checkpoint} | {t:.2f} | {PUBLISHED_B[name]} | {v:.3f} |")
        return 0
    args.runs = args.runs or (2 if args.smoke else 3)

    import torch

    presets = (
        list(ARCHS) if args.presets == "all" else [p.strip() for p in args.presets.split(",") if p.strip()]
    )
    unknown = [p for p in presets if p not in ARCHS]
    if unknown:
        ap.error(f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(ARCHS)}")
    options = (
        list(OPTIONS) if args.options == "all" else [o.strip() for o in args.options.split(",") if o.strip()]
    )
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        ap.error(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    if args.smoke:
        options = [o for o in options if o not in SMOKE_SKIP]
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA GPU here: run with --smoke for the CPU version")
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny tensors: more threads only spin on a shared machine
    speed = _speed_module()
    if speed is None:
        print(
            "note: generator/speed.py not found: only diffusers-defaults and fp8 run; the other options are skipped"
        )

    rows: list[Row] = []
    for name in presets:
        for option in [BASELINE, *options]:
            row = bench_one(ARCHS[name], option, args, device, dtype, speed)
            rows.append(row)
            print(f"{name:22s} {option:20s} {row.total_s and f'{statistics.median(row.total_s):.3f} s' or row.note}",
                  file=sys.stderr, flush=True)  # fmt: skip

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    import diffusers

    header = (
        f"{'SMOKE (tiny sizes, not real figures)' if args.smoke else 'Full-size architectures, random weights'}: "
        f"{gpu}, torch {torch.__version__}, diffusers {diffusers.__version__}, {str(dtype).removeprefix('torch.')}, "
        f"{args.runs} timed run(s) each after a warm-up"
        f"{f', {args.steps} steps per job' if args.steps and not args.smoke else ''}; "
        "text encoder replaced by random embeddings."
    )
    text = table(rows, header)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
