"""Benchmark: generator.encode.encode_mp4 vs diffusers.utils.export_to_video on the same frames.

Both start from what a diffusers pipeline returns (float32 frames in [0, 1]); the ratio is ours / theirs,
measured side by side in one run (median of --runs). export_to_video needs `imageio` and `imageio-ffmpeg`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.encode import encode_mp4, frames_to_uint8, probe_mp4  # noqa: E402


def smooth(frames: int, height: int, width: int) -> np.ndarray:
    """A moving colour gradient with a drifting sine pattern (typical, compressible content)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((frames, height, width, 3), np.float32)
    for i in range(frames):
        out[i, ..., 0] = (x + 6 * i) / (width + 6 * frames)
        out[i, ..., 1] = y / height
        out[i, ..., 2] = 0.5 + 0.4 * np.sin((x + y + 8 * i) / 30)
    return out


def noise(frames: int, height: int, width: int) -> np.ndarray:
    """Pure noise: the file-size worst case."""
    return np.random.default_rng(0).random((frames, height, width, 3), dtype=np.float32)


def time_ours(frames: np.ndarray, fps: int, runs: int) -> tuple[float, int, int, bool]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = encode_mp4(frames_to_uint8(frames), fps)  # VideoPipeline.run does the conversion
        times.append(time.perf_counter() - start)
    return statistics.median(times), result.size_bytes, result.attempts, probe_mp4(result.data)["faststart"]


def time_theirs(frames: np.ndarray, fps: int, runs: int) -> tuple[float, int, bool]:
    from diffusers.utils import export_to_video

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.mp4"
        for _ in range(runs):
            start = time.perf_counter()
            export_to_video(list(frames), str(path), fps=fps)
            times.append(time.perf_counter() - start)
        data = path.read_bytes()
    return statistics.median(times), len(data), probe_mp4(data)["faststart"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--fps", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.frames} frames {args.width}x{args.height} @ {args.fps} fps, median of {args.runs} runs")
    print(f"{'content':8} {'encode_mp4':>11} {'export_to_video':>16} {'ratio':>6}  sizes (ours / theirs)")
    for name, make in (("smooth", smooth), ("noise", noise)):
        frames = make(args.frames, args.height, args.width)
        ours, our_size, attempts, our_fast = time_ours(frames, args.fps, args.runs)
        theirs, their_size, their_fast = time_theirs(frames, args.fps, args.runs)
        print(
            f"{name:8} {ours:10.3f}s {theirs:15.3f}s {ours / theirs:6.2f}  "
            f"{our_size / 1e6:.2f} MB ({attempts} encode{'s' if attempts > 1 else ''}, faststart={our_fast}) / "
            f"{their_size / 1e6:.2f} MB (faststart={their_fast})"
        )


if __name__ == "__main__":
    main()
