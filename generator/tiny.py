"""A tiny random Wan pipeline built fully offline: for tests and for trying the bot without a GPU."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

# Bump when the architecture below changes so stale folders get rebuilt.
TINY_VERSION = 1
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


def _build_pipeline():  # -> diffusers.WanPipeline
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = _build_tokenizer()
    # Same tiny shapes as diffusers' own tests (tests/pipelines/wan/test_wan.py get_dummy_components).
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
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
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    for module in (vae, text_encoder, transformer):
        module.eval()  # fresh modules are in train mode: dropout would make outputs random
    return WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )


def is_complete(directory: Path) -> bool:
    """Whether ``directory`` holds a finished tiny model of the current version."""
    try:
        marker = json.loads((directory / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("version") == TINY_VERSION and (directory / "model_index.json").is_file()


def build_tiny_model(directory: Path) -> Path:
    """Build (or reuse) the tiny random Wan pipeline in ``directory``; returns ``directory``."""
    directory = Path(directory)
    if is_complete(directory):
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    log.info("building the tiny test model in %s", directory)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        _build_pipeline().save_pretrained(tmp)
        # The marker is written last: its presence means the save finished.
        (tmp / _MARKER).write_text(json.dumps({"version": TINY_VERSION}), encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp makes it private; it is a model folder like any other
        if directory.exists():
            shutil.rmtree(directory)  # an incomplete or outdated build
        try:
            tmp.rename(directory)
        except OSError:
            if not is_complete(directory):  # lost a race only if the winner's copy is complete
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory
