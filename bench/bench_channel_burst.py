"""A burst of /video in ONE channel against Discord's rate limits (the fake enforces them).

    python bench/bench_channel_burst.py [--interactions 50] [--users 25] [--observe 75] [--step-delay 4]

Starts the fake Discord (rate limits enforced as on Discord: 5 message creates and 5 edits/deletes
per 5 s per channel, 50 requests/s global, interaction endpoints per token), the real `videobot bot`
and one real worker (tiny model, ``--step-delay`` s per denoising step so a job runs long enough to
show progress), sends ``--interactions`` `/video` from ``--users`` members in one channel at once, and
watches for ``--observe`` seconds. Goal (issue 9): every member gets the ephemeral answer within 3 s
(p99); public status/progress messages may lag, but none is lost and the running job's progress
message is never more than 10 s stale.

Printed figures:

- answer latency: interaction dispatched → the fake accepted the private "Queued as …" or the
  refusal (the first response itself, or the edit of a deferred one); p50 / p99 / max, and how
  many within 3 s;
- status messages: accepted jobs whose public status message is in the channel at the end of the
  window (and when it appeared, from dispatch), and lost = accepted jobs without one;
- progress staleness of the running job(s): sampled every 0.25 s; at each sample, for each job the
  database shows ``running`` (and, after it ended, until its message caught up), how long ago the
  bench first saw a database state (running, or a progress step) newer than what the job's status
  message shows; the max over the window. It includes the worker's own progress cadence (written at
  each heartbeat) and the bot's poll and 3 s per-message edit interval;
- 429s served by the fake, by bucket, and the requests counted in each bucket.

Not a test: no assertions; compare runs side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import BotHarness  # noqa: E402

STEP = re.compile(r"step (\d+)/(\d+)")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def shown_step(content: str | None) -> int:
    """What a status message shows: -2 no message, -1 queued, 0 started, k progress step, 99 done."""
    if content is None:
        return -2
    if m := STEP.search(content):
        return int(m[1])
    if "starting" in content:
        return 0
    if "in the queue" in content:
        return -1
    return 99  # final text (done, failed, ...)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interactions", type=int, default=50)
    parser.add_argument("--users", type=int, default=25)
    parser.add_argument("--observe", type=float, default=75.0, help="seconds watched after the burst")
    parser.add_argument("--step-delay", type=float, default=4.0, help="worker seconds per denoising step")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=240.0,
        help="then keep watching until every member is answered and every accepted job's status "
        "message is posted, at most this long after the burst; what is missing then counts as lost",
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--keep", help="copy the bot and worker logs into this folder")
    parser.add_argument(
        "--no-rate-limits", action="store_true", help="the fake enforces no rate limit (for comparison)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        harness = BotHarness(
            Path(tmp),
            worker=True,
            db=args.db,
            extra_members=args.users,
            common_env={"VIDEOBOT_LOG_LEVEL": "INFO", "VIDEOBOT_POLL_SECONDS": "1"},
            worker_env={"VIDEOBOT_TEST_STEP_DELAY": str(args.step_delay)},
            fake_options={"rate_limits": None} if args.no_rate_limits else None,
        )
        async with harness as h:
            fd = h.fd
            users = h.members
            t0 = time.monotonic()
            interactions = [
                await h.slash(users[i % len(users)], "video", prompt=f"channel burst {i}")
                for i in range(args.interactions)
            ]
            dispatch_s = time.monotonic() - t0
            # job id -> [(monotonic time first seen, db state)]: 0 running, k progress step
            seen: dict[int, list[tuple[float, int]]] = {}
            stale_max = 0.0
            stale_samples: list[float] = []
            running_seen: set[int] = set()
            end, cap = t0 + args.observe, t0 + args.max_wait
            while True:
                now = time.monotonic()
                jobs_now = await h.jobs()
                settled = all((i.original or {}).get("content") for i in interactions) and all(
                    j.status_message_id and fd.message(j.status_message_id) for j in jobs_now
                )
                if now >= cap or (now >= end and settled):
                    break
                for job in jobs_now:
                    running = job.status == "running"
                    if not running and job.id not in seen:
                        continue
                    states = seen.setdefault(job.id, [(now, 0)])
                    step = job.progress_step or 0
                    if running:
                        running_seen.add(job.id)
                        if step > states[-1][1]:
                            states.append((now, step))
                    message = fd.message(job.status_message_id) if job.status_message_id else None
                    shown = shown_step(None if message is None else message["content"])
                    # Measured until the message shows the newest running state (or a final text),
                    # also after the job finished, so a short job does not cap the figure.
                    newer = [t for t, s in states if s > shown]
                    stale = now - min(newer) if newer else 0.0
                    if running or newer:
                        stale_samples.append(stale)
                    stale_max = max(stale_max, stale)
                await asyncio.sleep(0.25)

            # Answer latency: the answer in the first response, or the first accepted edit of the
            # deferred response (``Interaction.answered_at``).
            answers = [i.answered_at - i.created for i in interactions if i.answered_at is not None]
            within = sum(1 for a in answers if a <= 3.0)
            jobs = [j for j in await h.jobs() if j.kind == "command"]
            posted: dict[int, float] = {}
            by_interaction = {f"interaction:{i.id}": i for i in interactions}
            for j in jobs:
                msg = fd.message(j.status_message_id) if j.status_message_id else None
                if msg is not None and not msg["ephemeral"]:
                    i = by_interaction.get(j.idempotency_key)
                    created = next(
                        (
                            r.at
                            for r in fd.requests
                            if r.route == "/channels/{channel_id}/messages"
                            and r.method == "POST"
                            and r.status == 200
                            and str((r.response or {}).get("id")) == str(j.status_message_id)
                        ),
                        None,
                    )
                    posted[j.id] = (created - i.created) if (i and created) else float("nan")
            lost = len(jobs) - len(posted)
            refused = sum(
                1
                for i in interactions
                if (i.original or {}).get("content") and not i.original["content"].startswith("Queued")
            )
            print(
                f"burst: {args.interactions} /video from {len(users)} members in one channel on {args.db}, "
                f"dispatched in {dispatch_s:.3f} s; rate limits {'off' if args.no_rate_limits else 'on'}; watched {time.monotonic() - t0:.0f} s; step delay {args.step_delay} s"
            )
            if answers:
                print(
                    f"answer latency: p50 {statistics.median(answers):.2f} s, p99 {pct(answers, 99):.2f} s, "
                    f"max {max(answers):.2f} s; within 3 s: {within}/{len(interactions)}; "
                    f"unanswered: {len(interactions) - len(answers)}; refused: {refused}"
                )
            else:
                print(f"answer latency: none answered of {len(interactions)}")
            post_lat = [v for v in posted.values() if v == v]
            print(
                f"status messages: accepted {len(jobs)}, posted {len(posted)}, lost {lost}"
                + (
                    f"; posted after p50 {statistics.median(post_lat):.1f} s, max {max(post_lat):.1f} s"
                    if post_lat
                    else ""
                )
            )
            print(
                f"running-job progress staleness: max {stale_max:.1f} s"
                + (
                    f", p50 {statistics.median(stale_samples):.1f} s over {len(stale_samples)} samples"
                    if stale_samples
                    else ""
                )
                + f"; jobs seen running {len(running_seen)}"
            )
            hits = fd.rate_limit_counts()
            counted = Counter(r.bucket for r in fd.requests if r.bucket)
            print(f"429s by bucket: {dict(sorted(hits.items())) or 'none'}")
            for hit in fd.rate_limit_hits:
                print(
                    f"  429 at +{hit.at - t0:.2f} s: {hit.method} {hit.route} "
                    f"({hit.scope}, retry after {hit.retry_after:.3f} s)"
                )
            print(
                "requests by bucket: "
                + ", ".join(
                    f"{k} {v}" for k, v in sorted(counted.items()) if not k.startswith(("GET ", "PUT "))
                )
            )
            rl_warnings = h.bot.log().count("We are being rate limited")
            print(f"discord.py 'We are being rate limited' warnings in the bot log: {rl_warnings}")
            if args.keep:
                keep = Path(args.keep)
                keep.mkdir(parents=True, exist_ok=True)
                for proc in (h.bot, h.worker):
                    (keep / proc.log_path.name).write_text(proc.log())


if __name__ == "__main__":
    asyncio.run(main())
