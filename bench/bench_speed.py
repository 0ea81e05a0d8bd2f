"""Speed options side by side: seconds per step, total, peak GPU memory, and how far the video moved.

Loads the model once per configuration (a cache hook or a compile cannot be undone), warms it up when the
option needs it (compile, caches), then runs the same prompt and seed ``--runs`` times. The first
configuration is the reference: each other one reports its step-time ratio to it and the PSNR of its frames
against the reference's frames (same seed; higher = closer; identical = inf), so "faster" and "what it
costs" come from the same run.

    python bench/bench_speed.py --model wan2.1-1.3b --runs 3 \\
        --configs "native" "step_cache=first_block" "step_cache=taylorseer" "step_cache=pab" "compile=regional"

A configuration is ``native`` (all defaults) or ``key=value[,key=value]`` over SpeedOptions' fields
(attention_backend, step_cache, compile, vae_slicing).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from generator.pipeline import ModelLoadError, VideoPipeline
from generator.speed import SpeedOptionError, SpeedOptions, apply_speed_options, warm_up
from videobot.presets import plan, resolve_preset


def parse(spec: str) -> SpeedOptions:
    if spec == "native":
        return SpeedOptions()
    kwargs: dict[str, object] = {}
    for part in spec.split(","):
        key, value = part.split("=", 1)
        kwargs[key] = value.lower() in ("1", "true", "yes") if key == "vae_slicing" else value
    return SpeedOptions(**kwargs)  # type: ignore[arg-type]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    ap.add_argument("--prompt", default="a red fox running through fresh snow, cinematic")
    ap.add_argument("--configs", nargs="+", default=["native", "step_cache=first_block", "step_cache=pab"])
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "videobot-bench")
    args = ap.parse_args()

    params = plan(resolve_preset(args.model), args.prompt, seed=1234)
    if args.steps:
        params = dataclasses.replace(params, num_inference_steps=args.steps)
    print(
        f"{args.model}: {params.num_frames} frames {params.width}x{params.height}, {params.num_inference_steps} "
        f"steps, {args.runs} runs per configuration; torch {torch.__version__}, "
        f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}"
    )
    reference: tuple[float, np.ndarray] | None = None
    print("| configuration | s/step min / median / max | total median | peak GPU | ratio | PSNR vs first |")
    print("|---|---:|---:|---:|---:|---:|")
    for spec in args.configs:
        options = parse(spec)
        try:
            vp = VideoPipeline.load(args.model, data_dir=args.data_dir)
            apply_speed_options(vp.pipe, vp.preset.family, options)
            warm = dataclasses.replace(params, num_inference_steps=2)
            warm_s = warm_up(lambda: vp.run(warm), options) if options.needs_warm_up else 0.0  # noqa: B023
        except (ModelLoadError, SpeedOptionError) as exc:
            print(f"| {spec} | not supported: {exc} | | | | |")
            continue
        per_step: list[float] = []
        totals: list[float] = []
        peak = 0
        frames = None
        for _ in range(args.runs):
            stamps: list[float] = []
            if torch.cuda.is_available():
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            frames = vp.run(params, on_step=lambda k, n: stamps.append(time.perf_counter()))  # noqa: B023
            totals.append(time.perf_counter() - t0)
            if len(stamps) > 1:
                per_step.append((stamps[-1] - stamps[0]) / (len(stamps) - 1))
            if torch.cuda.is_available():
                peak = max(peak, torch.cuda.max_memory_allocated())
        assert frames is not None
        median = statistics.median(per_step) if per_step else float("nan")
        if reference is None:
            reference = (median, frames)
        ratio = median / reference[0]
        quality = psnr(frames, reference[1])
        peak_text = f"{peak / 2**30:.1f} GiB" if peak else "n/a"
        warm_text = f" (warm-up {warm_s:.0f} s)" if warm_s else ""
        print(
            f"| {spec}{warm_text} | {min(per_step):.3f} / {median:.3f} / {max(per_step):.3f} | "
            f"{statistics.median(totals):.2f} s | {peak_text} | {ratio:.2f} | {quality:.1f} dB |"
        )
        vp.pipe = None  # let the next configuration have the memory
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
