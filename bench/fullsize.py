"""Every preset's model at full size with random weights, built offline from configs written here, for
``bench/gpu.py`` and ``bench/gpu_check.py``.

``builder()`` returns what ``VideoPipeline.load(..., build=...)`` takes: a function that makes the preset's
diffusers pipeline (the checkpoint's class, the per-component dtypes ``from_pretrained`` would use) with
random weights instead of reading the checkpoint; everything after that (preset settings, LoRAs, the verbs'
pipelines, memory and speed options, previews) is the worker's own code. The time of a step and the memory
do not depend on the weight values, so this times and sizes the real architectures without a download
(the GPU machine has no internet).

The configs are the checkpoints' ``config.json`` values (diffusers format) and those of diffusers'
conversion scripts (LTX-2.3); ``tests/generator/test_bench_gpu_smoke.py`` checks each transformer's
parameter count against the published size on the meta device. The tokenizer is the tiny offline one of
``generator.tiny`` (its ids index the full vocabulary); the text encoders are full size.

``tiny=True`` builds the same presets from ``generator.tiny``'s random models (plus tiny versions of the
parts that differ, such as LTX-2.3's gated attention and per-modality connectors): the CPU smoke runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------- configs
_UMT5_XXL = (  # Wan's text encoder (google/umt5-xxl, encoder only)
    "transformers.UMT5EncoderModel",
    dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
         relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
         tie_word_embeddings=False, dropout_rate=0.0),
)  # fmt: skip
_T5_XXL = (  # LTX-Video's and CogVideoX's text encoder (google/t5-v1_1-xxl, encoder only)
    "transformers.T5EncoderModel",
    dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
         feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0),
)  # fmt: skip
_GEMMA3_12B = (  # LTX-2's text encoder (google/gemma-3-12b-it), vision tower included as the checkpoint has it
    "transformers.Gemma3ForConditionalGeneration",
    dict(
        text_config=dict(vocab_size=262208, hidden_size=3840, intermediate_size=15360, num_hidden_layers=48,
                         num_attention_heads=16, num_key_value_heads=8, head_dim=256, sliding_window=1024,
                         max_position_embeddings=131072, pad_token_id=0, eos_token_id=1, bos_token_id=2),
        vision_config=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                           image_size=896, patch_size=14),
        mm_tokens_per_image=256, image_token_index=262144, boi_token_index=255999, eoi_token_index=256000,
    ),
)  # fmt: skip
_WAN_VAE = (
    "diffusers.AutoencoderKLWan",
    dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2),
)
_WAN22_VAE = (
    "diffusers.AutoencoderKLWan",
    dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
         temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12, patch_size=2,
         scale_factor_spatial=16, scale_factor_temporal=4, latents_mean=[0.0] * 48, latents_std=[1.0] * 48),
)  # fmt: skip
_WAN_SCHED = (
    "diffusers.UniPCMultistepScheduler",
    dict(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
)
_LTX_SCHED = (
    "diffusers.FlowMatchEulerDiscreteScheduler",
    dict(base_image_seq_len=1024, base_shift=0.95, max_image_seq_len=4096, max_shift=2.05, shift_terminal=0.1,
         use_dynamic_shifting=True),
)  # fmt: skip
_LTX13B_T = (
    "diffusers.LTXVideoTransformer3DModel",
    dict(in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
         attention_head_dim=128, cross_attention_dim=4096, num_layers=48, caption_channels=4096),
)  # fmt: skip
_LTX097_VAE = (
    "diffusers.AutoencoderKLLTXVideo",
    dict(latent_channels=128, block_out_channels=(128, 256, 512, 1024, 2048),
         down_block_types=("LTXVideo095DownBlock3D",) * 4, decoder_block_out_channels=(256, 512, 1024),
         layers_per_block=(4, 6, 6, 2, 2), decoder_layers_per_block=(5, 5, 5, 5),
         spatio_temporal_scaling=(True, True, True, True), decoder_spatio_temporal_scaling=(True, True, True),
         decoder_inject_noise=(False, False, False, False),
         downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
         upsample_residual=(True, True, True), upsample_factor=(2, 2, 2), timestep_conditioning=True,
         spatial_compression_ratio=32, temporal_compression_ratio=8),
)  # fmt: skip
_LTX2_AUDIO = {
    "audio_vae": ("diffusers.AutoencoderKLLTX2Audio", {}),
    # LTX-2.3 ships a vocoder with bandwidth extension (48 kHz); timed here as LTX-2.0's (24 kHz): a small
    # part of a job either way.
    "vocoder": ("diffusers.pipelines.ltx2.vocoder.LTX2Vocoder", {}),
}
_LTX2_SCHED = (
    "diffusers.FlowMatchEulerDiscreteScheduler",
    dict(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, shift_terminal=0.1),
)
_COG_T = dict(in_channels=16, out_channels=16, time_embed_dim=512, text_embed_dim=4096, sample_width=90,
              sample_height=60, sample_frames=49, patch_size=2, max_text_seq_length=226)  # fmt: skip

#: Preset -> component -> (class, full-size config); "scheduler" is the checkpoint's scheduler.
FULL: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "wan2.1-1.3b": {
        "transformer": ("diffusers.WanTransformer3DModel", dict(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
            text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)),
        "vae": _WAN_VAE, "text_encoder": _UMT5_XXL, "scheduler": _WAN_SCHED,
    },
    "wan2.1-14b-lightx2v": {
        "transformer": ("diffusers.WanTransformer3DModel", dict(
            patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=16, out_channels=16,
            text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)),
        "vae": _WAN_VAE, "text_encoder": _UMT5_XXL, "scheduler": _WAN_SCHED,
    },
    "wan2.2-ti2v-5b": {
        "transformer": ("diffusers.WanTransformer3DModel", dict(
            patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
            text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)),
        "vae": _WAN22_VAE, "text_encoder": _UMT5_XXL, "scheduler": _WAN_SCHED,
    },
    "ltx-video": {
        "transformer": ("diffusers.LTXVideoTransformer3DModel", dict(
            in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
            attention_head_dim=64, cross_attention_dim=2048, num_layers=28, caption_channels=4096)),
        # The 0.9.0 VAE (no timestep conditioning).
        "vae": ("diffusers.AutoencoderKLLTXVideo", dict(
            latent_channels=128, block_out_channels=(128, 256, 512, 512),
            decoder_block_out_channels=(128, 256, 512, 512), timestep_conditioning=False)),
        "text_encoder": _T5_XXL, "scheduler": _LTX_SCHED,
    },
    "ltx-video-distilled": {"transformer": _LTX13B_T, "vae": _LTX097_VAE, "text_encoder": _T5_XXL,
                            "scheduler": _LTX_SCHED},
    "ltx-video-0.9.8-distilled": {"transformer": _LTX13B_T, "vae": _LTX097_VAE, "text_encoder": _T5_XXL,
                                  "scheduler": _LTX_SCHED},
    "ltx-2": {
        # diffusers' class defaults are LTX-2.0's configuration (48 layers, 32 x 128 video, 32 x 64 audio).
        "transformer": ("diffusers.LTX2VideoTransformer3DModel", dict(rope_type="split")),
        "connectors": ("diffusers.pipelines.ltx2.connectors.LTX2TextConnectors", dict(
            caption_channels=3840, text_proj_in_factor=49, video_connector_num_attention_heads=30,
            video_connector_attention_head_dim=128, video_connector_num_layers=2,
            video_connector_num_learnable_registers=128, audio_connector_num_attention_heads=30,
            audio_connector_attention_head_dim=128, audio_connector_num_layers=2,
            audio_connector_num_learnable_registers=128, rope_type="split")),
        "vae": ("diffusers.AutoencoderKLLTX2Video", {}), **_LTX2_AUDIO, "text_encoder": _GEMMA3_12B,
        "scheduler": _LTX2_SCHED,
    },
    "ltx-2.3-distilled": {
        # diffusers' scripts/convert_ltx2_to_diffusers.py, version "2.3".
        "transformer": ("diffusers.LTX2VideoTransformer3DModel", dict(
            gated_attn=True, cross_attn_mod=True, audio_gated_attn=True, audio_cross_attn_mod=True,
            rope_type="split", use_prompt_embeddings=False, perturbed_attn=True)),
        "connectors": ("diffusers.pipelines.ltx2.connectors.LTX2TextConnectors", dict(
            caption_channels=3840, text_proj_in_factor=49, video_connector_num_attention_heads=32,
            video_connector_attention_head_dim=128, video_connector_num_layers=8,
            video_connector_num_learnable_registers=128, video_gated_attn=True,
            audio_connector_num_attention_heads=32, audio_connector_attention_head_dim=64,
            audio_connector_num_layers=8, audio_connector_num_learnable_registers=128, audio_gated_attn=True,
            connector_rope_base_seq_len=4096, rope_type="split", per_modality_projections=True,
            video_hidden_dim=4096, audio_hidden_dim=2048, proj_bias=True)),
        "vae": ("diffusers.AutoencoderKLLTX2Video", dict(
            block_out_channels=(256, 512, 1024, 1024), down_block_types=("LTX2VideoDownBlock3D",) * 4,
            decoder_block_out_channels=(256, 512, 512, 1024), layers_per_block=(4, 6, 4, 2, 2),
            decoder_layers_per_block=(4, 6, 4, 2, 2), spatio_temporal_scaling=(True, True, True, True),
            decoder_spatio_temporal_scaling=(True, True, True, True),
            decoder_inject_noise=(False, False, False, False, False),
            downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
            upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
            upsample_residual=(False, False, False, False), upsample_factor=(2, 2, 1, 2),
            timestep_conditioning=False, patch_size=4, patch_size_t=1, decoder_spatial_padding_mode="zeros")),
        **_LTX2_AUDIO, "text_encoder": _GEMMA3_12B, "scheduler": _LTX2_SCHED,
    },
    "cogvideox-2b": {
        "transformer": ("diffusers.CogVideoXTransformer3DModel", dict(
            num_attention_heads=30, attention_head_dim=64, num_layers=30, use_rotary_positional_embeddings=False,
            **_COG_T)),
        "vae": ("diffusers.AutoencoderKLCogVideoX", dict(scaling_factor=1.15258426)),
        "text_encoder": _T5_XXL,
        "scheduler": ("diffusers.CogVideoXDDIMScheduler", dict(
            timestep_spacing="trailing", rescale_betas_zero_snr=True, snr_shift_scale=3.0)),
    },
    "cogvideox-5b": {
        "transformer": ("diffusers.CogVideoXTransformer3DModel", dict(
            num_attention_heads=48, attention_head_dim=64, num_layers=42, use_rotary_positional_embeddings=True,
            **_COG_T)),
        "vae": ("diffusers.AutoencoderKLCogVideoX", dict(scaling_factor=0.7)),
        "text_encoder": _T5_XXL,
        "scheduler": ("diffusers.CogVideoXDPMScheduler", dict(
            timestep_spacing="trailing", rescale_betas_zero_snr=True, snr_shift_scale=1.0)),
    },
}  # fmt: skip

#: Published sizes (billions of transformer parameters), to check the configs above without a download.
PUBLISHED_B = {
    "wan2.1-1.3b": 1.3, "wan2.1-14b-lightx2v": 14.0, "wan2.2-ti2v-5b": 5.0, "ltx-video": 1.9,
    "ltx-video-distilled": 13.0, "ltx-video-0.9.8-distilled": 13.0, "ltx-2": 19.0, "ltx-2.3-distilled": 22.0,
    "cogvideox-2b": 1.7, "cogvideox-5b": 5.6,
}  # fmt: skip
#: What the published size counts: LTX-2.3's 22B includes its 8-layer text connectors (3.2B here); LTX-2's
#: 19B is the transformer alone (its 2-layer connectors add 1.4B).
COUNTED = {"ltx-2.3-distilled": ("transformer", "connectors")}

#: Tiny stand-ins for parts of a preset that ``generator.tiny``'s model of its family lacks (same flags as the
#: full config, tiny sizes): LTX-2.3's gated attention, prompt modulation and per-modality text connectors.
TINY: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "ltx-2.3-distilled": {
        "transformer": ("diffusers.LTX2VideoTransformer3DModel", dict(
            in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
            cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
            audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
            caption_channels=32, rope_double_precision=False, rope_type="split", gated_attn=True,
            cross_attn_mod=True, audio_gated_attn=True, audio_cross_attn_mod=True, use_prompt_embeddings=False,
            perturbed_attn=True)),
        "connectors": ("diffusers.pipelines.ltx2.connectors.LTX2TextConnectors", dict(
            caption_channels=32, text_proj_in_factor=3, video_connector_num_attention_heads=2,
            video_connector_attention_head_dim=8, video_connector_num_layers=1,
            video_connector_num_learnable_registers=None, video_gated_attn=True,
            audio_connector_num_attention_heads=2, audio_connector_attention_head_dim=4,
            audio_connector_num_layers=1, audio_connector_num_learnable_registers=None, audio_gated_attn=True,
            connector_rope_base_seq_len=32, rope_double_precision=False, rope_type="split",
            per_modality_projections=True, video_hidden_dim=16, audio_hidden_dim=8, proj_bias=True)),
    },
}  # fmt: skip
PRESETS = tuple(FULL)


def _cls(path: str) -> Any:
    module, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _instantiate(path: str, config: dict[str, Any]) -> Any:
    """A diffusers model from its config, or a transformers model from its config class."""
    cls = _cls(path)
    if hasattr(cls, "from_config"):
        return cls.from_config(config)
    return cls(cls.config_class(**config))


def _empty(path: str, config: dict[str, Any]) -> Any:
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return _instantiate(path, config)


def materialise(path: str, config: dict[str, Any], dtype: Any, *, fill_device: Any = None) -> Any:
    """The model of ``config`` with random weights in ``dtype`` on the CPU (where ``from_pretrained`` puts
    them), drawn on ``fill_device`` (the GPU when there is one: drawing 20B numbers on a CPU takes minutes).

    Matrices are scaled by 1/sqrt(fan-in) so activations stay O(1) through the layers (no inf/NaN); norms
    are 1, biases 0. Modules the class keeps in float32 when loading (``_keep_in_fp32_modules``) stay
    float32.
    """
    import torch

    model = _empty(path, config)
    keep = list(getattr(model, "_keep_in_fp32_modules", None) or [])
    fill_device = torch.device(fill_device or "cpu")
    gen = torch.Generator(device=fill_device).manual_seed(0)
    for mod_name, module in model.named_modules():
        for name, p in list(module._parameters.items()):
            if p is None:
                continue
            parts = f"{mod_name}.{name}".split(".")
            dt = torch.float32 if any(k in parts for k in keep) else dtype
            t = torch.empty(p.shape, device=fill_device, dtype=dt)
            if p.ndim >= 2:
                t.normal_(0.0, max(1, p[0].numel()) ** -0.5, generator=gen)
            elif name == "weight":
                t.fill_(1.0)
            else:
                t.zero_()
            module._parameters[name] = torch.nn.Parameter(t.to("cpu"), requires_grad=False)
    return model.to("cpu").eval()


def _dtype_of(load_dtype: Any, component: str) -> Any:
    if isinstance(load_dtype, dict):
        return load_dtype.get(component, load_dtype["default"])
    return load_dtype


def builder(*, tiny: bool, fill_device: Any = None) -> Callable[[Any, Any], Any]:
    """``VideoPipeline.load``'s ``build``: the preset's pipeline (its checkpoint's class) with random weights,
    full size (or tiny), each component in the dtype ``from_pretrained`` would give it."""

    def random_weights(preset: Any, load_dtype: Any) -> Any:
        return random_pipeline(preset, load_dtype, tiny=tiny, fill_device=fill_device)

    return random_weights


def random_pipeline(preset: Any, load_dtype: Any, *, tiny: bool, fill_device: Any = None) -> Any:
    """``preset``'s diffusers pipeline with random weights: tiny (``generator.tiny``'s model of its family,
    plus ``TINY``'s parts) or full size (``FULL``); the tokenizer is always the tiny offline one."""
    import diffusers

    from generator.tiny import _build_pipeline

    family = "wan22" if preset.family == "wan22" else preset.family
    template = _build_pipeline(family)
    components = dict(template.components)
    specs = TINY.get(preset.name, {}) if tiny else FULL[preset.name]
    for name, (path, config) in specs.items():
        if name == "scheduler":
            components[name] = _cls(path)(**config)
        elif tiny:
            import torch

            torch.manual_seed(0)
            components[name] = _instantiate(path, config).eval()
        else:
            components[name] = materialise(path, config, _dtype_of(load_dtype, name), fill_device=fill_device)
    for name, module in components.items():
        dtype = _dtype_of(load_dtype, name)
        if hasattr(module, "parameters") and any(p.dtype != dtype for p in module.parameters()):
            module.to(dtype)
    cls = getattr(diffusers, preset.pipeline_class)
    accepted = set(inspect.signature(cls.__init__).parameters)
    pipe = cls(**{k: v for k, v in components.items() if k in accepted})
    return pipe


# ------------------------------------------------------------------------------------------------ LoRAs
#: The layers a random LoRA covers: attention projections and the FFN (what step-distillation LoRAs adapt).
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2", "proj_out")


def random_lora(preset: Any, path: Path, *, tiny: bool, rank: int = 64, seed: int = 0) -> Path:
    """A random LoRA of ``rank`` for ``preset``'s transformer in diffusers' format (``transformer.<layer>
    .lora_A/B.weight``), written to ``path``: what a downloaded step-distillation LoRA is to ``load_lora_weights``
    (lightx2v's are rank 64), built offline. B is small, so the fused weights stay near the originals."""
    import torch
    from safetensors.torch import save_file

    if tiny:
        from generator.tiny import _build_pipeline

        transformer = _build_pipeline(preset.family).transformer
    else:
        transformer = _empty(*FULL[preset.name]["transformer"])
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and any(name.endswith(t) for t in LORA_TARGETS):
            r = min(rank, module.in_features, module.out_features)
            a = torch.randn(r, module.in_features, generator=gen) * module.in_features**-0.5
            b = torch.randn(module.out_features, r, generator=gen) * 0.01
            state[f"transformer.{name}.lora_A.weight"] = a.to(torch.bfloat16).contiguous()
            state[f"transformer.{name}.lora_B.weight"] = b.to(torch.bfloat16).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def bench_preset(name: str, workdir: Path, *, tiny: bool) -> Any:
    """The preset ``name`` as the worker runs it, with its own LoRAs (a "fast" variant's step-distillation
    LoRA, on the Hub) replaced by random local ones of the same rank: no download."""
    from videobot.presets import PRESETS as ALL
    from videobot.presets import LoraSpec

    preset = ALL[name]
    if not preset.loras:
        return preset
    loras = tuple(
        LoraSpec(
            str(random_lora(preset, workdir / f"{name}-lora{i}.safetensors", tiny=tiny)), None, spec.scale
        )
        for i, spec in enumerate(preset.loras)
    )
    return dataclasses.replace(preset, loras=loras)


# ----------------------------------------------------------------------------------------- process state
def reset_process_state() -> None:
    """Undo what one row leaves behind for the next, in the same process: diffusers' active attention
    backend is process-wide (``set_attention_backend`` sets it for every model, and a model without its own
    backend follows it), and torch.compile's caches and guards (``torch._dynamo.reset``)."""
    import torch
    from diffusers.models.attention_dispatch import (
        DIFFUSERS_ATTN_BACKEND,
        AttentionBackendName,
        _AttentionBackendRegistry,
    )

    _AttentionBackendRegistry.set_active_backend(AttentionBackendName(DIFFUSERS_ATTN_BACKEND))
    torch._dynamo.reset()


def active_attention_backend() -> str:
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    backend = _AttentionBackendRegistry.get_active_backend()[0]
    return str(getattr(backend, "value", backend))


def parameter_counts() -> dict[str, float]:
    """Billions of parameters of each preset's full-size denoiser (``COUNTED``; else the transformer), built on
    the meta device (no memory)."""
    counts = {}
    for name, specs in FULL.items():
        models = [_empty(*specs[part]) for part in COUNTED.get(name, ("transformer",))]
        counts[name] = sum(p.numel() for m in models for p in m.parameters()) / 1e9
    return counts
