"""What the worker's safety check costs: per frame, per job, and as a share of a job.

Three measurements, each repeated ``--runs`` times (min / median / max):

1. **tiny**: a job on the tiny video model (render + encode, as the worker does) and the check of its
   video with the built-in ``tiny-safe`` classifier (the real sampling, windows, preprocessing and
   forward pass), side by side in the same rounds: the check's share of the job.
2. **real architecture on this CPU**: the default classifier's network (timm ViT-Tiny/16 at 384 px,
   ``TimmViT`` with random weights: the cost does not depend on the weights) scoring a video at a real
   preset's size (``--size``, ``--frames``): ms per job (8 frames, each in its square windows) and per
   frame, with the preprocessing (resize, windows, normalise) timed apart.
3. **estimate for a GPU job** (none was measured: no GPU here): the forward pass's FLOPs (torch's FLOP
   counter on the same batch) at an assumed, modest fp32 throughput (``GPU_FP32_TFLOPS``) plus the
   frames' copy to the card (the worker scores on its GPU, resizing there too), against published
   GPU job times (``JOB_SECONDS``).

    python bench/bench_safety.py --runs 5
    python bench/bench_safety.py --runs 5 --device cuda   # on a GPU machine: the real architecture measured there
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from generator.encode import encode_mp4
from generator.pipeline import VideoPipeline
from generator.safety import SafetyClassifier, TimmViT, sample_indices
from videobot.presets import plan

#: GPU seconds of one job, for the estimated share (source in the label).
JOB_SECONDS = {
    "LTX-2 distilled 768x512x121 with sound, 1 H100 (published sglang run, bf16)": 9.5,
    "LTX-2 distilled 768x512x121 with sound, 1 H100 (published sglang run, fp8)": 7.6,
    "a 60 s job (e.g. Wan 2.1 1.3B 832x480x81 on a 24 GB card)": 60.0,
}


#: What the estimate assumes of a GPU: fp32 throughput for ViT-Tiny batches (an H100 SXM peaks at ~67
#: TFLOP/s fp32 without tensor cores; small batches reach a fraction) and host-to-device copy speed.
GPU_FP32_TFLOPS = 10.0
GPU_COPY_BYTES_PER_S = 10e9


def spread(values: list[float], scale: float = 1000.0, unit: str = "ms") -> str:
    v = [x * scale for x in values]
    return f"{min(v):.1f} / {statistics.median(v):.1f} / {max(v):.1f} {unit}"


def real_architecture(device: str) -> SafetyClassifier:
    """The default model's network (ViT-Tiny/16 @ 384, 5.7M parameters) with random weights, set up with
    its preprocessing (bicubic, mean/std 0.5) as the loader would."""
    net = TimmViT(img_size=384, patch_size=16, embed_dim=192, depth=12, num_heads=3, num_classes=2)
    return SafetyClassifier(
        "vit_tiny_patch16_384 (random weights)",
        net,
        torch.device(device),
        size=384,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        resample="bicubic",
        unsafe=[0],
        labels=["NSFW", "SFW"],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", default="832x480", help="frame size for the real-architecture run (WxH)")
    ap.add_argument("--frames", type=int, default=81, help="frames of the real-architecture run's video")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", help="device of the real-architecture run (cpu, cuda)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        pipe = VideoPipeline.load("tiny", data_dir=data, device="cpu")  # sets 1 torch thread, as the worker
        tiny = SafetyClassifier.load("tiny-safe", data_dir=data)
        params = plan(pipe.preset, "a red fox running through snow", seed=1)
        job, check = [], []
        for _ in range(args.runs + 1):  # the first round warms up and is left out
            t0 = time.perf_counter()
            out = pipe.run(params)
            encode_mp4(out.frames, params.fps, max_bytes=10 * 1024 * 1024, tmp_dir=data)
            t1 = time.perf_counter()
            tiny.score_video(out.frames)
            t2 = time.perf_counter()
            job.append(t1 - t0)
            check.append(t2 - t1)
        job, check = job[1:], check[1:]
        shares = [c / (j + c) for j, c in zip(job, check, strict=True)]
        n = len(sample_indices(len(out.frames)))
        print(f"torch threads: {torch.get_num_threads()}")
        print(
            f"tiny job ({params.width}x{params.height}x{params.num_frames}, {params.num_inference_steps} steps): "
            f"render+encode {spread(job)}"
        )
        print(f"  check ({n} frames, tiny-safe): {spread(check)}; per frame {spread([c / n for c in check])}")
        print(f"  share of the job: {spread(shares, 100.0, '%')}")

        real = real_architecture(args.device)
        w, h = (int(x) for x in args.size.split("x"))
        video = np.random.default_rng(0).integers(0, 256, size=(args.frames, h, w, 3), dtype=np.uint8)
        picks = sample_indices(args.frames)
        windows = len(real.layout(w, h)[2])
        pre, total = [], []
        for _ in range(args.runs + 1):
            t0 = time.perf_counter()
            real.windows(video[picks])
            t1 = time.perf_counter()
            real.score_video(video)
            t2 = time.perf_counter()
            pre.append(t1 - t0)
            total.append(t2 - t1)
        pre, total = pre[1:], total[1:]
        print(
            f"real architecture ({real.name}, {sum(p.numel() for p in real.net.parameters()) / 1e6:.1f}M "
            f"parameters) on {real.device}, {w}x{h} video of {args.frames} frames: {len(picks)} frames x {windows} "
            f"windows"
        )
        print(f"  per job {spread(total)} (of which preprocessing {spread(pre)})")
        print(f"  per frame {spread([t / len(picks) for t in total])}")
        # On a GPU the forward pass is a few GFLOPs: count them (torch's FLOP counter, the same batch) and
        # divide by a throughput the card surely reaches for this small fp32 model; add the frames' copy.
        from torch.utils.flop_counter import FlopCounterMode

        batch = (real.windows(video[picks]) / 255.0 - real.mean) / real.std
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            real.net(batch)
        gflops = counter.get_total_flops() / 1e9
        copy_s = video[picks].nbytes / GPU_COPY_BYTES_PER_S
        gpu_s = gflops / GPU_FP32_TFLOPS / 1e3 + copy_s
        print(
            f"  forward pass of one job: {gflops:.1f} GFLOP; on a GPU at an assumed {GPU_FP32_TFLOPS:g} TFLOP/s "
            f"(fp32, a fraction of an H100's) + {copy_s * 1000:.1f} ms copying the frames: ~{gpu_s * 1000:.0f} ms"
        )
        measured = real.device.type == "cuda"
        cost = statistics.median(total) if measured else gpu_s
        print(f"share of a GPU job ({'the median measured above' if measured else 'the estimate above'}):")
        for label, seconds in JOB_SECONDS.items():
            print(f"  {label}: {cost / seconds * 100:.2f} % (of {seconds:g} s)")


if __name__ == "__main__":
    main()
