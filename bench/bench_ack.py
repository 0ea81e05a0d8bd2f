"""Acknowledgement latency of the real bot process under a burst of /video, through the fake Discord.

    python bench/bench_ack.py [--interactions 200] [--users 50] [--db sqlite|postgresql]

Starts the fake Discord and the real `videobot bot` process (no worker: only the bot side is
measured), sends the burst through the gateway as fast as the fake can dispatch it, and prints:

- ack latency (interaction dispatched → the bot's initial response accepted) p50 / p99 / max and the
  number of interactions not acknowledged within Discord's 3 s;
- answer latency (dispatched → the ephemeral "Queued as…" or refusal text), which includes the
  database work (quota check + charge + job, the guild configuration, the public status message);
- the bot process's RSS before and after the burst (psutil) and its start-up time (process start →
  commands synced, and → ready to serve).

Not a test: no assertions; run it on a quiet machine and compare runs side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import BotHarness  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def peak_rss(pid: int) -> int | None:
    """VmHWM (peak resident set) from /proc on Linux; None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def log_seconds_after_start(log_text: str, marker: str, started: float) -> float | None:
    for line in log_text.splitlines():
        if marker in line and line.startswith("{"):
            ts = json.loads(line)["ts"]
            when = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
            return when - started
    return None


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interactions", type=int, default=200)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ack-") as tmp:
        harness = BotHarness(
            Path(tmp),
            worker=False,
            db=args.db,
            extra_members=args.users,
            common_env={"VIDEOBOT_LOG_LEVEL": args.log_level, "VIDEOBOT_POLL_SECONDS": "1"},
        )
        async with harness as h:
            proc = psutil.Process(h.bot.pid)
            started = proc.create_time()
            synced = log_seconds_after_start(h.bot.log(since_start=True), "synced", started)
            ready = log_seconds_after_start(h.bot.log(since_start=True), "videobot ready", started)
            rss_before = proc.memory_info().rss
            users = h.members
            t0 = time.monotonic()
            interactions = [
                await h.slash(users[i % len(users)], "video", prompt=f"benchmark burst {i}")
                for i in range(args.interactions)
            ]
            dispatch_s = time.monotonic() - t0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not all(
                (i.original or {}).get("content") for i in interactions
            ):
                await asyncio.sleep(0.05)
            answered_at = {}
            # Answer time: when the fake stored the edit of the deferred response.
            for i in interactions:
                edits = [
                    r.at
                    for r in h.fd.requests
                    if r.method == "PATCH" and i.token in r.path and r.status == 200
                ]
                if edits:
                    answered_at[i.id] = min(edits) - i.created
            rss_after = proc.memory_info().rss
            peak = peak_rss(proc.pid)
            acks = [i.ack_latency for i in interactions if i.ack_latency is not None]
            missed = sum(1 for i in interactions if i.ack_latency is None or i.ack_latency > 3)
            answers = list(answered_at.values())
            queued = sum(
                1 for i in interactions if ((i.original or {}).get("content") or "").startswith("Queued")
            )
            print(
                f"burst: {args.interactions} /video from {len(users)} users on {args.db}; dispatched in {dispatch_s:.3f} s"
            )
            print(
                f"ack latency: p50 {statistics.median(acks) * 1000:.0f} ms, p99 {pct(acks, 99) * 1000:.0f} ms, "
                f"max {max(acks) * 1000:.0f} ms; not acknowledged within 3 s: {missed}"
            )
            if answers:
                print(
                    f"answer latency (DB work included): p50 {statistics.median(answers):.2f} s, "
                    f"p99 {pct(answers, 99):.2f} s, max {max(answers):.2f} s; answered {len(answers)}, queued {queued}"
                )
            print(
                f"bot RSS: {rss_before / 2**20:.0f} MiB before, {rss_after / 2**20:.0f} MiB after the burst"
                + (f" (peak {peak / 2**20:.0f} MiB)" if peak else "")
            )
            print(
                f"bot start-up: commands synced {synced:.2f} s, ready {ready:.2f} s after process start"
                if synced is not None and ready is not None
                else "bot start-up: markers not found"
            )


if __name__ == "__main__":
    asyncio.run(main())
