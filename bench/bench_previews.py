"""What live previews cost: the same runs with previews off and on, side by side, on a tiny model.

Each round runs the pipeline without previews, with the worker's preview timer (``PreviewTimer``: a
preview every ``--every`` seconds, but never more than ``MAX_SHARE`` of the time), and with a preview
after every step (the uncapped worst case), in rotating order; it times each preview (latent frame
to WebP). Prints min/median/max per mode, the ratios of medians, and what one preview costs against
the default cadence (one per ``VIDEOBOT_PREVIEW_SECONDS`` = 10 s).

    python bench/bench_previews.py --preset tiny --runs 7 --steps 20 --every 0
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from generator.pipeline import VideoPipeline
from generator.preview import PreviewTimer
from videobot.presets import plan


class TimedSink(PreviewTimer):
    """The worker's timer, also keeping how long each preview took (its decode and WebP encode)."""

    def __init__(self, every: float, *, capped: bool) -> None:
        super().__init__(every)
        self.capped = capped
        self.decode: list[float] = []

    def due(self, step: int, total: int) -> bool:
        if not self.capped:  # the worst case: a preview after every step
            self.asked = self.clock()
            return True
        return super().due(step, total)

    def put(self, step: int, data: bytes, content_type: str) -> None:
        super().put(step, data, content_type)
        self.decode.append(self.cost)


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--every", type=float, default=0.0, help="seconds between previews (0: every step)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        vp = VideoPipeline.load(args.preset, data_dir=Path(tmp), device=args.device)
        params = dataclasses.replace(
            plan(vp.preset, "a red boat on the sea", seed=3), num_inference_steps=args.steps
        )
        vp.run(params)  # warm-up
        times: dict[str, list[float]] = {"off": [], "timer": [], "every step": []}
        counts: dict[str, list[int]] = {"timer": [], "every step": []}
        decode: list[float] = []
        modes = list(times)
        for i in range(args.runs):
            for mode in modes[i % 3 :] + modes[: i % 3]:
                sink = None if mode == "off" else TimedSink(args.every, capped=mode == "timer")
                t0 = time.perf_counter()
                vp.run(params, previews=sink)
                times[mode].append(time.perf_counter() - t0)
                if sink is not None:
                    counts[mode].append(sink.count)
                    decode.extend(sink.decode)
    print(
        f"{args.preset}, {args.steps} steps, {params.width}x{params.height}, {params.num_frames} frames, "
        f"{args.runs} runs each, --every {args.every}"
    )
    base = statistics.median(times["off"])
    for mode, values in times.items():
        n = f", previews/run {statistics.median(counts[mode]):.0f}" if mode in counts else ""
        ratio = statistics.median(values) / base
        print(f"{mode:>10}: min/median/max {spread(values)}; median / off {ratio:.3f}{n}")
    print(f"one preview (latents to WebP): min/median/max {spread(decode)}")
    print(f"one preview per 10 s of generation costs {100 * statistics.median(decode) / 10:.2f} %")


if __name__ == "__main__":
    main()
