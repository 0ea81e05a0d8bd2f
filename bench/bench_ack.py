"""Acknowledgement and answer latency of the real bot process under a burst of /video, through the
fake Discord, on SQLite and PostgreSQL side by side in one run.

    python bench/bench_ack.py [--interactions 200] [--users 50] [--db sqlite postgresql] [--runs 1]
                              [--rate-limits on|off]

For each run and each database: starts the fake Discord (Discord's rate limits enforced unless
``--rate-limits off``) and the real `videobot bot` process (no worker: only the bot side is
measured), sends the burst through the gateway in ONE channel as fast as the fake can dispatch it,
and prints one row:

- ack latency (interaction dispatched → the bot's initial response accepted) p50 / p99 / max and the
  number of interactions not acknowledged within Discord's 3 s;
- bot CPU seconds (user + system, all threads) from the burst until the last answer: the work the
  bot does for the burst, which the machine's load does not change much (latencies it does);
- answer latency (dispatched → the fake accepted the private "Queued as…" or the refusal: the first
  response itself when the bot answered within its inline second, else the edit of its deferred
  response), which includes the database work (guild configuration, quota check + charge + job in
  one transaction);
- how many were answered, queued, and deferred ("thinking…" first, the answer edited in later);
- how many accepted jobs have their public status message when the last member was answered, and
  how long after the burst the last one appeared (the status posts share the channel's 5-per-5 s
  message budget, so 150 of them take ~150 s: the bench waits for them at most ``--status-wait`` s);
- the bot process's RSS before and after the burst and its start-up time.

PostgreSQL needs ``VIDEOBOT_TEST_POSTGRES_URL`` (a fresh database is created per run). Not a test:
no assertions; compare the rows side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import PG_ENV, BotHarness  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def log_seconds_after_start(log_text: str, marker: str, started: float) -> float | None:
    for line in log_text.splitlines():
        if marker in line and line.startswith("{"):
            ts = json.loads(line)["ts"]
            when = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
            return when - started
    return None


def post_times(fd: object) -> dict[int, float]:
    """Message id → when the fake accepted its creation (monotonic, like the interactions' times)."""
    return {
        int(r.response["id"]): r.at
        for r in fd.requests_to("POST", "/channels/{channel_id}/messages")  # type: ignore[attr-defined]
        if r.status == 200 and isinstance(r.response, dict)
    }


async def one_run(args: argparse.Namespace, db: str) -> str:
    fake_options = {} if args.rate_limits == "on" else {"rate_limits": None}
    with tempfile.TemporaryDirectory(prefix="bench-ack-") as tmp:
        harness = BotHarness(
            Path(tmp),
            worker=False,
            db=db,
            extra_members=args.users,
            common_env={"VIDEOBOT_LOG_LEVEL": args.log_level, "VIDEOBOT_POLL_SECONDS": "1"},
            fake_options=fake_options,
        )
        async with harness as h:
            fd = h.fd
            proc = psutil.Process(h.bot.pid)
            started = proc.create_time()
            synced = log_seconds_after_start(h.bot.log(since_start=True), "synced", started)
            ready = log_seconds_after_start(h.bot.log(since_start=True), "videobot ready", started)
            rss_before = proc.memory_info().rss
            cpu_before = proc.cpu_times()
            users = h.members
            t0 = time.monotonic()
            interactions = [
                await h.slash(users[i % len(users)], "video", prompt=f"benchmark burst {i}")
                for i in range(args.interactions)
            ]
            dispatch_s = time.monotonic() - t0
            deadline = time.monotonic() + args.answer_wait
            while time.monotonic() < deadline and not all(
                (i.original or {}).get("content") for i in interactions
            ):
                await asyncio.sleep(0.05)
            cpu_after = proc.cpu_times()
            cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
            # The answer in the first response, or the first accepted edit of the deferred one.
            answers = [i.answered_at - i.created for i in interactions if i.answered_at is not None]
            last_answer = max((i.answered_at for i in interactions if i.answered_at is not None), default=0.0)
            rss_after = proc.memory_info().rss
            acks = [i.ack_latency for i in interactions if i.ack_latency is not None]
            missed = sum(1 for i in interactions if i.ack_latency is None or i.ack_latency > 3)
            deferred = sum(1 for i in interactions if i.response_type == 5)  # answered by an edit later
            queued = sum(
                1 for i in interactions if ((i.original or {}).get("content") or "").startswith("Queued")
            )
            created = post_times(fd)
            jobs = await h.jobs()
            with_status_at_answer = sum(
                1
                for j in jobs
                if j.status_message_id and created.get(j.status_message_id, 1e18) <= last_answer
            )
            # Then wait for the public status messages (rate limited in the channel).
            status_deadline = time.monotonic() + args.status_wait
            while time.monotonic() < status_deadline:
                jobs = await h.jobs()
                if all(j.status_message_id and fd.message(j.status_message_id) for j in jobs):
                    break
                await asyncio.sleep(0.25)
            created = post_times(fd)
            posted = [created[j.status_message_id] - t0 for j in jobs if j.status_message_id in created]
            hits = fd.rate_limit_counts(injected=False)
            row = (
                f"| {db} | {dispatch_s:.2f} s | {statistics.median(acks) * 1000:.0f} / {pct(acks, 99) * 1000:.0f} ms "
                f"| {missed} | "
                + (
                    f"{statistics.median(answers):.2f} / {pct(answers, 99):.2f} / {max(answers):.2f} s"
                    if answers
                    else "none"
                )
                + f" | {cpu_s:.1f} s | {len(answers)} / {queued} / {deferred} | {with_status_at_answer} | "
                + f"{len(posted)}/{len(jobs)} in {max(posted, default=0):.0f} s | {sum(hits.values())} | "
                + f"{rss_before / 2**20:.0f} → {rss_after / 2**20:.0f} MiB | "
                + (f"{synced:.2f} / {ready:.2f} s |" if synced is not None and ready is not None else "? |")
            )
            return row


HEADER = (
    "| database | dispatched | ack p50 / p99 | not acked in 3 s | answer p50 / p99 / max | bot CPU until all answered "
    "| answered / queued / deferred "
    "| status msgs posted when all answered | status msgs posted (time after burst) | 429s served "
    "| bot RSS | synced / ready |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interactions", type=int, default=200)
    parser.add_argument("--users", type=int, default=50)
    default_dbs = ["sqlite", "postgresql"] if os.environ.get(PG_ENV) else ["sqlite"]
    parser.add_argument("--db", nargs="+", choices=["sqlite", "postgresql"], default=default_dbs)
    parser.add_argument("--runs", type=int, default=1, help="rounds; each round runs every --db once")
    parser.add_argument("--rate-limits", choices=["on", "off"], default="on")
    parser.add_argument("--answer-wait", type=float, default=240.0)
    parser.add_argument("--status-wait", type=float, default=0.0, help="seconds to wait for status posts")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    print(
        f"burst: {args.interactions} /video from {args.users} members in one channel; "
        f"rate limits {args.rate_limits}; load average {os.getloadavg()[0]:.1f}"
    )
    print(HEADER, flush=True)
    for _ in range(args.runs):
        for db in args.db:
            print(await one_run(args, db), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
