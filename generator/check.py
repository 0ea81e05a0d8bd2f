"""``videobot check``: what this machine will run and whether it will work, before going live.

Prints torch/CUDA versions, the GPU and its memory, the model ``auto`` picks and why, the memory
options, the attention backends, whether the model is in the Hugging Face cache and the disk it needs,
and the licence to accept. Every line that says something will not work ends with its fix; the exit
status is 1 when there is one. ``--assume-gpu-gb N`` plans for a card of N GB on any machine;
``--run`` renders a 2-step job and prints seconds per step and peak memory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from videobot.autoplan import AutoPlan, explicit_settings

#: Families whose transformers always pass an attention mask, which diffusers' flash and sage backends
#: refuse (``attention_dispatch.py``); CogVideoX's processor calls PyTorch directly.

#: Disk the download takes (GB): weights at their stored precision; "estimate" until measured.
DOWNLOAD_GB: dict[str, float] = {
    "diffusers/LTX-2.3-Distilled-Diffusers": 70.0,  # 22B bf16 44 GB + Gemma 3 12B 24 GB + VAEs
    "Lightricks/LTX-2": 64.0,  # 19B bf16 38 GB + Gemma 3 12B 24 GB + VAEs
    "Lightricks/LTX-Video-0.9.8-13B-distilled": 37.0,  # 13B bf16 26 GB + T5-XXL encoder 9.5 GB + VAE
    "Lightricks/LTX-Video-0.9.7-distilled": 37.0,
    "Lightricks/LTX-Video": 15.0,  # 2B + T5-XXL encoder + VAE
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": 18.0,  # 1.3B fp32 + UMT5-XXL bf16 + VAE
    "Wan-AI/Wan2.2-TI2V-5B-Diffusers": 24.0,  # 5B bf16 + UMT5-XXL + VAE
    "THUDM/CogVideoX-2b": 13.0,
    "THUDM/CogVideoX-5b": 21.0,
    "THUDM/CogVideoX-5b-I2V": 21.0,
    "zai-org/CogVideoX-2b": 13.0,  # the same repositories under their current names
    "zai-org/CogVideoX-5b": 21.0,
    "zai-org/CogVideoX-5b-I2V": 21.0,
}

#: What an owner accepts by running a family's weights (read the model card before going live).
LICENCES: dict[str, str] = {
    "ltx2": "LTX-2 Community License (Lightricks): free only for organisations below USD 10M annual revenue, "
    "with use restrictions; above that you need a commercial licence from Lightricks",
    "ltx": "Lightricks' LTX-Video licence on the model card (the 13B 0.9.7/0.9.8 weights: LTXV Open Weights "
    "License, with revenue and use terms): read it before going live",
    "wan": "Apache-2.0 (Wan-AI model card)",
    "wan22": "Apache-2.0 (Wan-AI model card)",
    "cogvideox": "CogVideoX-2b: Apache-2.0; CogVideoX-5b / 5b-I2V: the CogVideoX License (commercial use needs "
    "registration): read the model card",
}


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def say(self, label: str, text: str) -> None:
        self.lines.append(f"{label:<18} {text}")

    def problem(self, text: str) -> None:
        self.problems.append(text)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def installed_backends() -> list[str]:
    """Attention backends diffusers can use here (native always; flash, sage when their package is there)."""
    from generator.speed import _installed_backend

    return ["native", *(b for b in ("flash", "sage") if _installed_backend(b))]


def attention_choice(
    setting: str, family: str, cuda: bool, dtype_setting: str, installed: list[str]
) -> tuple[str, str | None]:
    """The backend that will run for VIDEOBOT_ATTENTION_BACKEND=``setting``, and a problem (with its fix):
    the worker's own rule (``generator.speed.choose_attention_backend``) for the device and dtype it runs in."""
    import torch

    from generator.speed import SpeedOptionError, choose_attention_backend

    dtype = {"float16": torch.float16, "float32": torch.float32}.get(dtype_setting, torch.bfloat16)
    try:
        backend = choose_attention_backend(
            family,
            setting,
            "cuda" if cuda else "cpu",
            dtype if cuda else torch.float32,
            installed=lambda name: name in installed,
        )
    except SpeedOptionError as exc:
        return "native", str(exc)
    return backend, None


def _cache_line(repo_id: str, report: Report) -> None:
    """Whether ``repo_id`` is in the Hugging Face cache, the disk it needs, and the free disk there."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache_dir = Path(constants.HF_HUB_CACHE)
    try:
        cached = {r.repo_id: r for r in scan_cache_dir(cache_dir).repos if r.repo_type == "model"}
    except CacheNotFound:
        cached = {}
    repo = cached.get(repo_id)
    need_gb = DOWNLOAD_GB.get(repo_id)
    source = "estimate"
    if need_gb is None and not constants.HF_HUB_OFFLINE:
        need_gb, source = _hub_size_gb(repo_id), "Hub metadata"
    need = f"~{need_gb:.0f} GB ({source})" if need_gb is not None else "unknown (offline, no figure for it)"
    probe = cache_dir if cache_dir.exists() else _existing_parent(cache_dir)
    free_gb = shutil.disk_usage(probe).free / 1e9
    if repo is not None:
        report.say(
            "model files", f"in the Hugging Face cache ({repo.size_on_disk / 1e9:.1f} GB at {repo.repo_path})"
        )
        return
    report.say(
        "model files", f"not in the cache ({cache_dir}): the download needs {need}; {free_gb:.0f} GB free"
    )
    if constants.HF_HUB_OFFLINE:
        report.problem(
            f"`{repo_id}` is not in the Hugging Face cache and HF_HUB_OFFLINE is set: unset it once so the "
            "model can download (or copy the cache from another machine)"
        )
    if need_gb is not None and free_gb < need_gb:
        report.problem(
            f"`{repo_id}` needs ~{need_gb:.0f} GB of disk and {probe} has {free_gb:.0f} GB free: free some "
            "space or point HF_HOME at a larger disk"
        )


def _existing_parent(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path("/")


def _hub_size_gb(repo_id: str) -> float | None:
    """The repository's file sizes from the Hub (online only); None when it cannot be asked."""
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo_id, files_metadata=True, timeout=10)
    except Exception:
        return None
    sizes = [s.size or 0 for s in info.siblings or ()]
    return sum(sizes) / 1e9 if sizes else None


def _run_steps(plan: AutoPlan, settings: Any, report: Report) -> None:
    """Render a 2-step job with the planned model; print seconds per step and peak memory."""
    import resource

    import torch

    from generator.pipeline import ModelLoadError, VideoPipeline
    from generator.speed import SpeedOptions
    from videobot.autoplan import explicit_memory_options
    from videobot.presets import plan as plan_request

    try:
        start = time.perf_counter()
        pipeline = VideoPipeline.load(
            settings.model,
            data_dir=settings.data_dir,
            device=settings.device,
            dtype=settings.dtype,
            **explicit_memory_options(settings),
            speed=SpeedOptions.from_settings(settings),
        )
    except ModelLoadError as exc:
        report.problem(f"the model did not load: {exc}")
        return
    report.say("load", f"{time.perf_counter() - start:.1f} s")
    params = replace(
        plan_request(pipeline.preset, "a red fox running through fresh snow", seed=0), num_inference_steps=2
    )
    if pipeline.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(pipeline.device)
    stamps = [time.perf_counter()]
    if params.verb == "image":
        from PIL import Image

        inputs: dict[str, Any] = {"image": Image.new("RGB", (params.width, params.height), (120, 90, 60))}
    else:
        inputs = {}
    try:
        pipeline.run(params, lambda step, total: stamps.append(time.perf_counter()), **inputs)
    except Exception as exc:  # an owner's check: say what broke rather than a traceback
        report.problem(
            f"the 2-step run failed ({type(exc).__name__}: {exc}): see the log above; "
            "try VIDEOBOT_OFFLOAD=model or a smaller model"
        )
        return
    end = time.perf_counter()
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    per_step = ", ".join(f"{s:.2f}" for s in steps)
    report.say(
        "2-step run",
        f"{params.width}x{params.height}x{params.num_frames}: steps {per_step} s; whole run "
        f"{end - stamps[0]:.1f} s (text encoding and decode included)",
    )
    if pipeline.device.type == "cuda":
        report.say(
            "peak memory", f"{torch.cuda.max_memory_allocated(pipeline.device) / 1e9:.1f} GB on the GPU"
        )
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        report.say("peak memory", f"{peak_kib / 1e6:.2f} GB of process memory (CPU)")


def check(settings: Any, *, assume_gpu_gb: float | None = None, run: bool = False) -> Report:
    """Everything ``videobot check`` prints, and the problems (each ending with its fix)."""
    import torch

    from generator.machine import Machine, auto_plan, detect
    from generator.preview import preview_plan
    from videobot.errors import InvalidParameters
    from videobot.presets import resolve_preset, tiny_family

    report = Report()
    cuda_build = torch.version.cuda or "none (CPU-only build)"
    report.say(
        "versions",
        f"torch {torch.__version__}, CUDA {cuda_build}, diffusers {_version('diffusers') or 'MISSING'}",
    )
    if _version("diffusers") is None:
        report.problem("diffusers is not installed: `pip install -e .` in the videobot folder")
    if assume_gpu_gb is not None:
        machine = Machine("cuda", f"assumed {assume_gpu_gb:g} GB card (--assume-gpu-gb)", assume_gpu_gb)
        report.say("GPU", f"{machine.name}; not measured")
    else:
        machine = detect(settings.device)
        if machine.kind == "cuda":
            report.say("GPU", f"{machine.name}, {machine.total_gb:.1f} GB")
        else:
            why = "torch has no CUDA build" if torch.version.cuda is None else "torch sees no CUDA GPU"
            report.say("GPU", f"none ({why}); device {settings.device}")
    plan = auto_plan(explicit_settings(settings), settings.device, machine)
    report.say("model", f"{plan.model}: {plan.reason}")
    report.problems.extend(plan.problems)
    try:
        preset = resolve_preset(plan.model)
    except InvalidParameters as exc:
        report.problem(f"{exc} (VIDEOBOT_MODEL)")
        return report
    need = f"; needs ~{plan.gb:g} GB ({plan.source})" if plan.gb else ""
    report.say("memory options", plan.describe_options() + need)
    shown = preview_plan(preset.family, plan.options["offload"])
    report.say("previews", ("on: " if shown.method else "off: ") + shown.why)
    installed = installed_backends()
    will_run, problem = attention_choice(
        settings.attention_backend, preset.family, machine.kind == "cuda", settings.dtype, installed
    )
    report.say(
        "attention",
        f"installed: {', '.join(installed)}; VIDEOBOT_ATTENTION_BACKEND={settings.attention_backend} runs {will_run}",
    )
    if problem:
        report.problem(problem)
    if tiny_family(preset) is not None:
        report.say("model files", "built in (tiny random weights, made offline under VIDEOBOT_DATA_DIR)")
        report.say("licence", "none (random weights made on this machine)")
    else:
        source = preset.repo_id or plan.model
        if Path(source).expanduser().is_dir():
            report.say("model files", f"local folder {source}")
        else:
            _cache_line(source, report)
        report.say("licence", LICENCES.get(preset.family, "read the model card of " + source))
    if run:
        _run_steps(plan, settings, report)
    return report


def _positive_gb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 4096:
        raise argparse.ArgumentTypeError(f"--assume-gpu-gb takes a number of GB, e.g. 24 or 80, not {text!r}")
    return value


def main(argv: list[str], settings: Any) -> int:
    parser = argparse.ArgumentParser(
        prog="videobot check",
        description="Show what this machine will run (model, memory options, attention, cache, licence) and "
        "whether it will work. Exit status 1 when something will not, with the fix.",
    )
    parser.add_argument(
        "--assume-gpu-gb",
        type=_positive_gb,
        metavar="N",
        help="plan for a CUDA card of N GB total memory instead of this machine's (no GPU needed)",
    )
    parser.add_argument(
        "--run",
        action="store_true",
        help="also load the model and render a 2-step job: seconds per step, peak memory",
    )
    ns = parser.parse_args(argv)
    if ns.run and ns.assume_gpu_gb is not None:
        parser.error("--run renders on this machine: leave out --assume-gpu-gb")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    report = check(settings, assume_gpu_gb=ns.assume_gpu_gb, run=ns.run)
    for line in report.lines:
        print(line)
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    print("ok: this will work" if not report.problems else f"{len(report.problems)} problem(s): see above")
    sys.stdout.flush()
    return 1 if report.problems else 0
