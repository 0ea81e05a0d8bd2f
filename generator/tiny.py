"""Tiny random pipelines of every supported family, built fully offline: for tests and for trying the bot without a GPU."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# Bump when the architecture below changes so stale folders get rebuilt.
TINY_VERSION = 2
#: The family `tiny` is built from: the one whose pipeline does text, image and extend.
DEFAULT_FAMILY = "ltx"
_MARKER = "videobot_tiny.json"
_WORDS = (
    "a the of and in on with to at from by is are cat dog bird fish horse car boat city street forest sea ocean "
    "river mountain sky sun moon night day rain snow fire water light red blue green yellow white black slow "
    "fast running flying walking dancing surfing wave waves tree trees flower flowers people person man woman "
    "child robot space star stars cloud clouds beach sunset camera drone video film cinematic"
).split()


def _build_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """A small Unigram tokenizer built locally with the ``tokenizers`` library (no download)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    pieces: list[tuple[str, float]] = [(s, 0.0) for s in specials]
    pieces += [("\u2581" + w, -5.0 - i * 0.01) for i, w in enumerate(_WORDS)]
    pieces += [("\u2581", -9.0)]
    pieces += [(c, -10.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def _t5_encoder(
    tokenizer, cls_name: str = "T5EncoderModel"
):  # -> transformers T5EncoderModel / UMT5EncoderModel
    import torch
    import transformers

    config_cls = transformers.UMT5Config if cls_name.startswith("UMT5") else transformers.T5Config
    torch.manual_seed(0)
    return getattr(transformers, cls_name)(
        config_cls(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            dropout_rate=0.0,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )


def _wan(*, ti2v: bool):  # -> diffusers.WanPipeline
    """Wan 2.1 (16-channel VAE, 8x) or Wan 2.2 TI2V (48-channel residual VAE, 16x, expand_timesteps)."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    tokenizer = _build_tokenizer()
    # Shapes as in diffusers' own tests (tests/pipelines/wan).
    torch.manual_seed(0)
    if ti2v:
        vae = AutoencoderKLWan(
            base_dim=3,
            z_dim=48,
            in_channels=12,
            out_channels=12,
            is_residual=True,
            patch_size=2,
            latents_mean=[0.0] * 48,
            latents_std=[1.0] * 48,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            scale_factor_spatial=16,
            scale_factor_temporal=4,
            temperal_downsample=[False, True, True],
        )
    else:
        vae = AutoencoderKLWan(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )
    text_encoder = _t5_encoder(tokenizer, "UMT5EncoderModel")
    channels = 48 if ti2v else 16
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=channels,
        out_channels=channels,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    # The real checkpoints ship UniPC in flow mode; the preset sets flow_shift.
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
        expand_timesteps=ti2v,
    )


def _ltx():  # -> diffusers.LTXConditionPipeline
    """LTX-Video 0.9.5+ layout: one condition pipeline for text, first image and clip extension."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXVideoTransformer3DModel,
    )

    tokenizer = _build_tokenizer()
    text_encoder = _t5_encoder(tokenizer)
    torch.manual_seed(0)
    # 8x in space and time like the real VAE (frames 8k+1, sizes multiples of 32). The decoder_* settings
    # must be given: their defaults are the full-size decoder.
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=True,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=32,
    )
    return LTXConditionPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


def _ltx2():  # -> diffusers.LTX2Pipeline
    """LTX-2: video + audio, Gemma 3 text encoder, text connectors, audio VAE and vocoder."""
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, GemmaTokenizerFast

    base = _build_tokenizer()
    tokenizer = GemmaTokenizerFast(
        tokenizer_object=base.backend_tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        bos_token="</s>",
        unk_token="<unk>",
        model_max_length=512,
    )
    n = len(tokenizer)
    hidden = 32  # = caption_channels = connector heads x head dim (0.42 connectors do not project)
    config = Gemma3Config(
        text_config=dict(
            vocab_size=n,
            hidden_size=hidden,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=512,
            sliding_window=16,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=1,
        ),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=16,
            patch_size=8,
        ),
        mm_tokens_per_image=4,
        image_token_index=n - 1,
        boi_token_index=n - 2,
        eoi_token_index=n - 3,
    )
    torch.manual_seed(0)
    text_encoder = Gemma3ForConditionalGeneration(config)
    torch.manual_seed(0)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=hidden,
        rope_double_precision=False,
        rope_type="split",
    )
    torch.manual_seed(0)
    connectors = LTX2TextConnectors(
        caption_channels=hidden,
        text_proj_in_factor=config.text_config.num_hidden_layers + 1,
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_theta=10000.0,
        rope_double_precision=False,
        causal_temporal_positioning=False,
        rope_type="split",
    )
    torch.manual_seed(0)
    # 8x in time like the real VAE (frames 8k+1); 8x in space through three spatial stages.
    vae = AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 8),
        decoder_block_out_channels=(8, 8, 8),
        layers_per_block=(1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        downsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"),
        upsample_residual=(False, False, False),
        upsample_factor=(1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    torch.manual_seed(0)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4,
        output_channels=2,
        ch_mult=(1,),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=2,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=8,
    )
    torch.manual_seed(0)
    # Upsamples 4 x 40 = 160 = the mel hop, so the waveform lasts as long as the video.
    vocoder = LTX2Vocoder(
        in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[8, 80],
        upsample_factors=[4, 40],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=16000,
    )
    return LTX2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        audio_vae=audio_vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        connectors=connectors,
        transformer=transformer,
        vocoder=vocoder,
    )


def _cogvideox():  # -> diffusers.CogVideoXPipeline
    import torch
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    tokenizer = _build_tokenizer()
    text_encoder = _t5_encoder(tokenizer)
    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=2,
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=226,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    return CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(),
    )


_BUILDERS = {
    "wan": lambda: _wan(ti2v=False),
    "wan22": lambda: _wan(ti2v=True),
    "ltx": _ltx,
    "ltx2": _ltx2,
    "cogvideox": _cogvideox,
}
FAMILIES = tuple(_BUILDERS)


def _build_pipeline(family: str):  # -> a diffusers pipeline
    if family not in _BUILDERS:
        raise ValueError(f"Unknown tiny model family `{family}`: use one of {', '.join(FAMILIES)}.")
    pipe = _BUILDERS[family]()
    for module in pipe.components.values():
        if hasattr(module, "eval"):
            module.eval()  # fresh modules are in train mode: dropout would make outputs random
    return pipe


def is_complete(directory: Path, family: str = DEFAULT_FAMILY) -> bool:
    """Whether ``directory`` holds a finished tiny model of ``family`` and the current version."""
    try:
        marker = json.loads((directory / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        marker.get("version") == TINY_VERSION
        and marker.get("family", "wan") == family
        and (directory / "model_index.json").is_file()
    )


def build_tiny_model(directory: Path, family: str = DEFAULT_FAMILY) -> Path:
    """Build (or reuse) the tiny random pipeline of ``family`` in ``directory``; returns ``directory``.

    Real diffusers pipeline and component classes with tiny configs, saved as a diffusers folder that
    ``DiffusionPipeline.from_pretrained`` loads exactly like a downloaded model.
    """
    directory = Path(directory)
    if family not in _BUILDERS:
        raise ValueError(f"Unknown tiny model family `{family}`: use one of {', '.join(FAMILIES)}.")
    if is_complete(directory, family):
        return directory
    log.info("building the tiny test model in %s", directory)

    def write(tmp: Path) -> None:
        _build_pipeline(family).save_pretrained(tmp)
        # The marker is written last: its presence means the save finished.
        (tmp / _MARKER).write_text(json.dumps({"version": TINY_VERSION, "family": family}), encoding="utf-8")

    return build_into(directory, write, lambda: is_complete(directory, family))


def build_into(directory: Path, write: Callable[[Path], None], complete: Callable[[], bool]) -> Path:
    """Build a model folder next to ``directory`` (``write`` fills an empty folder), then move it into
    place. Several processes of this machine building the same folder at once (two workers' first
    start) take turns on a lock file: the first builds, the others find its finished copy (``complete()`` says
    whether ``directory`` holds one); nobody loads, or removes, a folder another is writing."""
    import hashlib

    from filelock import FileLock

    directory.parent.mkdir(parents=True, exist_ok=True)
    # The lock lives in the temp folder, not beside the model: a data folder holds only models.
    key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    with FileLock(str(Path(tempfile.gettempdir()) / f"videobot-build-{key}.lock")):
        if complete():
            return directory  # another process built it while this one waited
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        try:
            write(tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; it is a model folder like any other
            if directory.exists():
                shutil.rmtree(directory)  # an incomplete or outdated build
            tmp.rename(directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


#: Latent channels of each tiny family's VAE that has a latent upsampler (``_ltx``: 8, ``_ltx2``: 4).
_UPSAMPLER_CHANNELS = {"ltx": 8, "ltx2": 4}
UPSAMPLER_FAMILIES = tuple(_UPSAMPLER_CHANNELS)


def _upsampler(family: str):  # -> LTXLatentUpsamplerModel | LTX2LatentUpsamplerModel
    """The family's real latent upsampler class (2x in width and height) with tiny random weights."""
    import torch

    torch.manual_seed(0)
    if family == "ltx":
        from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

        model = LTXLatentUpsamplerModel(in_channels=8, mid_channels=32, num_blocks_per_stage=1)
    else:
        from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

        # LTX-2.x's own upsamplers are 2x with the rational resampler off (their configs).
        model = LTX2LatentUpsamplerModel(
            in_channels=4, mid_channels=32, num_blocks_per_stage=1, use_rational_resampler=False
        )
    return model.eval()


def build_tiny_upsampler(directory: Path, family: str = DEFAULT_FAMILY) -> Path:
    """Build (or reuse) the tiny random latent upsampler of ``family`` (``ltx``, ``ltx2``) in ``directory``,
    a diffusers model folder that ``from_pretrained`` loads like the real one; returns ``directory``."""
    directory = Path(directory)
    if family not in _UPSAMPLER_CHANNELS:
        raise ValueError(
            f"The tiny `{family}` model has no latent upsampler: only {', '.join(UPSAMPLER_FAMILIES)}."
        )
    if is_complete_upsampler(directory, family):
        return directory
    log.info("building the tiny latent upsampler in %s", directory)

    def write(tmp: Path) -> None:
        _upsampler(family).save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps({"version": TINY_VERSION, "family": family}), encoding="utf-8")

    return build_into(directory, write, lambda: is_complete_upsampler(directory, family))


def is_complete_upsampler(directory: Path, family: str) -> bool:
    """Whether ``directory`` holds a finished tiny upsampler of ``family`` and the current version."""
    try:
        marker = json.loads((directory / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        marker.get("version") == TINY_VERSION
        and marker.get("family") == family
        and (directory / "config.json").is_file()
    )
