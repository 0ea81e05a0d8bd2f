"""``videobot worker`` whose GPU runs out of memory for chosen seeds: a real worker process (tiny model,
real database, real encode), with only the out-of-memory simulated, as a CPU cannot run out of GPU memory.

    python tests/e2e/oom_worker.py      # with OOM_SEEDS="777001,…" in the environment

Every pipeline run (a batch of videos, or one) whose seeds include one of ``OOM_SEEDS`` raises
``GenerationOOM`` as the real pipeline does after a CUDA out-of-memory error.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from generator.pipeline import OOM_MESSAGE, VideoPipeline
from videobot.errors import GenerationOOM

OOM_SEEDS = {int(s) for s in os.environ.get("OOM_SEEDS", "").split(",") if s.strip()}
_real_run = VideoPipeline.run


def _run(self: VideoPipeline, params: Any, on_step: Any = None, **inputs: Any) -> Any:
    seeds = {(params.seed + i) % 2**32 for i in range(params.num_videos)}
    if seeds & OOM_SEEDS:
        if on_step is not None:
            on_step(1, params.num_inference_steps)
        raise GenerationOOM(OOM_MESSAGE)
    return _real_run(self, params, on_step, **inputs)


VideoPipeline.run = _run  # type: ignore[method-assign]

if __name__ == "__main__":
    from videobot.cli import main

    sys.exit(main(["worker"]))
