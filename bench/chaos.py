"""Chaos run: every verb a member has, through the real bot and real workers, while processes are killed
and frozen.

    python bench/chaos.py --submissions 500 --worker-kills 25 --bot-kills 5 --stops 10 --seed 1

Starts the fake Discord, the real ``videobot bot`` and ``--workers`` real workers (the tiny model, a short
lease; each worker is ``tests/e2e/oom_worker.py``, the real ``videobot worker`` whose GPU "runs out of
memory" for the seeds in ``OOM_SEEDS``, so that variations are partly made and refunded, and some single
videos fail). Many members then do everything a member can, in a seeded random order, each verb its
share of the submissions (``--mix``; a verb with nothing to act on yet, say Rerun before the first
result, is tried again later in its deck, a few times, and a ``/video`` is sent in its place):

- ``/video`` (text), ``/video image:`` (a picture served by the fake Discord's CDN), ``/video
  variations:`` 2–4 (some with a seed that runs out of memory for one of the takes);
- ``/video end_image:`` (with ``image:``, or alone), ``/video loop:True``, ``/video enhance:True`` (the
  worker's tiny language model rewrites the prompt first), ``/video style:`` (one of the server's two
  styles, which a moderator adds with ``/videoconfig style add`` at the start: tiny random LoRAs in an
  offline Hugging Face cache that the workers read; ``ink`` fits the tiny model, ``wan-only`` (every
  ``--misfit-every``-th styled video) was made for tiny Wan and does not fit, so its jobs fail and are
  refunded);
- on a posted result: the Rerun button, the 🔁 reaction, Remix and Extend (the click opens a form; the
  member "types" for up to 2 s, then submits it, so a form may be submitted to a restarted bot),
  Delete (by the requester, a moderator, or someone else, who is refused), and HD on a result that
  offers it (a reply at twice the size, charged ``VIDEOBOT_HD_COST``);
- Apps → Animate on a member's message with a picture (a form, then its submission);
- Cancel: the button on a job's status message, and ``/cancel``.

It keeps about ``--in-flight`` jobs queued or running (a steady load, so that recovery time measures
recovery and not a backlog). Meanwhile, spread over the run in a seeded order: ``kill -9`` of a worker
that holds a job (restarted at once), ``kill -9`` of the bot (restarted), ``SIGSTOP`` of a worker that
holds a job for longer than its lease (then ``SIGCONT``). When everything has settled (or at
``--deadline``) it prints the figures; ``lost``, ``delivered twice``, ``duplicate completions``,
``ledger mismatches``, ``acknowledged but unanswered`` and ``HD not at twice the size`` must be 0 (the
exit status says so).

Definitions
- submission: one thing a member does (a command, a click, a form opened and submitted, a reaction).
  Each interaction it makes ends as exactly one of:
  accepted (a job whose idempotency key is that interaction; charged), refused or answered (no job; the
  member got a private text: a refusal with its reason, "Deleted…", a cancel's answer; a refused click
  is refused with a text, never silently), form opened (a click or Animate answered with its form; the
  form's submission is the next interaction), not acknowledged (it reached a bot that was being killed
  or was down: Discord shows "did not respond"; nothing charged), or acknowledged but unanswered (the
  bot said "thinking…" and that never became an answer: a defect, whether or not a job was made; the
  ones with a job are also counted accepted). A request is recorded (``intakes``) before it is
  acknowledged, and a bot killed between the "thinking…" and the answer leaves it to the next one,
  which answers it: with the job when one was made, else "the bot restarted before your request
  could be queued" (counted as refused: nothing charged, no job).
- a 🔁 reaction is accepted when a rerun job with its key exists; one without a job is "not seen" when
  the bot was killed after it (Discord does not replay gateway events to a new session), and
  "ignored while the bot was up" otherwise (a defect). Each member reacts at most once per result, so
  the 30 s rerun cooldown never applies.
- lost: a job that did not end in a final state its requester was told about (delivered with its post
  in the channel, failed / cancelled / undeliverable with ``notified_at``), or a delivered job whose
  post is missing. A post removed with the Delete button by its requester or a moderator was removed
  on purpose: "deleted by a member", not lost.
- delivered twice: more than one message (public or ephemeral) carrying the job's files, the ones
  deleted by a member included. A result put into the requester's ephemeral message instead of the
  channel counts as lost.
- duplicate completions: more than one ``job N done in`` worker log line for a job (a completed GPU run
  stored twice). fenced duplicate runs: a worker that lost its lease (frozen past it) and was fenced out.
- ledger mismatches: members whose ``videobot.quota.status`` balance differs from limit + Σ ledger rows;
  and jobs whose ledger is not: one charge of exactly the job's cost (an HD video's cost:
  ``VIDEOBOT_HD_COST`` per video); for failed / cancelled /
  undeliverable jobs, refunds (refund + partial refund) giving back exactly that cost; for delivered
  jobs no refund, except a variations job that posted k of its n videos: one partial refund of
  cost × (n − k) // n (and none when all n were posted).
- HD not at twice the size: a delivered HD job whose posted video does not decode at twice its
  source's width and height (counted with the figures that must be 0).
- style jobs: every job whose parameters carry a style (reruns, remixes and extensions keep it), by
  style and final status. enhance jobs that ran: jobs asking for enhancement that a worker started and
  that ended, split into those rendered from an enhanced prompt and those with the worker's note why
  the member's words were used.
- recovery: from a kill -9 / SIGSTOP of a worker holding job J to J's next ``started_at`` (any worker).

Importable: ``await run_chaos(ChaosConfig(...), workdir)`` returns a ``ChaosReport``
(``tests/faults/test_chaos_small.py`` runs a small one).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import PG_ENV, WORKER_READY, BotHarness, _Proc  # noqa: E402
from tests.fakediscord import Interaction  # noqa: E402
from videobot import quota  # noqa: E402
from videobot.models import Job, LedgerEntry  # noqa: E402

FINAL = ("delivered", "failed", "cancelled", "undeliverable")
REFUNDED = ("failed", "cancelled", "undeliverable")
#: The real worker with a simulated GPU out-of-memory for chosen seeds (a CPU cannot run out of it).
OOM_WORKER = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "oom_worker.py"
#: The seed whose video "runs out of GPU memory": a variations job started one below it misses its
#: second take (partly refunded); a single video with it fails (refunded).
OOM_SEED = 777_001
#: What an HD video costs here (``VIDEOBOT_HD_COST``): not 1, so that the ledger check sees it applied.
HD_COST = 2
#: The server's styles (name, source): ``ink`` fits the tiny model; ``wan-only`` (a LoRA of tiny Wan's
#: layers) does not, so the worker fails its jobs (refunded).
STYLE_FITS = ("ink", "artist/ink-lora:ink.safetensors")
STYLE_MISFIT = ("wan-only", "artist/wan-only:wan.safetensors")
RESULT_FILE = re.compile(r"videobot-(\d+)(?:-\d+)?\.mp4")

#: What members do, with their default weights (``--mix verb=weight,...``).
VERBS = {
    "video": 28,
    "variations": 10,
    "image": 10,
    "rerun": 8,
    "reaction": 6,
    "remix": 8,
    "extend": 8,
    "animate": 8,
    "delete": 5,
    "cancel_button": 5,
    "cancel_command": 4,
    # Issue 22's verbs (the older ones keep 100 of every 120).
    "end_image": 4,
    "loop": 3,
    "hd": 4,
    "style": 5,
    "enhance": 4,
}
#: Verbs that may make a job (the steady load counts their recent submissions).
MAKES_JOBS = {
    "video", "variations", "image", "rerun", "reaction", "remix", "extend", "animate",
    "end_image", "loop", "hd", "style", "enhance",
}  # fmt: skip


@dataclass
class ChaosConfig:
    submissions: int = 300
    worker_kills: int = 15
    bot_kills: int = 3
    stops: int = 6
    seed: int = 1
    deadline: float = 1500.0
    postgres: str | None = None
    workers: int = 2
    users: int = 40
    in_flight: int = 6
    #: Verb → how many of each 100 (or of each ``sum(mix)``) submissions (default ``VERBS``).
    mix: dict[str, int] = field(default_factory=lambda: dict(VERBS))
    #: Share of variations and of text videos given the out-of-memory seed.
    oom_rate: float = 0.25
    #: Every this many ``/video style:`` ask for the style that does not fit the model (failed, refunded).
    misfit_every: int = 4
    lease_seconds: float = 5.0
    heartbeat_seconds: float = 1.0
    #: Seconds per denoising step (2 steps): long enough that kills land inside jobs.
    step_delay: float = 0.4
    #: How long a SIGSTOPped worker stays frozen beyond its lease.
    stop_extra: float = 3.0
    #: How long a member waits for a status message with a Cancel button to press.
    cancel_wait: float = 90.0


@dataclass
class Sent:
    """One interaction a member started (or one reaction)."""

    verb: str
    interaction: Interaction | None = None
    #: For a reaction: (message id, member id, the bot's start count when it was sent).
    reaction: tuple[int, int, int] | None = None
    #: The result post or status message acted on (Delete: the post).
    target: int | None = None
    #: Whether the member may do it (Delete / Cancel by someone else: no).
    allowed: bool = True


@dataclass
class VerbFigures:
    submitted: int = 0
    interactions: int = 0
    accepted: int = 0
    refused: int = 0
    forms: int = 0
    not_acknowledged: int = 0
    unanswered: int = 0
    #: Cancel: no status message showed the button while the member waited (nothing sent).
    no_target: int = 0

    def line(self, verb: str) -> str:
        parts = [f"{self.submitted} submitted"]
        if self.interactions != self.submitted:
            parts.append(f"{self.interactions} interactions")
        for name, value in (
            ("accepted", self.accepted),
            ("refused/answered with a text", self.refused),
            ("forms opened", self.forms),
            ("not acknowledged (bot down or killed)", self.not_acknowledged),
            ("acknowledged but unanswered", self.unanswered),
            ("no Cancel button appeared while waiting (nothing sent)", self.no_target),
        ):
            if value:
                parts.append(f"{name} {value}")
        return f"  {verb}: " + ", ".join(parts)


@dataclass
class ChaosReport:
    submitted: int = 0
    verbs: dict[str, VerbFigures] = field(default_factory=dict)
    acknowledged: int = 0
    accepted: int = 0
    refused: int = 0
    not_acknowledged: int = 0
    unanswered: int = 0
    unanswered_ids: list[str] = field(default_factory=list)
    reactions_not_seen: int = 0
    reactions_ignored: int = 0
    refusal_texts: Counter[str] = field(default_factory=Counter)
    jobs_by_kind: Counter[str] = field(default_factory=Counter)
    delivered: int = 0
    partial_refunded: int = 0
    deleted_by_member: int = 0
    failed_refunded: int = 0
    failed_by_kind: Counter[str] = field(default_factory=Counter)
    failed_reasons: Counter[str] = field(default_factory=Counter)
    cancelled_refunded: int = 0
    undeliverable: int = 0
    lost: int = 0
    lost_ids: list[int] = field(default_factory=list)
    delivered_twice: int = 0
    delivered_privately: int = 0
    removed_by_bot: int = 0
    duplicate_completions: int = 0
    fenced_runs: int = 0
    retried_jobs: int = 0
    ledger_mismatches: int = 0
    ledger_problems: list[str] = field(default_factory=list)
    #: HD jobs by final status; delivered ones whose posted video decodes at twice the source's size.
    hd_jobs: Counter[str] = field(default_factory=Counter)
    hd_twice: int = 0
    hd_wrong_size: int = 0
    hd_problems: list[str] = field(default_factory=list)
    #: Jobs with a style, by (style, final status).
    style_jobs: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Jobs that asked for enhancement and ran: rendered from the enhanced prompt, or the note why not.
    enhanced: int = 0
    enhance_notes: Counter[str] = field(default_factory=Counter)
    worker_kills: int = 0
    bot_kills: int = 0
    stops: int = 0
    recoveries: list[float] = field(default_factory=list)
    kills_holding_a_job: int = 0
    #: Killed or frozen jobs that ended without running again, by final status: cancelled while their
    #: worker was gone, or finished by it just before the kill (it was seen running a moment before).
    not_rerun: Counter[str] = field(default_factory=Counter)
    bot_restart_seconds: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    settled: bool = False

    @property
    def jobs(self) -> int:
        return sum(self.jobs_by_kind.values())

    @property
    def bad(self) -> bool:
        """A figure that must be 0 is not."""
        return bool(
            self.lost
            or self.delivered_twice
            or self.duplicate_completions
            or self.ledger_mismatches
            or self.unanswered
            or self.reactions_ignored
            or self.hd_wrong_size
        )

    def lines(self) -> list[str]:
        rec = sorted(self.recoveries)
        restarts = sorted(self.bot_restart_seconds)
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.jobs_by_kind.items()))
        reasons = "; ".join(f"{n}× {text!r}" for text, n in self.refusal_texts.most_common(6))
        return [
            f"submissions: {self.submitted} (interactions acknowledged {self.acknowledged}, accepted "
            f"{self.accepted}, refused or answered with a text {self.refused}, not acknowledged because the "
            f"bot was down or killed {self.not_acknowledged}, acknowledged but unanswered {self.unanswered}"
            + (f" {self.unanswered_ids[:10]}" if self.unanswered_ids else "")
            + ")",
            *(self.verbs[v].line(v) for v in VERBS if v in self.verbs),
            f"  🔁 reactions not seen (bot killed after them): {self.reactions_not_seen}, ignored while the "
            f"bot was up: {self.reactions_ignored}",
            f"  texts (most common): {reasons or '-'}",
            f"jobs: {self.jobs} ({kinds})",
            f"delivered: {self.delivered} (of which variations partly made and partly refunded: "
            f"{self.partial_refunded}; then deleted by a member with Delete: {self.deleted_by_member})",
            f"failed and refunded: {self.failed_refunded}"
            + (
                f" ({', '.join(f'{k} {n}' for k, n in sorted(self.failed_by_kind.items()))})"
                if self.failed_by_kind
                else ""
            ),
            *(
                [f"  reasons: {'; '.join(f'{n}× {why!r}' for why, n in self.failed_reasons.most_common())}"]
                if self.failed_reasons
                else []
            ),
            f"cancelled and refunded: {self.cancelled_refunded}",
            f"undeliverable and refunded: {self.undeliverable}",
            f"lost: {self.lost}" + (f" {self.lost_ids[:20]}" if self.lost_ids else ""),
            f"delivered twice: {self.delivered_twice}",
            f"delivered only in an ephemeral message (counted as lost): {self.delivered_privately}",
            f"result posts removed by the bot itself: {self.removed_by_bot}",
            f"duplicate completions (GPU runs stored twice): {self.duplicate_completions}",
            f"fenced duplicate runs (frozen worker past its lease, fenced out): {self.fenced_runs}",
            f"jobs that needed more than one attempt: {self.retried_jobs}",
            f"ledger mismatches: {self.ledger_mismatches}"
            + (f" {self.ledger_problems[:10]}" if self.ledger_problems else ""),
            f"HD jobs: {sum(self.hd_jobs.values())} ("
            + "".join(f"{status} {n}; " for status, n in sorted(self.hd_jobs.items()))
            + f"each charged VIDEOBOT_HD_COST={HD_COST} per video), posted at twice their source's size "
            f"{self.hd_twice}, not at twice the size: {self.hd_wrong_size}"
            + (f" {self.hd_problems[:10]}" if self.hd_problems else ""),
            "style jobs: "
            + (
                "; ".join(
                    f"{name} {sum(n for (st, _), n in self.style_jobs.items() if st == name)} ("
                    + ", ".join(
                        f"{status} {n}" for (st, status), n in sorted(self.style_jobs.items()) if st == name
                    )
                    + ")"
                    for name in sorted({st for st, _ in self.style_jobs})
                )
                or "0"
            ),
            f"enhance jobs that ran: {self.enhanced + sum(self.enhance_notes.values())} (rendered from the "
            f"enhanced prompt {self.enhanced}"
            + "".join(f"; {n}× {note!r}" for note, n in self.enhance_notes.most_common())
            + ")",
            f"chaos: {self.worker_kills} worker kill -9, {self.bot_kills} bot kill -9, {self.stops} SIGSTOP past "
            "the lease",
            f"recovery (kill/stop of a worker holding a job -> that job running again): {len(rec)} of "
            f"{self.kills_holding_a_job}, p50 {pct(rec, 50):.1f} s, p99 {pct(rec, 99):.1f} s, max "
            f"{max(rec, default=0):.1f} s (ended without a rerun: {sum(self.not_rerun.values())}"
            + "".join(f", {status} {n}" for status, n in sorted(self.not_rerun.items()))
            + ")",
            f"bot restart (kill -9 -> ready): p50 {pct(restarts, 50):.1f} s, max {max(restarts, default=0):.1f} s",
            f"wall time: {self.wall_seconds:.0f} s, settled: {self.settled}",
        ]


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def picture(seed: int) -> tuple[str, bytes]:
    """A small picture with structure, as PNG, JPEG or WebP (by ``seed``)."""
    from PIL import Image

    w, h = ((96, 64), (64, 96), (80, 80))[seed % 3]
    fmt, ext = (("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"))[seed % 3]
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 255 // w + seed) % 256, y * 255 // h, 90) for y in range(h) for x in range(w)])
    out = io.BytesIO()
    im.save(out, format=fmt)
    return f"picture-{seed}.{ext}", out.getvalue()


def short(text: str) -> str:
    """A text as a refusal reason to count (numbers and mentions folded, cut short)."""
    text = re.sub(r"<[@#!&]*\d+>", "<…>", text)
    return re.sub(r"\d+", "N", text.strip().splitlines()[0] if text.strip() else "")[:72]


class Chaos:
    def __init__(self, cfg: ChaosConfig, workdir: Path) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.workdir = workdir
        credits = cfg.submissions * 5 + 10
        env = {
            "VIDEOBOT_LEASE_SECONDS": str(cfg.lease_seconds),
            "VIDEOBOT_HEARTBEAT_SECONDS": str(cfg.heartbeat_seconds),
            "VIDEOBOT_LOG_LEVEL": "INFO",
            "VIDEOBOT_POLL_SECONDS": "0.2",
            "VIDEOBOT_DEFAULT_QUOTA": str(credits),
            "VIDEOBOT_MAX_QUEUED_PER_USER": str(credits),
            "VIDEOBOT_HD_COST": str(HD_COST),
        }
        self.credits = credits
        self.h = BotHarness(workdir, worker=False, db="postgresql" if cfg.postgres else "sqlite",
                            common_env=env, extra_members=cfg.users)  # fmt: skip
        self.workers = [_Proc(f"worker{i}", workdir / f"worker{i}.log") for i in range(cfg.workers)]
        self.worker_ids: list[str | None] = [None] * cfg.workers
        self.worker_ready = [asyncio.Event() for _ in range(cfg.workers)]
        self.bot_up = asyncio.Event()
        self.report = ChaosReport()
        self.sent: list[Sent] = []
        self.recent: list[float] = []  # when job-making submissions were sent (time.monotonic())
        self.reacted: set[tuple[int, int]] = set()  # (message, member): one 🔁 each
        self.deleted_on_purpose: set[int] = set()  # posts a Delete by their requester or a moderator took
        self.pending_recovery: dict[int, float] = {}  # job id -> time of the kill (time.time())
        self.tasks: set[asyncio.Task] = set()
        self.deck: list[str] = []
        self.postponed: Counter[str] = Counter()
        self.pressed: set[str] = set()  # Cancel buttons pressed
        self.styled = 0  # /video style: sent
        self.hub = workdir / "hub"  # the offline Hugging Face cache the workers find the styles in

    # ------------------------------------------------------------------ the server's styles
    def build_styles(self) -> None:
        """Tiny random LoRAs as Hub repos in ``self.hub``: one for the tiny model (it fits), one for tiny
        Wan's attention only (it does not fit the tiny model). Builds the tiny model in the data folder
        on the way, as the first worker would."""
        from generator.pipeline import VideoPipeline
        from generator.tiny_lora import build_tiny_lora, place_in_hub_cache

        loras = self.workdir / "loras"
        tiny = VideoPipeline.load("tiny", data_dir=self.h.data_dir, device="cpu")
        for (_, source), pipe, targets in (
            (STYLE_FITS, tiny, None),
            (STYLE_MISFIT, VideoPipeline.load("tiny-wan", data_dir=self.workdir / "wan", device="cpu"), ["to_q", "to_k"]),
        ):  # fmt: skip
            repo, _, weight = source.partition(":")
            made = build_tiny_lora(pipe.pipe, loras / weight, targets=targets)
            place_in_hub_cache(made, self.hub, repo, weight)

    async def add_styles(self) -> None:
        """A moderator adds the two styles with ``/videoconfig style add`` (not counted as submissions)."""
        h = self.h
        for name, source in (STYLE_FITS, STYLE_MISFIT):
            sent = await h.fd.slash(
                h.guild_id, h.channel_id, h.mod_id, "videoconfig", {"name": name, "source": source},
                ["style", "add"],
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while not (text := answer_text(sent)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"/videoconfig style add {name}: no answer")
                await asyncio.sleep(0.1)
            if f"Added the style `{name}`" not in text:
                raise RuntimeError(f"/videoconfig style add {name}: {text}")

    # ------------------------------------------------------------------ processes
    async def start_worker(self, i: int) -> None:
        proc = self.workers[i]
        wid = f"chaos-w{i}-{proc.starts + 1}"
        env = self.h._env(
            {
                "VIDEOBOT_WORKER_ID": wid,
                "VIDEOBOT_TEST_STEP_DELAY": str(self.cfg.step_delay),
                "OOM_SEEDS": str(OOM_SEED),
                "HF_HUB_CACHE": str(self.hub),
            }
        )
        await proc.start([sys.executable, str(OOM_WORKER)], env, self.workdir)
        self.worker_ids[i] = wid
        await proc.wait_log(WORKER_READY, 180)
        self.worker_ready[i].set()

    async def held_job(self, i: int) -> int | None:
        wid = self.worker_ids[i]
        async with self.h.db.sessionmaker() as s:  # type: ignore[union-attr]
            return (
                await s.execute(
                    select(Job.id).where(Job.status == "running", Job.lease_owner == wid).limit(1)
                )
            ).scalar_one_or_none()

    async def pick_worker(self, timeout: float = 5.0) -> tuple[int, int | None] | None:
        """A ready worker, preferably one holding a job (waits up to ``timeout`` for one)."""
        deadline = time.monotonic() + timeout
        while True:
            ready = [
                i
                for i in range(len(self.workers))
                if self.worker_ready[i].is_set() and self.workers[i].running
            ]
            self.rng.shuffle(ready)
            for i in ready:
                job = await self.held_job(i)
                if job is not None:
                    return i, job
            if time.monotonic() > deadline and ready:
                return ready[0], None
            if time.monotonic() > deadline + 60:  # every worker still restarting (a slow, loaded machine)
                return None
            await asyncio.sleep(0.1)

    async def kill_worker(self) -> None:
        picked = await self.pick_worker()
        if picked is None:
            return
        i, job = picked
        self.worker_ready[i].clear()
        killed_at = time.time()
        await self.workers[i].stop(signal.SIGKILL, 5)
        self.report.worker_kills += 1
        if job is not None:
            self.report.kills_holding_a_job += 1
            self.pending_recovery[job] = killed_at
        await asyncio.sleep(self.rng.uniform(0, 1.0))
        self.spawn(self.start_worker(i))

    async def stop_worker(self) -> None:
        picked = await self.pick_worker()
        if picked is None:
            return
        i, job = picked
        pid = self.workers[i].pid
        assert pid is not None
        stopped_at = time.time()
        os.kill(pid, signal.SIGSTOP)
        self.report.stops += 1
        if job is not None:
            self.report.kills_holding_a_job += 1
            self.pending_recovery[job] = stopped_at
        try:
            await asyncio.sleep(self.cfg.lease_seconds + self.cfg.stop_extra)
        finally:
            os.kill(pid, signal.SIGCONT)

    async def kill_bot(self) -> None:
        self.bot_up.clear()
        await self.h.kill_bot()
        self.report.bot_kills += 1
        await asyncio.sleep(self.rng.uniform(0, 2.0))
        t0 = time.monotonic()
        await self.h.start_bot(timeout=120)
        self.report.bot_restart_seconds.append(time.monotonic() - t0)
        self.bot_up.set()

    def spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ------------------------------------------------------------------ what members act on
    async def active_jobs(self) -> list[Job]:
        async with self.h.db.sessionmaker() as s:  # type: ignore[union-attr]
            return list((await s.execute(select(Job).where(Job.status.in_(("queued", "running"))))).scalars())

    def result_posts(self) -> list[tuple[dict[str, Any], int]]:
        """Public result posts in the channel now, with their job id, newest last."""
        found = []
        for m in self.h.fd.messages(self.h.channel_id, include_ephemeral=False):
            for a in m["attachments"]:
                match = RESULT_FILE.fullmatch(a["filename"])
                if match:
                    found.append((m, int(match[1])))
                    break
        return found

    def recent_post(self) -> tuple[dict[str, Any], int] | None:
        """One of the last 30 result posts (members act on what they just saw)."""
        posts = self.result_posts()[-30:]
        return self.rng.choice(posts) if posts else None

    def member(self) -> int:
        return self.rng.choice(self.h.members)

    def button(self, message: dict[str, Any], prefix: str) -> str | None:
        return next(
            (b["custom_id"] for b in self.h.fd.buttons(message) if b["custom_id"].startswith(prefix)), None
        )

    # ------------------------------------------------------------------ the verbs
    async def submit(self, n: int) -> None:
        """One submission: a verb drawn from the mix (one that has nothing to act on yet: a /video)."""
        if not self.deck:  # each verb's share of a deck is its weight; the order is seeded
            self.postponed.clear()
            self.deck = [v for v in VERBS for _ in range(self.cfg.mix.get(v, 0))]
            self.rng.shuffle(self.deck)
        verb = self.deck.pop()
        if not await getattr(self, f"do_{verb}")(n):
            if self.postponed[verb] < 3 * self.cfg.mix[verb]:  # nothing to act on yet: later in this deck
                self.postponed[verb] += 1
                self.deck.insert(self.rng.randrange(len(self.deck) + 1), verb)
            verb = "video"
            await self.do_video(n)
        self.report.submitted += 1
        self.report.verbs.setdefault(verb, VerbFigures()).submitted += 1
        if verb in MAKES_JOBS:
            self.recent.append(time.monotonic())

    def track(self, verb: str, interaction: Interaction, **extra: Any) -> Interaction:
        self.sent.append(Sent(verb, interaction, **extra))
        return interaction

    async def slash(self, verb: str, user: int, name: str, **options: Any) -> Interaction:
        return self.track(verb, await self.h.slash(user, name, **options))

    async def do_video(self, n: int) -> bool:
        options: dict[str, Any] = {}
        if self.rng.random() < self.cfg.oom_rate / 4:  # now and then a video the GPU cannot make
            options["seed"] = OOM_SEED
        await self.slash("video", self.member(), "video", prompt=f"chaos {n}: a fox in the snow", **options)
        return True

    async def do_variations(self, n: int) -> bool:
        options: dict[str, Any] = {"variations": self.rng.randint(2, 4)}
        if self.rng.random() < self.cfg.oom_rate:  # the second take runs out of memory: partly refunded
            options["seed"] = OOM_SEED - 1
        await self.slash("variations", self.member(), "video", prompt=f"chaos {n}: paper cranes", **options)
        return True

    async def do_image(self, n: int) -> bool:
        name, data = picture(n)
        pic = self.h.fd.attachment(name, data)
        await self.slash("image", self.member(), "video", prompt=f"chaos {n}: it slowly turns", image=pic)
        return True

    async def do_end_image(self, n: int) -> bool:
        """An end picture, half of the time with a first picture (from one to the other)."""
        name, data = picture(n + 1)
        options: dict[str, Any] = {"end_image": self.h.fd.attachment(f"end-{name}", data)}
        if self.rng.random() < 0.5:
            options["image"] = self.h.fd.attachment(*picture(n))
        await self.slash(
            "end_image", self.member(), "video", prompt=f"chaos {n}: day turns to night", **options
        )
        return True

    async def do_loop(self, n: int) -> bool:
        await self.slash("loop", self.member(), "video", prompt=f"chaos {n}: waves roll in", loop=True)
        return True

    async def do_style(self, n: int) -> bool:
        self.styled += 1
        style = STYLE_MISFIT[0] if self.styled % self.cfg.misfit_every == 0 else STYLE_FITS[0]
        await self.slash("style", self.member(), "video", prompt=f"chaos {n}: a red boat", style=style)
        return True

    async def do_enhance(self, n: int) -> bool:
        await self.slash(
            "enhance", self.member(), "video", prompt=f"chaos {n}: a fox in the snow", enhance=True
        )
        return True

    async def do_hd(self, n: int) -> bool:
        """HD on one of the last 30 results that offers it (not an HD, end-picture, loop or extension)."""
        offered = [
            (m, custom_id)
            for m, _ in self.result_posts()[-30:]
            if (custom_id := self.button(m, "videobot:hd:"))
        ]
        if not offered:
            return False
        post, custom_id = self.rng.choice(offered)
        return await self.click("hd", self.member(), post, custom_id) is not None

    async def click(
        self, verb: str, user: int, message: dict[str, Any], custom_id: str, **extra: Any
    ) -> Interaction | None:
        try:
            clicked = await self.h.fd.click(
                self.h.guild_id, self.h.channel_id, user, int(message["id"]), custom_id
            )
        except ValueError:  # deleted meanwhile (a Delete a moment ago): the member cannot click it
            return None
        return self.track(verb, clicked, target=int(message["id"]), **extra)

    async def do_rerun(self, n: int) -> bool:
        picked = self.recent_post()
        custom_id = picked and self.button(picked[0], "videobot:rerun:")
        if not custom_id:
            return False
        return await self.click("rerun", self.member(), picked[0], custom_id) is not None  # type: ignore[index]

    async def do_reaction(self, n: int) -> bool:
        picked = self.recent_post()
        if picked is None:
            return False
        mid = int(picked[0]["id"])
        user = self.member()
        if (mid, user) in self.reacted:
            return False
        self.reacted.add((mid, user))
        try:
            await self.h.react(user, mid, "🔁")
        except Exception:  # noqa: BLE001 - deleted meanwhile
            return False
        self.sent.append(Sent("reaction", reaction=(mid, user, self.h.bot.starts)))
        return True

    async def do_remix(self, n: int) -> bool:
        return await self.form_from_click("remix", n)

    async def do_extend(self, n: int) -> bool:
        return await self.form_from_click("extend", n)

    async def form_from_click(self, verb: str, n: int) -> bool:
        picked = self.recent_post()
        custom_id = picked and self.button(picked[0], f"videobot:{verb}:")
        if not custom_id:
            return False
        opened = await self.click(verb, self.member(), picked[0], custom_id)  # type: ignore[index]
        if opened is None:
            return False
        values = {"prompt": f"chaos {n}: the {verb} goes on"}
        self.spawn(self.fill_form(verb, opened, values))
        return True

    async def fill_form(self, verb: str, opened: Interaction, values: dict[str, str]) -> None:
        """The member reads the form and types for a moment (the bot may be killed meanwhile), then submits."""
        try:
            await opened.acknowledged(10)
        except TimeoutError:
            return  # never acknowledged: counted with the click
        if opened.modal is None:
            return  # refused at the click (with its text)
        await asyncio.sleep(self.rng.uniform(0, 2.0))
        self.track(verb, await self.h.fd.submit_modal(opened, values))

    async def do_animate(self, n: int) -> bool:
        fd, h = self.h.fd, self.h
        name, data = picture(n)
        mid = fd.post_user_message(self.member(), h.channel_id, f"look {n}", files=[(name, data)])
        opened = self.track(
            "animate", await fd.message_command(h.guild_id, h.channel_id, self.member(), "Animate", mid)
        )
        prompt = "" if self.rng.random() < 0.5 else f"chaos {n}: it comes alive"
        self.spawn(self.fill_form("animate", opened, {"prompt": prompt}))
        return True

    async def do_delete(self, n: int) -> bool:
        picked = self.recent_post()
        custom_id = picked and self.button(picked[0], "videobot:delete:")
        if not custom_id:
            return False
        post, job_id = picked  # type: ignore[misc]
        async with self.h.db.sessionmaker() as s:  # type: ignore[union-attr]
            owner = (await s.execute(select(Job.user_id).where(Job.id == job_id))).scalar_one()
        roll = self.rng.random()
        user, allowed = (
            (owner, True) if roll < 0.75 else (self.h.mod_id, True) if roll < 0.85 else (None, False)
        )
        if user is None:
            user = next(u for u in (self.member(), self.h.other_id) if u != owner)
        clicked = await self.click("delete", user, post, custom_id, allowed=allowed)
        if clicked is None:
            return False
        if allowed:
            self.deleted_on_purpose.add(int(post["id"]))
        return True

    async def cancellable(self) -> Job | None:
        active = await self.active_jobs()
        return self.rng.choice(active) if active else None

    async def do_cancel_button(self, n: int) -> bool:
        """A member waits for a status message showing 🛑 Cancel (under this load the status messages
        lag behind the jobs, so most are posted already final, without it) and presses it."""
        self.spawn(self.press_cancel())
        return True

    def cancel_buttons(self) -> list[tuple[dict[str, Any], str]]:
        return [
            (m, custom_id)
            for m in self.h.fd.messages(self.h.channel_id, include_ephemeral=False)[-60:]
            if (custom_id := self.button(m, "videobot:cancel:")) and custom_id not in self.pressed
        ]

    async def press_cancel(self) -> None:
        deadline = time.monotonic() + self.cfg.cancel_wait
        while not (shown := self.cancel_buttons()):
            if time.monotonic() > deadline:
                self.report.verbs.setdefault("cancel_button", VerbFigures()).no_target += 1
                return
            await asyncio.sleep(0.5)
        status, custom_id = self.rng.choice(shown)
        self.pressed.add(custom_id)
        async with self.h.db.sessionmaker() as s:  # type: ignore[union-attr]
            job = await s.get(Job, int(custom_id.rsplit(":", 1)[1]))
        assert job is not None
        allowed = self.rng.random() < 0.9
        user = (
            job.user_id if allowed else next(u for u in (self.member(), self.h.other_id) if u != job.user_id)
        )
        await self.click("cancel_button", user, status, custom_id, allowed=allowed)

    async def do_cancel_command(self, n: int) -> bool:
        job = await self.cancellable()
        if job is None:
            return False
        await self.slash("cancel_command", job.user_id, "cancel", job=job.id)
        return True

    # ------------------------------------------------------------------ the run
    async def submitter(self) -> None:
        cfg = self.cfg
        for n in range(cfg.submissions):
            while True:
                await self.bot_up.wait()
                recent = sum(1 for at in self.recent[-cfg.in_flight :] if time.monotonic() - at < 3)
                if len(await self.active_jobs()) + recent < cfg.in_flight:
                    break
                await asyncio.sleep(0.1)
            await self.submit(n)

    async def chaos(self, events: list[str], done: asyncio.Event) -> None:
        """Fire the events spread over the run, paced by how many submissions were made."""
        n = len(events)
        for k, event in enumerate(events):
            threshold = (k + 1) * self.cfg.submissions / (n + 1)
            while self.report.submitted < threshold and not done.is_set():
                await asyncio.sleep(0.1)
            if done.is_set():
                return
            await self.bot_up.wait()
            if event == "worker":
                await self.kill_worker()
            elif event == "stop":
                await self.stop_worker()
            else:
                await self.kill_bot()

    async def check_recoveries(self) -> None:
        if not self.pending_recovery:
            return
        async with self.h.db.sessionmaker() as s:  # type: ignore[union-attr]
            rows = (
                await s.execute(
                    select(Job.id, Job.started_at, Job.status).where(Job.id.in_(list(self.pending_recovery)))
                )
            ).all()
        for job_id, started_at, status in rows:
            at = self.pending_recovery[job_id]
            if started_at is not None and started_at > at:
                self.report.recoveries.append(started_at - at)
                del self.pending_recovery[job_id]
            elif status in FINAL:
                self.report.not_rerun[status] += 1
                del self.pending_recovery[job_id]

    async def recovery_monitor(self) -> None:
        while True:
            await self.check_recoveries()
            await asyncio.sleep(0.25)

    async def settled(self) -> bool:
        if (
            self.report.submitted < self.cfg.submissions
            or self.tasks
            or any(not w.running for w in self.workers)
            or not self.bot_up.is_set()
        ):
            return False
        async with self.h.db.sessionmaker() as s:  # type: ignore[union-attr]
            jobs = list((await s.execute(select(Job))).scalars())
            keys = {j.idempotency_key for j in jobs}
        now = time.monotonic()
        for sent in self.sent:
            i = sent.interaction
            if i is None or now - i.created > 30:
                continue
            if i.initial is None and now - i.created < 5:
                return False  # an acknowledgement may still come
            if (
                i.initial is not None
                and i.modal is None
                and not answer_text(i)
                and f"interaction:{i.id}" not in keys
            ):
                return False  # "thinking…": the answer may still come
        return all(j.status in FINAL and j.notified_at is not None for j in jobs)

    async def run(self) -> ChaosReport:
        cfg, h = self.cfg, self.h
        t0 = time.monotonic()
        old_pg = os.environ.get(PG_ENV)
        if cfg.postgres:
            os.environ[PG_ENV] = cfg.postgres
        try:
            await asyncio.to_thread(self.build_styles)
            async with h:
                self.bot_up.set()
                await self.add_styles()
                for i in range(len(self.workers)):  # one at a time: the first builds the tiny model
                    await self.start_worker(i)
                events = ["worker"] * cfg.worker_kills + ["bot"] * cfg.bot_kills + ["stop"] * cfg.stops
                self.rng.shuffle(events)
                done = asyncio.Event()
                monitor = asyncio.create_task(self.recovery_monitor())
                chaos = asyncio.create_task(self.chaos(events, done))
                submitter = asyncio.create_task(self.submitter())
                deadline = t0 + cfg.deadline
                try:
                    while time.monotonic() < deadline:
                        if submitter.done():
                            submitter.result()
                        if chaos.done():
                            chaos.result()
                        if chaos.done() and submitter.done() and await self.settled():
                            self.report.settled = True
                            break
                        await asyncio.sleep(0.5)
                finally:
                    done.set()
                    for task in (submitter, chaos, monitor, *self.tasks):
                        task.cancel()
                    await asyncio.gather(submitter, chaos, monitor, *self.tasks, return_exceptions=True)
                    for w in self.workers:  # never leave a frozen worker behind
                        if w.running and w.pid:
                            os.kill(w.pid, signal.SIGCONT)
                    await self.measure()
                    for w in self.workers:
                        await w.stop()
        finally:
            if old_pg is None:
                os.environ.pop(PG_ENV, None)
            else:
                os.environ[PG_ENV] = old_pg
        self.report.wall_seconds = time.monotonic() - t0
        return self.report

    # ------------------------------------------------------------------ the figures
    async def measure(self) -> None:
        h, r = self.h, self.report
        assert h.db is not None
        await self.check_recoveries()
        async with h.db.sessionmaker() as s:
            jobs = {j.id: j for j in (await s.execute(select(Job).order_by(Job.id))).scalars()}
            ledger = list((await s.execute(select(LedgerEntry))).scalars())
            users = {(j.guild_id, j.user_id) for j in jobs.values()}
            for guild_id, user_id in sorted(users):
                st = await quota.status(
                    s, guild_id, user_id, default_limit=self.credits, window_seconds=24 * 3600.0
                )
                total = await quota.ledger_sum(s, guild_id, user_id)
                if st.balance != st.limit + total:
                    r.ledger_problems.append(f"user {user_id}: balance {st.balance} != {st.limit} + {total}")
        self.measure_interactions(jobs)
        posts = self.measure_posts()
        self.measure_jobs(jobs, ledger, posts)
        self.measure_workers()

    def measure_interactions(self, jobs: dict[int, Job]) -> None:
        r = self.report
        by_key = {j.idempotency_key: j for j in jobs.values()}
        for sent in self.sent:
            figures = r.verbs.setdefault(sent.verb, VerbFigures())
            if sent.reaction is not None:
                mid, user, starts = sent.reaction
                prefix = f"rerun:{mid}:{user}:"
                if any(key.startswith(prefix) for key in by_key):
                    figures.accepted += 1
                    r.accepted += 1
                elif self.h.bot.starts != starts:
                    r.reactions_not_seen += 1
                else:
                    r.reactions_ignored += 1
                continue
            i = sent.interaction
            assert i is not None
            figures.interactions += 1
            text = answer_text(i)
            if f"interaction:{i.id}" in by_key:
                figures.accepted += 1
                r.accepted += 1
                if i.response_type == 5 and not text:  # queued, but the "thinking…" stayed
                    figures.unanswered += 1
                    r.unanswered += 1
                    r.unanswered_ids.append(f"{sent.verb}:{i.id} (job {by_key[f'interaction:{i.id}'].id})")
            elif i.initial is None:
                figures.not_acknowledged += 1
                r.not_acknowledged += 1
            elif i.modal is not None:
                figures.forms += 1
            elif text:
                figures.refused += 1
                r.refused += 1
                r.refusal_texts[f"{sent.verb}: {short(text)}"] += 1
            else:
                figures.unanswered += 1
                r.unanswered += 1
                r.unanswered_ids.append(f"{sent.verb}:{i.id}")
            if i.initial is not None:
                r.acknowledged += 1

    def measure_posts(self) -> dict[int, list[dict[str, Any]]]:
        """Every message carrying a job's files (job id → messages), deleted ones included."""
        r, fd = self.report, self.h.fd
        posts: dict[int, list[dict[str, Any]]] = {}
        for m in fd.messages(self.h.channel_id, include_ephemeral=True, include_deleted=True):
            ids = {int(found[1]) for a in m["attachments"] if (found := RESULT_FILE.fullmatch(a["filename"]))}
            for job_id in ids:
                if m["deleted"] and int(m["id"]) not in self.deleted_on_purpose:
                    r.removed_by_bot += 1
                    continue
                posts.setdefault(job_id, []).append(m)
        r.delivered_twice = sum(1 for found in posts.values() if len(found) > 1)
        r.delivered_privately = sum(1 for found in posts.values() if any(m["ephemeral"] for m in found))
        return posts

    def measure_jobs(
        self, jobs: dict[int, Job], ledger: list[LedgerEntry], posts: dict[int, list[dict[str, Any]]]
    ) -> None:
        r = self.report
        rows: dict[int, list[LedgerEntry]] = {}
        for e in ledger:
            if e.job_id is not None:
                rows.setdefault(e.job_id, []).append(e)
        for j in jobs.values():
            r.jobs_by_kind[self.kind_of(j)] += 1
            self.measure_new_verbs(j, jobs, posts)
            told = j.status in FINAL and j.notified_at is not None
            public = [m for m in posts.get(j.id, []) if not m["ephemeral"]]
            files = len(public[0]["attachments"]) if public else 0
            wanted = int((j.params or {}).get("num_videos") or 1)
            if j.status == "delivered":
                told = told and bool(public)
                r.delivered += told
                r.deleted_by_member += bool(public) and all(m["deleted"] for m in public)
            elif j.status == "failed":
                r.failed_refunded += 1
                r.failed_by_kind[self.kind_of(j)] += 1
                r.failed_reasons[short(j.error_message or "")] += 1
            elif j.status == "cancelled":
                r.cancelled_refunded += 1
            elif j.status == "undeliverable":
                r.undeliverable += 1
            if not told:
                r.lost_ids.append(j.id)
            problem = self.ledger_problem(j, rows.get(j.id, []), files if public else wanted, wanted)
            if problem:
                r.ledger_problems.append(f"job {j.id} ({j.status}): {problem}")
            elif j.status == "delivered" and files < wanted:
                r.partial_refunded += 1
            r.retried_jobs += j.attempts > 1
        r.lost = len(r.lost_ids)
        r.ledger_mismatches = len(r.ledger_problems)

    def measure_new_verbs(self, j: Job, jobs: dict[int, Job], posts: dict[int, list[dict[str, Any]]]) -> None:
        """The figures of HD, styles and enhancement for one job."""
        r, params = self.report, j.params or {}
        if params.get("style"):
            r.style_jobs[(str(params["style"]), j.status)] += 1
        if params.get("enhance") and j.started_at is not None and j.status in FINAL:
            if j.enhanced_prompt:
                r.enhanced += 1
            elif j.enhance_note:
                r.enhance_notes[short(j.enhance_note)] += 1
            elif j.status == "delivered":
                r.enhance_notes["(neither an enhanced prompt nor a note)"] += 1
        if j.kind != "hd":
            return
        r.hd_jobs[j.status] += 1
        public = [m for m in posts.get(j.id, []) if not m["ephemeral"]]
        source = jobs.get(j.parent_job_id or 0)
        if j.status != "delivered" or not public or source is None:
            return
        size = video_size(self.h.fd.attachment_bytes(public[0]["attachments"][0]))
        want = (2 * int(source.params["width"]), 2 * int(source.params["height"]))
        if size == want:
            r.hd_twice += 1
        else:
            r.hd_wrong_size += 1
            r.hd_problems.append(
                f"job {j.id}: {size[0]}x{size[1]}, source job {source.id} x2 is {want[0]}x{want[1]}"
            )

    @staticmethod
    def kind_of(j: Job) -> str:
        params = j.params or {}
        if j.kind != "command":
            return j.kind
        if int(params.get("num_videos") or 1) > 1:
            return "variations"
        for verb in ("end_image", "loop", "style", "enhance"):
            if params.get(verb):
                return verb
        return "image" if params.get("verb") == "image" else "command"

    @staticmethod
    def ledger_problem(j: Job, rows: list[LedgerEntry], posted: int, wanted: int) -> str:
        """What is wrong with a job's ledger rows ('' when nothing)."""
        kinds = Counter(e.kind for e in rows)
        amounts = {e.kind: e.amount for e in rows}
        describe = str(sorted((e.kind, e.amount) for e in rows))
        if kinds["charge"] != 1 or amounts["charge"] != -j.cost:
            return f"charged {describe}, cost {j.cost}"
        if (j.params or {}).get("hd") and j.cost != HD_COST * wanted:
            return f"an HD job of {wanted} video(s) cost {j.cost}, VIDEOBOT_HD_COST is {HD_COST}"
        if kinds["refund"] > 1 or kinds["partial_refund"] > 1:
            return f"refunded more than once {describe}"
        given_back = amounts.get("refund", 0) + amounts.get("partial_refund", 0)
        if j.status in REFUNDED:
            return "" if given_back == j.cost else f"refunds {describe} for cost {j.cost}"
        if j.status == "delivered":
            want = j.cost * (wanted - posted) // wanted if posted < wanted else 0
            if kinds["refund"] or given_back != want:
                return f"{posted} of {wanted} posted, refunds {describe}, expected a partial refund of {want}"
        return ""

    def measure_workers(self) -> None:
        r = self.report
        done_lines: Counter[int] = Counter()
        fenced: set[tuple[str, int, int]] = set()
        for w in self.workers:
            start = 0
            for line in w.log().splitlines():
                if line.startswith("===== "):
                    start += 1
                    continue
                if not line.startswith("{"):
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                job_id = rec.get("job_id")
                if job_id is None:
                    continue
                msg = rec.get("msg", "")
                if re.match(r"job \d+ done in", msg):
                    done_lines[job_id] += 1
                elif "lease lost" in msg:
                    fenced.add((w.name, start, job_id))
        r.duplicate_completions = sum(n - 1 for n in done_lines.values() if n > 1)
        r.fenced_runs = len(fenced)


def video_size(data: bytes) -> tuple[int, int]:
    """Width and height of an MP4's first decoded frame."""
    import av

    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


def answer_text(i: Interaction) -> str:
    """The text the member got for an interaction: its first response's, the deferred response's edit,
    or a follow-up's ('' when none)."""
    initial = i.initial or {}
    if initial.get("type") == 4:
        return str((initial.get("data") or {}).get("content") or "")
    if initial.get("type") == 5:
        texts = [(i.original or {}).get("content") or "", *(m.get("content") or "" for m in i.followups)]
        return next((t for t in texts if t), "")
    return ""


async def run_chaos(cfg: ChaosConfig, workdir: Path) -> ChaosReport:
    """Run one chaos session in ``workdir`` (logs and the database stay there) and return its figures."""
    return await Chaos(cfg, Path(workdir)).run()


def parse_mix(text: str) -> dict[str, int]:
    mix = dict(VERBS)
    for part in filter(None, (p.strip() for p in text.split(","))):
        verb, _, weight = part.partition("=")
        if verb not in VERBS:
            raise argparse.ArgumentTypeError(f"unknown verb {verb!r} (known: {', '.join(VERBS)})")
        mix[verb] = int(weight)
    return mix


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = ChaosConfig()
    parser.add_argument("--submissions", "--jobs", type=int, default=d.submissions,
                        help="member actions in all (commands, clicks, forms, reactions)")  # fmt: skip
    parser.add_argument("--worker-kills", type=int, default=d.worker_kills)
    parser.add_argument("--bot-kills", type=int, default=d.bot_kills)
    parser.add_argument("--stops", type=int, default=d.stops)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--deadline", type=float, default=d.deadline, help="seconds for the whole run")
    parser.add_argument("--postgres", help="PostgreSQL admin URL (postgresql+asyncpg://...); default SQLite")
    parser.add_argument("--workers", type=int, default=d.workers)
    parser.add_argument("--users", type=int, default=d.users)
    parser.add_argument("--in-flight", type=int, default=d.in_flight)
    parser.add_argument("--misfit-every", type=int, default=d.misfit_every,
                        help="every this many /video style: ask for the style that does not fit the model")  # fmt: skip
    parser.add_argument("--mix", type=parse_mix, default=dict(VERBS),
                        help="verb=weight,... over the defaults " + ",".join(f"{k}={v}" for k, v in VERBS.items()))  # fmt: skip
    parser.add_argument("--keep", help="keep logs and the database in this folder")
    args = parser.parse_args()
    cfg = ChaosConfig(
        submissions=args.submissions, worker_kills=args.worker_kills, bot_kills=args.bot_kills,
        stops=args.stops, seed=args.seed, deadline=args.deadline, postgres=args.postgres,
        workers=args.workers, users=args.users, in_flight=args.in_flight, mix=args.mix,
        misfit_every=args.misfit_every,
    )  # fmt: skip
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        report = asyncio.run(run_chaos(cfg, Path(args.keep)))
    else:
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            report = asyncio.run(run_chaos(cfg, Path(tmp)))
    for line in report.lines():
        print(line)
    raise SystemExit(1 if report.bad else 0)


if __name__ == "__main__":
    main()
