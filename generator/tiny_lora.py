"""A tiny random LoRA for a loaded pipeline, built offline with peft: what the tests load with
``VIDEOBOT_LORAS`` (the tiny models' counterpart of a style or step-distillation LoRA).

The LoRA covers the transformer's attention and output projections (``TARGET_MODULES``) and is saved the
way diffusers saves one (the family's ``save_lora_weights``), so ``load_lora_weights`` reads it like a
downloaded one. Its B matrices are random, not zero as in training's start, so it changes the output.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

#: Attention projections and the output projection, which every tiny family's transformer has (the
#: output projection too: tiny Wan's video hardly moves with its attention alone).
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "proj_out"]


def build_tiny_lora(
    pipe: Any,
    path: Path,
    *,
    rank: int = 4,
    seed: int = 0,
    strength: float = 8.0,
    targets: list[str] | None = None,
) -> Path:
    """Write a random LoRA for ``pipe``'s transformer to ``path`` (a ``.safetensors`` file); ``pipe``
    itself is left as it was. ``strength`` multiplies the random B matrices: random weights at peft's
    scale barely move a tiny random model's output. ``targets``: the layer names (default
    ``TARGET_MODULES``). Returns ``path``."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict

    transformer = copy.deepcopy(pipe.transformer)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank, lora_alpha=rank, target_modules=targets or TARGET_MODULES, init_lora_weights=False
    )
    transformer.add_adapter(config)
    layers = {
        key: value * strength if "lora_B" in key else value
        for key, value in get_peft_model_state_dict(transformer).items()
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(path.parent, transformer_lora_layers=layers, weight_name=path.name)
    return path


def place_in_hub_cache(file: Path, cache_dir: Path, repo_id: str, weight_name: str) -> Path:
    """Put ``file`` into a Hugging Face cache (``HF_HUB_CACHE`` layout: ``models--owner--repo/snapshots/
    <revision>/<weight_name>`` and ``refs/main``) as ``repo_id``'s ``weight_name``, so that
    ``hf_hub_download`` finds it offline (``HF_HUB_OFFLINE=1``) the way it finds a downloaded one: the
    tests' stand-in for a LoRA on the Hub. Returns the cached file."""
    import hashlib
    import shutil

    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    revision = hashlib.sha1(repo_id.encode()).hexdigest()  # any 40-hex commit id
    target = repo / "snapshots" / revision / weight_name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(file, target)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return target
