"""What a LoRA costs per run, kept as an adapter or fused into the weights, on a tiny model.

Loads the preset, builds a tiny random LoRA (``generator.tiny_lora``), and times the same run without
the LoRA, with it as a peft adapter, and fused (``fuse_lora`` + ``unload_lora_weights``, what the worker
does), ``--runs`` times each; prints the medians, their ratios, and whether adapter and fused videos
are the same.

    python bench/bench_lora.py --preset tiny-wan --runs 5 --steps 10
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from generator.pipeline import VideoPipeline
from generator.tiny_lora import build_tiny_lora
from videobot.presets import plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny-wan")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        vp = VideoPipeline.load(args.preset, data_dir=Path(tmp), device=args.device)
        params = dataclasses.replace(plan(vp.preset, "a red boat", seed=1), num_inference_steps=args.steps)
        lora = build_tiny_lora(vp.pipe, Path(tmp) / "lora.safetensors")

        def timed(label: str) -> tuple[float, np.ndarray]:
            seconds, frames = [], None
            for _ in range(args.runs):
                start = time.perf_counter()
                frames = vp.run(params).frames
                seconds.append(time.perf_counter() - start)
            median = statistics.median(seconds)
            print(f"{label:8s} median {median:.3f} s  min {min(seconds):.3f}  max {max(seconds):.3f}")
            return median, frames  # type: ignore[return-value]

        plain, _ = timed("no LoRA")
        vp.pipe.load_lora_weights(str(lora), adapter_name="lora")
        adapter, adapter_frames = timed("adapter")
        vp.pipe.fuse_lora(adapter_names=["lora"])
        vp.pipe.unload_lora_weights()
        fused, fused_frames = timed("fused")
        print(f"adapter / no LoRA: {adapter / plain:.2f}   fused / no LoRA: {fused / plain:.2f}")
        print("adapter and fused videos identical:", bool(np.array_equal(adapter_frames, fused_frames)))


if __name__ == "__main__":
    main()
