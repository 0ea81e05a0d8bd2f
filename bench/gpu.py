"""GPU speed of each preset: plain diffusers defaults beside the worker's own path, with each speed option
and previews on and off, side by side in one run.

Every row builds the preset's full-size model with random weights (``bench/fullsize.py``: no download; the
time of a step does not depend on the weight values; step caches excepted, which skip steps when outputs
change little, which random weights do not reproduce: their rows say nothing about a real model's speed-up).

Rows per preset:

- ``diffusers-defaults``: the checkpoint's own pipeline class, every component in the preset's dtype (bf16),
  ``pipe.to(device)``, native attention, called with the model card's settings (the preset's size, frames,
  steps, guidance and schedule): what a diffusers user gets from the model card's example. The baseline.
  A fast variant's baseline has no LoRA (fused into the weights, a LoRA costs nothing per step).
- ``videobot``: ``VideoPipeline.load`` as the worker calls it (its pipeline class per verb, the float32 VAE
  where the preset has one, the preset's LoRAs fused, the memory options ``auto`` picks for this card when
  it picks this preset, else the preset's recommended ones), and each job through ``run_variations``.
- ``videobot+previews``: the same, with the worker's preview timer (``--preview-every`` seconds).
- ``videobot+<option>``: the same with one speed option on top.

Between rows the process-wide state is reset: diffusers' active attention backend and torch.compile's
caches (``fullsize.reset_process_state``). Per row: one warm-up job (2 steps; compiles and caches pay their
first-call cost there), then ``--runs`` timed jobs. Reported: median seconds per denoising step, median total
seconds (min-max), peak memory, and total / diffusers-defaults of the same preset in the same run.

    python bench/gpu.py --presets all --options all --runs 3 --out bench/gpu-results.md   # on a GPU
    python bench/gpu.py --smoke                                                          # CPU, tiny sizes
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import fullsize  # noqa: E402

BASELINE = "diffusers-defaults"
VIDEOBOT = "videobot"
PREVIEWS = "videobot+previews"
#: Option -> what it changes on top of ``videobot``: ("speed", SpeedOptions field, value) or ("memory", key, value).
OPTIONS: dict[str, tuple[str, str, Any]] = {
    "attention=flash": ("speed", "attention_backend", "flash"),
    "attention=sage": ("speed", "attention_backend", "sage"),
    "cache=first_block": ("speed", "step_cache", "first_block"),
    "cache=taylorseer": ("speed", "step_cache", "taylorseer"),
    "cache=pab": ("speed", "step_cache", "pab"),
    "compile=regional": ("speed", "compile", "regional"),
    "vae_slicing": ("speed", "vae_slicing", True),
    "vae_tiling": ("memory", "vae_tiling", True),
    "fp8": ("memory", "layerwise_fp8", True),
    "offload=none": ("memory", "offload", "none"),
}
#: The smoke run skips regional compile: on the CPU it spends a minute in the C++ compiler per model.
SMOKE_SKIP = {"compile=regional"}
PROMPT = "a red fox running through fresh snow at sunrise, cinematic, detailed fur"


@dataclass
class Row:
    preset: str
    option: str
    step_s: float | None = None
    total_s: list[float] = field(default_factory=list)
    peak_gb: float | None = None
    note: str = ""


# ------------------------------------------------------------------------------------------ the machine
def card_gb(device: Any) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.get_device_properties(device).total_memory / 1e9


def memory_options(name: str, device: Any) -> tuple[dict[str, Any], str]:
    """The memory options the worker runs ``name`` with on this card, and where they come from."""
    from videobot.autoplan import plan_auto
    from videobot.presets import PRESETS

    total = card_gb(device)
    if total is not None:
        chosen = plan_auto(total, "cuda")
        if chosen.model == name:
            return dict(chosen.options), f"auto's choice for {total:.0f} GB"
    options = {"offload": "none", "vae_tiling": False, "layerwise_fp8": False}
    options.update(PRESETS[name].memory_options)
    return options, "the preset's recommended options"


def job(preset: Any, *, tiny: bool, steps: int | None) -> Any:
    """The preset's default job (``videobot.presets.plan``), or a tiny valid one for the CPU."""
    from videobot.presets import plan

    params = plan(preset, PROMPT, seed=0)
    if tiny:
        side = max(preset.size_multiple * 2, 32)
        params = dataclasses.replace(
            params, width=side, height=side, num_frames=preset.min_frames, num_inference_steps=2
        )
    elif steps:
        params = dataclasses.replace(params, num_inference_steps=steps)
    return params


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_reset(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: Any) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB -> GB: the process's peak RSS


def free(device: Any) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------- runs
def timed(device: Any, go: Any) -> tuple[float, list[float]]:
    """Run ``go(mark)``; ``mark`` is called after each denoising step. Returns (total s, each step's s)."""
    marks: list[float] = []

    def mark(*_: Any) -> None:
        _sync(device)
        marks.append(time.perf_counter())

    _sync(device)
    t0 = time.perf_counter()
    go(mark)
    _sync(device)
    total = time.perf_counter() - t0
    return total, [b - a for a, b in zip([t0, *marks], marks, strict=False)]


def baseline_pipeline(preset: Any, device: Any, dtype: Any, *, tiny: bool, offload: str = "none") -> Any:
    """Plain diffusers: the checkpoint's class, every component in ``dtype``, all of it on ``device`` (or
    diffusers' ``enable_model_cpu_offload()``, as model cards do for models that do not fit)."""
    pipe = fullsize.random_pipeline(preset, dtype, tiny=tiny, fill_device=device)
    if offload == "model" and device.type == "cuda":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def baseline_call(pipe: Any, preset: Any, params: Any) -> Any:
    """The model card's call: prompt, size, frames, steps, guidance and the preset's schedule, nothing else."""
    import inspect

    import torch

    accepted = set(inspect.signature(pipe.__call__).parameters)
    kwargs = dict(
        prompt=params.prompt, negative_prompt=preset.negative_prompt or None, num_frames=params.num_frames,
        width=params.width, height=params.height, num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale, generator=torch.Generator("cpu").manual_seed(params.seed),
        output_type="np", frame_rate=params.fps, **preset.extra_call_kwargs,
    )  # fmt: skip
    for key in ("sigmas", "timesteps"):  # a distilled schedule is for its own step count
        if isinstance(kwargs.get(key), (list, tuple)) and len(kwargs[key]) != params.num_inference_steps:
            del kwargs[key]
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}

    def go(mark: Any) -> None:
        def on_step(p: Any, i: int, t: Any, kw: dict[str, Any]) -> dict[str, Any]:
            mark()
            return kw

        with torch.inference_mode():
            pipe(**kwargs, callback_on_step_end=on_step)

    return go


def videobot_pipeline(
    preset: Any, device: Any, *, tiny: bool, memory: dict[str, Any], speed: Any = None, workdir: Path
) -> Any:
    """The worker's ``VideoPipeline.load`` with ``memory`` options and ``speed`` options, random weights."""
    from generator.pipeline import VideoPipeline

    return VideoPipeline.load(
        preset, data_dir=workdir, device=str(device), speed=speed, build=fullsize.builder(tiny=tiny, fill_device=device),
        **memory,
    )  # fmt: skip


def videobot_call(pipeline: Any, params: Any, *, previews: float | None) -> Any:
    from generator.pipeline import run_variations
    from generator.preview import PreviewTimer

    def go(mark: Any) -> None:
        sink = PreviewTimer(previews) if previews is not None else None
        run_variations(pipeline, params, mark, previews=sink)
        go.previews = sink.count if sink is not None else None  # type: ignore[attr-defined]

    return go


def bench_one(name: str, option: str, args: argparse.Namespace, device: Any, workdir: Path) -> Row:
    import torch

    from generator.pipeline import ModelLoadError
    from generator.speed import SpeedOptions
    from videobot.presets import PRESETS

    tiny = args.smoke
    row = Row(name, option)
    fullsize.reset_process_state()
    preset = fullsize.bench_preset(name, workdir, tiny=tiny) if option != BASELINE else PRESETS[name]
    params = job(preset, tiny=tiny, steps=args.steps)
    warm = dataclasses.replace(params, num_inference_steps=2)
    pipe = None
    try:
        if option == BASELINE:
            dtype = torch.float32 if device.type == "cpu" else getattr(torch, preset.default_dtype)
            pipe = baseline_pipeline(preset, device, dtype, tiny=tiny, offload=args.baseline)
            go, warm_go = baseline_call(pipe, preset, params), baseline_call(pipe, preset, warm)
            where = "model offload" if args.baseline == "model" else f"all on {device.type}"
            row.note = f"{type(pipe).__name__}, {str(dtype).removeprefix('torch.')}, {where}"
        else:
            memory, source = memory_options(name, device)
            speed = SpeedOptions(vae_tiling=bool(memory["vae_tiling"]))
            kind, key, value = OPTIONS.get(option, ("", "", None))
            if kind == "memory":
                if memory.get(key) == value:
                    row.note = f"already on in `videobot` ({source})"
                    return row
                memory[key] = value
            elif kind == "speed":
                speed = dataclasses.replace(speed, **{key: value})
            try:
                pipe = videobot_pipeline(
                    preset, device, tiny=tiny, memory=memory, speed=speed, workdir=workdir
                )
            except ModelLoadError as exc:  # an option the family or this installation cannot honour
                row.note = f"refused: {str(exc).splitlines()[0][:160]}"
                return row
            every = args.preview_every if option == PREVIEWS else None
            go, warm_go = (
                videobot_call(pipe, params, previews=every),
                videobot_call(pipe, warm, previews=None),
            )
            opts = ", ".join(f"{k}={v}" for k, v in memory.items())
            row.note = f"{opts} ({source})"
        timed(device, warm_go)
        peak_reset(device)
        steps: list[float] = []
        for _ in range(args.runs):
            total, s = timed(device, go)
            row.total_s.append(total)
            steps += s
        row.step_s = statistics.median(steps) if steps else None
        row.peak_gb = peak_gb(device)
        if option == PREVIEWS:
            row.note += (
                f"; {getattr(go, 'previews', 0)} preview(s) in the last run, every {args.preview_every:g} s"
            )
        if option.startswith("cache="):
            row.note += "; random weights: not the real skip rate"
        row.note += f"; attention {fullsize.active_attention_backend()}"
    except Exception as exc:  # one failing combination must not lose the rest of the table
        kind = "out of memory" if isinstance(exc, torch.OutOfMemoryError) else type(exc).__name__
        row.note = f"failed: {kind}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        row.total_s = []
    finally:
        del pipe
        free(device)
    return row


def table(rows: list[Row], header: str) -> str:
    base = {r.preset: statistics.median(r.total_s) for r in rows if r.option == BASELINE and r.total_s}
    out = [header, "", "| preset | row | s/step | total s (median, min–max) | peak GB | × diffusers defaults | note |",
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
    ap.add_argument("--presets", default="all", help=f"comma list or all: {', '.join(fullsize.PRESETS)}")
    ap.add_argument(
        "--options", default="all", help=f"comma list or all: {', '.join(OPTIONS)} (plus previews)"
    )
    ap.add_argument("--runs", type=int, default=None, help="timed jobs per row (default 3; smoke 2)")
    ap.add_argument(
        "--steps", type=int, default=None, help="override every preset's step count (s/step stays comparable)"
    )
    ap.add_argument(
        "--preview-every",
        type=float,
        default=None,
        help="seconds between previews in the previews row (default: the worker's 10; smoke 0)",
    )
    ap.add_argument(
        "--baseline",
        choices=("none", "model"),
        default="none",
        help="where the baseline's model sits: all on the GPU (none), or diffusers' enable_model_cpu_offload "
        "(model), as model cards do for a model that does not fit the card in bf16",
    )
    ap.add_argument(
        "--smoke", action="store_true", help="tiny models on the CPU, float32: checks the code path"
    )
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    ap.add_argument(
        "--params", action="store_true", help="only print each full-size transformer's parameter count"
    )
    args = ap.parse_args(argv)  # fmt: skip
    if args.params:
        print("| preset | transformer (B params) | published |\n|---|---:|---:|")
        for name, billions in fullsize.parameter_counts().items():
            print(f"| {name} | {billions:.2f} | {fullsize.PUBLISHED_B[name]} |")
        return 0
    args.runs = args.runs or (2 if args.smoke else 3)
    if args.preview_every is None:
        args.preview_every = 0.0 if args.smoke else 10.0

    import torch

    presets = (
        list(fullsize.PRESETS) if args.presets == "all" else [p.strip() for p in args.presets.split(",")]
    )
    unknown = [p for p in presets if p not in fullsize.PRESETS]
    if unknown:
        ap.error(f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(fullsize.PRESETS)}")
    every = [PREVIEWS, *OPTIONS]
    options = every if args.options == "all" else [o.strip() for o in args.options.split(",") if o.strip()]
    unknown = [o for o in options if o not in every]
    if unknown:
        ap.error(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(every)}")
    if args.smoke:
        options = [o for o in options if o not in SMOKE_SKIP]
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA GPU here: run with --smoke for the CPU version")
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny tensors: more threads only spin on a shared machine

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="videobot-gpu-bench-") as tmp:
        for name in presets:
            for option in [BASELINE, VIDEOBOT, *options]:
                row = bench_one(name, option, args, device, Path(tmp))
                rows.append(row)
                shown = f"{statistics.median(row.total_s):.3f} s" if row.total_s else row.note
                print(f"{name:26s} {option:20s} {shown}", file=sys.stderr, flush=True)

    gpu = (
        f"{torch.cuda.get_device_name(device)} ({card_gb(device):.0f} GB)" if device.type == "cuda" else "CPU"
    )
    import diffusers

    header = (
        f"{'SMOKE (tiny models, not real figures)' if args.smoke else 'Full-size models, random weights'}: "
        f"{gpu}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"{args.runs} timed run(s) each after a warm-up"
        f"{f', {args.steps} steps per job' if args.steps and not args.smoke else ''}."
    )
    text = table(rows, header)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
