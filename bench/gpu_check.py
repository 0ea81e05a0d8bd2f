"""Is this GPU ready? The riskiest paths of the worker at full size with random weights, in priority order,
within a time budget: one ``RESULT <id> PASS|FAIL|SKIP <seconds>s <detail>`` line per check, then one
``SUMMARY {json}`` line.

No download: every model is built at full size from the configs in ``bench/fullsize.py`` (random weights;
the time and memory of a job do not depend on their values), and everything after that is the worker's own
``VideoPipeline.load`` / ``run_variations``. No new check starts once ``--budget`` seconds have passed; the
ones left are reported as SKIP. PyAV is not needed (nothing is encoded).

Checks, in order (``--list`` prints them):
  auto-text, auto-image, auto-extend   the preset and memory options ``auto`` picks for this card, each verb;
                                       peak memory (reserved) against the README's figure for that tier
  auto-keyframes                       the same model: a first and an end picture (the video ends on the end
                                       picture), then a loop without a picture (two passes; ends where it starts)
  previews-same-video                  the same job with a preview after every step: same frames, previews made
  variations-batch                     2 variations in one batch: 2 different videos; peaks of 1 and 2 videos
  variations-oom                       the process capped between those peaks: a real CUDA out-of-memory,
                                       then the two videos one at a time
  offload-model / -sequential / -group each offload mode with previews on
  fp8-compile                          fp8 storage + regional compile (compiled at load, then a job)
  flash-<family>                       VIDEOBOT_ATTENTION_BACKEND=flash: runs on Wan where flash-attn is
                                       installed; refused at start (naming the setting) on LTX, LTX-2, CogVideoX
  wan22-vae-tiling                     Wan 2.2's VAE decoding a default-size clip with tiling off and on: peaks

    python bench/gpu_check.py --budget 400            # on the GPU machine
    python bench/gpu_check.py --smoke                 # the same code on tiny models on the CPU (CI)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import fullsize  # noqa: E402
import gpu  # noqa: E402

log = logging.getLogger("gpu_check")
#: Card memory the smoke run plans for: an H100's, so it runs the preset the GPU run will.
SMOKE_CARD_GB = 80.0
#: The small model of the variations, offload, compile and flash checks (batch_cap 4, text only, fast).
SMALL = "wan2.1-1.3b"
#: Steps of a job in the checks after the auto path: enough for a preview between two steps (memory peaks
#: do not depend on the step count).
FEW_STEPS = 3


class Skip(Exception):
    """This check cannot run here; the message says why."""


@dataclass
class Result:
    id: str
    status: str
    seconds: float
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    device: Any
    tiny: bool
    card_gb: float | None
    workdir: Path
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


# ------------------------------------------------------------------------------------------------ helpers
def load(
    ctx: Context, name: str, memory: dict[str, Any] | None = None, speed: Any = None, *, tiny: bool = False
) -> Any:
    """``name`` loaded as the worker loads it, full size (tiny in the smoke run, or with ``tiny``)."""
    fullsize.reset_process_state()
    options = {"offload": "none", "vae_tiling": False, "layerwise_fp8": False, **(memory or {})}
    tiny = tiny or ctx.tiny
    preset = fullsize.bench_preset(name, ctx.workdir, tiny=tiny)
    return gpu.videobot_pipeline(
        preset, ctx.device, tiny=tiny, memory=options, speed=speed, workdir=ctx.workdir
    )


def small_job(ctx: Context, preset: Any, **changes: Any) -> Any:
    params = gpu.job(preset, tiny=ctx.tiny, steps=None)
    if not ctx.tiny:
        params = dataclasses.replace(params, num_inference_steps=FEW_STEPS)
    return dataclasses.replace(params, **changes)


def peak(ctx: Context) -> float | None:
    import torch

    return torch.cuda.max_memory_reserved(ctx.device) / 1e9 if ctx.cuda else None


def reset_peak(ctx: Context) -> None:
    gpu.free(ctx.device)
    gpu.peak_reset(ctx.device)


def render(ctx: Context, pipeline: Any, params: Any, **inputs: Any) -> list[Any]:
    """``run_variations`` as the worker calls it; the videos made (uint8 frames), in order."""
    from generator.pipeline import run_variations

    made = run_variations(pipeline, params, None, **inputs)
    missing = [v.index for v in made if v.output is None]
    if missing:
        raise AssertionError(
            f"variation(s) {missing} not made: {[v.error for v in made if v.output is None]}"
        )
    return [v.output for v in made]


def expect_video(out: Any, params: Any, frames: int | None = None) -> str:
    import numpy as np

    shape = out.frames.shape
    want = (frames or params.num_frames, params.height, params.width, 3)
    if shape != want:
        raise AssertionError(f"video {shape}, expected {want}")
    if not np.isfinite(out.frames.astype(np.float32)).all():
        raise AssertionError("the video has non-finite pixels")
    sound = ""
    if params.audio:
        if out.audio is None or not out.audio.size:
            raise AssertionError("no soundtrack although the job asked for one")
        sound = f", sound {out.audio.shape[0]} ch x {out.audio.shape[1]} at {out.audio_sample_rate} Hz"
    return f"{shape[0]} frames {shape[2]}x{shape[1]}{sound}"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# ------------------------------------------------------------------------------------------------- checks
def _auto(ctx: Context) -> tuple[Any, Any]:
    """The auto plan for this card (an H100's in the smoke run) and its loaded pipeline (built once)."""
    from videobot.autoplan import plan_auto

    if "auto" not in ctx.cache:
        chosen = plan_auto(SMOKE_CARD_GB if ctx.tiny else ctx.card_gb, "cuda")
        reset_peak(ctx)
        t0 = time.monotonic()
        pipeline = load(ctx, chosen.model, chosen.options)
        ctx.cache["auto"] = (chosen, pipeline, time.monotonic() - t0)
    chosen, pipeline, _ = ctx.cache["auto"]
    return chosen, pipeline


def _auto_verb(verb: str) -> Callable[[Context], tuple[str, dict[str, Any]]]:
    def check(ctx: Context) -> tuple[str, dict[str, Any]]:
        from PIL import Image

        chosen, pipeline = _auto(ctx)
        if verb not in pipeline.verbs:
            raise Skip(f"`{chosen.model}` has no `{verb}`")
        params = dataclasses.replace(gpu.job(pipeline.preset, tiny=ctx.tiny, steps=None), verb=verb)
        inputs: dict[str, Any] = {}
        frames = None
        if verb == "image":
            inputs["image"] = Image.linear_gradient("L").convert("RGB").resize((params.width, params.height))
        if verb == "extend":
            source = ctx.cache.get("auto-text-video")
            if source is None:
                raise Skip("auto-text made no clip to extend")
            params = dataclasses.replace(params, num_frames=pipeline.preset.extend_window)
            inputs["video"] = source.frames
            frames = len(source.frames) + pipeline.preset.extend_frames
        reset_peak(ctx)
        t0 = time.monotonic()
        out = render(ctx, pipeline, params, **inputs)[0]
        seconds = time.monotonic() - t0
        if verb == "text":
            ctx.cache["auto-text-video"] = out
            ctx.cache["auto-text-params"] = params
        what = expect_video(out, params, frames)
        used = peak(ctx)
        data = {"preset": chosen.model, "options": chosen.options, "render_s": round(seconds, 2),
                "load_s": round(ctx.cache["auto"][2], 1), "peak_reserved_gb": used, "readme_gb": chosen.gb}  # fmt: skip
        detail = f"{chosen.model} ({chosen.describe_options()}): {what} in {seconds:.1f} s"
        if used is None:
            return detail + "; peak memory not measured on the CPU", data
        detail += f"; peak {used:.1f} GB reserved vs README {chosen.gb:g} GB"
        if chosen.gb is not None and used > chosen.gb:
            raise AssertionError(
                detail + ": over the README's figure (correct the tier's figure in videobot/autoplan.py)"
            )
        return detail, data

    return check


def auto_keyframes(ctx: Context) -> tuple[str, dict[str, Any]]:
    """``/video image: end_image:`` and ``/video loop:`` on the model ``auto`` picks, as the worker runs them."""
    import numpy as np
    from PIL import Image

    chosen, pipeline = _auto(ctx)
    if not {"keyframes", "loop"} <= pipeline.preset.verbs:
        raise Skip(f"`{chosen.model}` has no keyframes / loop")
    params = dataclasses.replace(
        gpu.job(pipeline.preset, tiny=ctx.tiny, steps=None), verb="image", image="first", end_image="end"
    )
    size = (params.width, params.height)
    first = Image.linear_gradient("L").convert("RGB").resize(size)
    end = Image.new("RGB", size, (30, 60, 200))
    reset_peak(ctx)
    t0 = time.monotonic()
    out = render(ctx, pipeline, params, image=first, end_image=end)[0]
    end_s = time.monotonic() - t0
    what = expect_video(out, params)
    if not np.array_equal(out.frames[-1], np.asarray(end)):
        raise AssertionError("the video does not end on the end picture")
    looped = dataclasses.replace(params, verb="text", image=None, end_image=None, loop=True)
    t0 = time.monotonic()
    loop = render(ctx, pipeline, looped)[0]
    loop_s = time.monotonic() - t0
    expect_video(loop, looped)
    if not np.array_equal(loop.frames[0], loop.frames[-1]):
        raise AssertionError("the loop does not end on its first frame")
    used = peak(ctx)
    data = {
        "preset": chosen.model,
        "end_s": round(end_s, 2),
        "loop_s": round(loop_s, 2),
        "peak_reserved_gb": used,
    }
    detail = f"{chosen.model}: end picture {what} in {end_s:.1f} s; loop (2 passes) in {loop_s:.1f} s"
    if used is not None:
        detail += f"; peak {used:.1f} GB reserved vs README {chosen.gb:g} GB"
        if chosen.gb is not None and used > chosen.gb:
            raise AssertionError(detail + ": over the README's figure")
    return detail, data


def previews_same_video(ctx: Context) -> tuple[str, dict[str, Any]]:
    import numpy as np

    from generator.preview import PreviewTimer

    chosen, pipeline = _auto(ctx)
    params = ctx.cache.get("auto-text-params")
    plain = ctx.cache.get("auto-text-video")
    if plain is None:
        raise Skip("auto-text did not run")
    sink = PreviewTimer(0.0)  # as often as the worker's 4 % cap allows
    shown = render(ctx, pipeline, params, previews=sink)[0]
    if sink.count == 0:
        raise AssertionError(
            f"no preview in {params.num_inference_steps} steps ({pipeline.preview_plan().why})"
        )
    diff = int(np.abs(shown.frames.astype(np.int16) - plain.frames.astype(np.int16)).max())
    if diff:
        raise AssertionError(f"previews changed the video: max pixel difference {diff}")
    method = pipeline.preview_plan().method
    return f"{sink.count} preview(s) ({method}), frames identical to the run without", {
        "previews": sink.count
    }


def _small(ctx: Context) -> Any:
    if "small" not in ctx.cache:
        ctx.cache.pop("auto", None)  # the big model leaves memory for the rest
        gpu.free(ctx.device)
        ctx.cache["small"] = load(ctx, SMALL)
    return ctx.cache["small"]


def variations_batch(ctx: Context) -> tuple[str, dict[str, Any]]:
    import numpy as np

    pipeline = _small(ctx)
    one = small_job(ctx, pipeline.preset)
    reset_peak(ctx)
    render(ctx, pipeline, one)
    peak1 = peak(ctx)
    reset_peak(ctx)
    two = render(ctx, pipeline, dataclasses.replace(one, num_videos=2))
    peak2 = peak(ctx)
    if np.array_equal(two[0].frames, two[1].frames):
        raise AssertionError("the two variations are the same video")
    ctx.cache["peaks"] = (peak1, peak2, one, two)
    shown = f"; peak 1 video {peak1:.1f} GB, 2 videos {peak2:.1f} GB" if peak1 is not None else ""
    return f"2 different videos in one batch{shown}", {"peak1_gb": peak1, "peak2_gb": peak2}


def variations_oom(ctx: Context) -> tuple[str, dict[str, Any]]:
    import numpy as np
    import torch

    if not ctx.cuda:
        raise Skip("a real CUDA out-of-memory needs a CUDA device")
    if "peaks" not in ctx.cache:
        raise Skip("variations-batch did not run")
    peak1, peak2, one, two = ctx.cache["peaks"]
    if peak2 <= peak1:
        raise AssertionError(f"2 videos did not need more memory than 1 ({peak2:.2f} <= {peak1:.2f} GB)")
    pipeline = _small(ctx)
    cap = (peak1 + peak2) / 2
    records = _Records()
    logging.getLogger("generator.pipeline").addHandler(records)
    gpu.free(ctx.device)
    torch.cuda.set_per_process_memory_fraction(cap / ctx.card_gb, ctx.device)
    try:
        alone = render(ctx, pipeline, dataclasses.replace(one, num_videos=2))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, ctx.device)
        logging.getLogger("generator.pipeline").removeHandler(records)
    fell_back = any("one at a time" in m for m in records.messages)
    if not fell_back:
        raise AssertionError(f"no out-of-memory at a cap of {cap:.1f} GB: the batch fitted")
    diff = [
        float(np.abs(a.frames.astype(np.float32) - b.frames.astype(np.float32)).mean())
        for a, b in zip(alone, two, strict=True)
    ]
    return (
        f"capped at {cap:.1f} GB: the batch ran out of memory, both videos made one at a time "
        f"(mean pixel difference to the batched ones {max(diff):.2f})",
        {"cap_gb": cap, "mean_diff": diff},
    )


def _offload(mode: str) -> Callable[[Context], tuple[str, dict[str, Any]]]:
    def check(ctx: Context) -> tuple[str, dict[str, Any]]:
        from generator.preview import PreviewTimer

        if not ctx.cuda:
            raise Skip("offload needs a CUDA device (the worker ignores it on the CPU)")
        ctx.cache.pop("small", None)
        gpu.free(ctx.device)
        pipeline = load(ctx, SMALL, {"offload": mode})
        # A short, small clip: every layer still moves between CPU and GPU at each step (sequential is slow).
        size = {} if ctx.tiny else {"width": 416, "height": 240}
        params = small_job(ctx, pipeline.preset, num_frames=pipeline.preset.min_frames, **size)
        reset_peak(ctx)
        sink = PreviewTimer(0.0)
        out = render(ctx, pipeline, params, previews=sink)[0]
        used = peak(ctx)
        del pipeline
        gpu.free(ctx.device)
        if sink.count == 0:
            raise AssertionError(f"offload={mode}: no preview in {params.num_inference_steps} steps")
        return f"{expect_video(out, params)}, {sink.count} preview(s), peak {used:.1f} GB", {"peak_gb": used}

    return check


def fp8_compile(ctx: Context) -> tuple[str, dict[str, Any]]:
    from generator.speed import SpeedOptions

    if ctx.tiny:
        raise Skip("regional compile on a CPU spends minutes in the C++ compiler; the GPU run checks it")
    ctx.cache.pop("small", None)
    gpu.free(ctx.device)
    t0 = time.monotonic()
    pipeline = load(ctx, SMALL, {"layerwise_fp8": True}, SpeedOptions(compile="regional"))
    loaded = time.monotonic() - t0
    params = small_job(ctx, pipeline.preset)
    t0 = time.monotonic()
    out = render(ctx, pipeline, params)[0]
    del pipeline
    fullsize.reset_process_state()
    return (
        f"{expect_video(out, params)}; load with compile {loaded:.0f} s, job {time.monotonic() - t0:.1f} s",
        {},
    )


def _flash(family: str, preset: str) -> Callable[[Context], tuple[str, dict[str, Any]]]:
    def check(ctx: Context) -> tuple[str, dict[str, Any]]:
        from generator.pipeline import ModelLoadError
        from generator.speed import _NATIVE_ATTENTION_ONLY, SpeedOptions, _installed_backend

        speed = SpeedOptions(attention_backend="flash")
        if family in _NATIVE_ATTENTION_ONLY:  # refused whether flash-attn is installed or not
            try:  # the refusal does not depend on the model's size: tiny weights, on the real device
                load(ctx, preset, speed=speed, tiny=True)
            except ModelLoadError as exc:
                if "VIDEOBOT_ATTENTION_BACKEND" not in str(exc) or family not in str(exc):
                    raise AssertionError(f"refused without naming the setting and family: {exc}") from None
                return f"refused at start (tiny weights on {ctx.device.type}): {str(exc)[:110]}", {}
            raise AssertionError(f"flash was accepted for {family}, whose attention it cannot run")
        if not _installed_backend("flash"):
            raise Skip("flash-attn is not installed")
        ctx.cache.pop("small", None)
        gpu.free(ctx.device)
        pipeline = load(ctx, preset, speed=speed)
        params = small_job(ctx, pipeline.preset, num_inference_steps=2)
        out = render(ctx, pipeline, params)[0]
        backend = fullsize.active_attention_backend()
        del pipeline
        fullsize.reset_process_state()
        return f"{expect_video(out, params)} with attention {backend}", {}

    return check


def wan22_vae_tiling(ctx: Context) -> tuple[str, dict[str, Any]]:
    import torch

    from videobot.presets import PRESETS

    ctx.cache.clear()
    gpu.free(ctx.device)
    preset = PRESETS["wan2.2-ti2v-5b"]
    dtype = torch.float32  # the worker's Wan VAE (component_dtypes)
    if ctx.tiny:
        vae = fullsize.random_pipeline(preset, dtype, tiny=True).vae
    else:
        vae = fullsize.materialise(*fullsize.FULL[preset.name]["vae"], dtype, fill_device=ctx.device)
    vae.to(ctx.device)
    params = gpu.job(preset, tiny=ctx.tiny, steps=None)
    cfg = vae.config
    shape = (1, cfg.z_dim, (params.num_frames - 1) // cfg.scale_factor_temporal + 1,
             params.height // cfg.scale_factor_spatial, params.width // cfg.scale_factor_spatial)  # fmt: skip
    z = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(ctx.device, dtype)
    peaks: dict[str, Any] = {}
    for tiling in (False, True):
        vae.enable_tiling() if tiling else vae.disable_tiling()
        reset_peak(ctx)
        t0 = time.monotonic()
        try:
            with torch.inference_mode():
                video = vae.decode(z).sample
            peaks[f"tiling_{'on' if tiling else 'off'}"] = (peak(ctx), round(time.monotonic() - t0, 2))
            frames = video.shape[2]
            del video
        except torch.OutOfMemoryError:
            if tiling:
                raise
            peaks["tiling_off"] = ("out of memory", None)
        gpu.free(ctx.device)
    size = f"{params.width}x{params.height}x{frames}"
    on, off = peaks["tiling_on"], peaks["tiling_off"]
    if on[0] is None:
        return f"{size} decoded with tiling off and on; peak memory not measured on the CPU", {}
    if isinstance(off[0], float) and on[0] >= off[0]:
        raise AssertionError(f"tiling did not lower the peak: {on[0]:.1f} GB vs {off[0]:.1f} GB")
    shown_off = f"{off[0]:.1f} GB in {off[1]} s" if isinstance(off[0], float) else off[0]
    return f"{size}: tiling off {shown_off}, on {on[0]:.1f} GB in {on[1]} s", {"peaks": peaks}


CHECKS: tuple[tuple[str, Callable[[Context], tuple[str, dict[str, Any]]]], ...] = (
    ("auto-text", _auto_verb("text")),
    ("auto-image", _auto_verb("image")),
    ("auto-extend", _auto_verb("extend")),
    ("auto-keyframes", auto_keyframes),
    ("previews-same-video", previews_same_video),
    ("variations-batch", variations_batch),
    ("variations-oom", variations_oom),
    ("offload-model", _offload("model")),
    ("offload-sequential", _offload("sequential")),
    ("offload-group", _offload("group")),
    ("fp8-compile", fp8_compile),
    ("flash-wan", _flash("wan", SMALL)),
    ("flash-wan22", _flash("wan22", "wan2.2-ti2v-5b")),
    ("flash-ltx", _flash("ltx", "ltx-video")),
    ("flash-ltx2", _flash("ltx2", "ltx-2.3-distilled")),
    ("flash-cogvideox", _flash("cogvideox", "cogvideox-2b")),
    ("wan22-vae-tiling", wan22_vae_tiling),
)


def run_checks(ctx: Context, budget: float, only: set[str] | None = None) -> list[Result]:
    started = time.monotonic()
    results = []
    for check_id, check in CHECKS:
        if only and check_id not in only:
            continue
        spent = time.monotonic() - started
        if spent >= budget:
            result = Result(check_id, "SKIP", 0.0, f"budget spent ({spent:.0f} of {budget:.0f} s)")
        else:
            t0 = time.monotonic()
            try:
                detail, data = check(ctx)
                result = Result(check_id, "PASS", 0.0, detail, data)
            except Skip as why:
                result = Result(check_id, "SKIP", 0.0, str(why))
            except Exception as exc:  # a failed check is a result, not the end of the run
                log.debug("%s failed", check_id, exc_info=True)
                first = (str(exc).splitlines() or [""])[0][:300]
                result = Result(check_id, "FAIL", 0.0, f"{type(exc).__name__}: {first}")
            result.seconds = round(time.monotonic() - t0, 1)
        print(f"RESULT {result.id} {result.status} {result.seconds:.1f}s {result.detail}", flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--budget", type=float, default=400.0, help="start no check after this many seconds (400)"
    )
    ap.add_argument("--smoke", action="store_true", help="tiny models on the CPU: the same code, for CI")
    ap.add_argument("--only", default="", help="comma list of check ids to run (default: all)")
    ap.add_argument("--list", action="store_true", help="print the check ids in order and exit")
    ap.add_argument("--json", type=Path, default=None, help="also write the summary here")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(check_id for check_id, _ in CHECKS))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import torch

    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA GPU here: run with --smoke for the CPU version")
    if device.type == "cpu":
        torch.set_num_threads(1)
    only = {c.strip() for c in args.only.split(",") if c.strip()} or None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="videobot-gpu-check-") as tmp:
        ctx = Context(device, args.smoke, gpu.card_gb(device), Path(tmp))
        results = run_checks(ctx, args.budget, only)
        ctx.cache.clear()
    import diffusers

    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "card_gb": ctx.card_gb,
        "smoke": args.smoke,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "budget_s": args.budget,
        "elapsed_s": round(time.monotonic() - started, 1),
        "counts": {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")},
        "results": [dataclasses.asdict(r) for r in results],
    }
    text = json.dumps(summary, default=str)
    print(f"SUMMARY {text}", flush=True)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 1 if summary["counts"]["FAIL"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
