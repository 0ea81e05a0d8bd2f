"""The machine a worker runs on (device kind, GPU name, total memory) and what ``auto`` picks for it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from videobot.autoplan import AutoPlan, plan_auto

log = logging.getLogger(__name__)
_logged: set[str] = set()


@dataclass(frozen=True)
class Machine:
    """Where the model will run: ``kind`` "cuda" or "cpu", the GPU's name and total memory (GB, 1e9 bytes)."""

    kind: str
    name: str = ""
    total_gb: float | None = None


def detect(device: str = "auto") -> Machine:
    """The device ``VIDEOBOT_DEVICE`` points at: the first (or named) CUDA GPU and its total memory."""
    if device == "auto":
        if not torch.cuda.is_available():
            return Machine("cpu")
        index = 0
    else:
        try:
            dev = torch.device(device)
        except RuntimeError:
            return Machine("cpu")  # VideoPipeline.load names the bad setting
        if dev.type != "cuda" or not torch.cuda.is_available():
            return Machine(dev.type)
        index = dev.index or 0
    props = torch.cuda.get_device_properties(index)
    return Machine("cuda", props.name, props.total_memory / 1e9)


def auto_plan(
    explicit: dict[str, Any] | None = None, device: str = "auto", machine: Machine | None = None
) -> AutoPlan:
    """``plan_auto`` for this machine; the choice and its reason are logged once per process."""
    machine = machine or detect(device)
    chosen = plan_auto(machine.total_gb, machine.kind, explicit)
    if (explicit or {}).get("model", "auto") in (None, "auto"):
        line = f"VIDEOBOT_MODEL=auto -> {chosen.model} ({chosen.describe_options()}): {chosen.reason}"
        if line not in _logged:
            _logged.add(line)
            if machine.kind == "cuda":
                log.info("%s", line)
            else:
                log.warning(
                    "No CUDA GPU found: using the built-in `tiny` model, which makes abstract test videos. "
                    "To generate real videos install a CUDA build of torch and pick a model with "
                    "VIDEOBOT_MODEL (or `--model`), or leave it `auto` (`videobot check` shows what it picks)."
                )
        for problem in chosen.problems:
            log.warning("%s", problem)
    return chosen
