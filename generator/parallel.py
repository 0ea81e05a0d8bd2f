"""``videobot worker --gpus N``: one job at a time across N GPUs of one machine (diffusers context parallelism).

Wan 2.1 and 2.2 only (see ``PARALLEL_FAMILIES``). The worker process is rank 0. It starts ranks 1..N-1 as child processes (``python -m generator.parallel``),
joins them in a ``torch.distributed`` group (NCCL on CUDA, gloo on CPU), and every rank loads the same
pipeline and calls ``transformer.enable_parallelism(ContextParallelConfig(ulysses_degree=N))`` (or
``ring_degree``): each rank holds the whole model and computes attention on its share of the sequence.

Rank 0 alone talks to the database: it runs the normal ``Worker`` loop (claim, heartbeats, progress,
cancel, encode, store, complete) with a ``ParallelPipeline`` in place of the pipeline. For each job it
broadcasts the parameters; all ranks run the pipeline together; only rank 0's frames are encoded. The
other ranks get a database URL that cannot be opened, so a stray database access fails loudly.

Keeping the group in step: after every denoising step rank 0 broadcasts "go on" or "stop" (cancel,
shutdown), so a stop happens at the same step everywhere and the group stays usable. Anything else that
interrupts one rank mid-job (a crash, an out-of-memory error, a lost peer) leaves the others inside a
collective, so the group is finished: rank 0 records the job's end (a retryable failure: it runs again,
and the attempt counts, so a job that keeps killing a rank ends failed and refunded), stops the ranks
and exits non-zero; ``videobot run``'s supervisor starts a fresh group.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from videobot.errors import InvalidParameters, TransientJobError, VideobotError
from videobot.i18n import msg
from videobot.presets import GenerationParams, resolve_preset
from videobot.runner import MODEL_LOAD_FAILED
from videobot.settings import Settings

log = logging.getLogger(__name__)

#: Families whose transformer runs under diffusers 0.42's context parallelism (checked: 2 ranks, tiny models).
PARALLEL_FAMILIES = {"wan": "Wan 2.1", "wan22": "Wan 2.2"}
#: Families with a context-parallel plan in diffusers 0.42 that failed when tried (2 CPU ranks, tiny models,
#: native attention, Ulysses and ring): kept off until a run shows them working.
BROKEN_FAMILIES = {
    "ltx": "its attention mask is not split with the heads (a shape error inside attention)",
    "ltx2": "its attention mask is not split with the heads (a shape error inside attention)",
}
#: A database URL that cannot be opened: ranks other than 0 get it, so a stray access fails at once.
NO_DATABASE_URL = "sqlite+aiosqlite:////nonexistent/videobot-only-rank-0-uses-the-database.db"
#: A collective that takes longer than this means a rank hangs (a step takes seconds, not minutes).
COLLECTIVE_TIMEOUT_S = 300.0
#: Ranks 1..N-1 wait for the next job inside a broadcast; an idle group is restarted after this long.
IDLE_TIMEOUT = timedelta(days=7)
#: After a rank failure, how long rank 0 lets the running job settle by itself before recording it.
SETTLE_S = 10.0
FAILED = 1
_OP_JOB, _OP_STOP = "job", "stop"


class GroupStop(Exception):
    """Rank 0 stopped the job at this step (cancel or shutdown); every rank stops here together."""


class GroupBroken(TransientJobError):
    """A rank failed mid-job: the group cannot run another job (the job itself may run again)."""


# ----------------------------------------------------------------------------------------- start-up checks
def refusal(settings: Settings) -> str | None:
    """Why this configuration cannot run on ``settings.gpus`` GPUs, or None when it can."""
    import torch

    from generator.pipeline import resolve_auto_model

    n = settings.gpus
    try:
        preset = resolve_preset(resolve_auto_model(settings.model))
    except InvalidParameters as exc:
        return str(exc)
    if preset.family in BROKEN_FAMILIES:
        return (
            f"VIDEOBOT_GPUS={n} (`videobot worker --gpus {n}`): splitting `{preset.name}` ({preset.family}) across GPUs "
            f"with diffusers 0.42's context parallelism fails: {BROKEN_FAMILIES[preset.family]}. It works for "
            f"{', '.join(PARALLEL_FAMILIES.values())} models. Set VIDEOBOT_GPUS=1, or run one worker per GPU "
            "(`CUDA_VISIBLE_DEVICES=1 videobot worker`)."
        )
    if preset.family not in PARALLEL_FAMILIES:
        return (
            f"VIDEOBOT_GPUS={n} (`videobot worker --gpus {n}`) splits one video across GPUs with diffusers context "
            f"parallelism, which works for {', '.join(PARALLEL_FAMILIES.values())} models only; `{preset.name}` is a "
            f"{preset.family} model. Set VIDEOBOT_GPUS=1, or run one worker per GPU "
            "(`CUDA_VISIBLE_DEVICES=1 videobot worker`)."
        )
    if settings.offload not in (None, "none"):
        return (
            f"VIDEOBOT_OFFLOAD={settings.offload} cannot be combined with VIDEOBOT_GPUS={n}: each GPU holds the "
            "whole model under context parallelism. Set VIDEOBOT_OFFLOAD=none or VIDEOBOT_GPUS=1."
        )
    # Settings of the speed options (generator/speed.py), read with getattr so this works before they exist.
    cache, compile_mode = getattr(settings, "step_cache", "off"), getattr(settings, "compile", "off")
    if cache != "off":
        # A step cache decides per rank whether to skip blocks; ranks that decide differently wait on each other.
        return (
            f"VIDEOBOT_STEP_CACHE={cache} cannot be combined with VIDEOBOT_GPUS={n}: each GPU would decide on its "
            "own which steps to skip, and the GPUs must run every step together. Set VIDEOBOT_STEP_CACHE=off."
        )
    if compile_mode != "off":
        return (
            f"VIDEOBOT_COMPILE={compile_mode} cannot be combined with VIDEOBOT_GPUS={n}: diffusers does not compile "
            "a model split with context parallelism. Set VIDEOBOT_COMPILE=off."
        )
    if settings.context_parallel == "ring" and getattr(settings, "attention_backend", "native") == "native":
        # Ring attention merges partial results by their log-sum-exp, which PyTorch's SDPA does not return.
        return (
            "VIDEOBOT_CONTEXT_PARALLEL=ring needs an attention kernel that returns its log-sum-exp: set "
            "VIDEOBOT_ATTENTION_BACKEND=flash (or sage), or VIDEOBOT_CONTEXT_PARALLEL=ulysses."
        )
    if rank_device(settings.device, 0).type == "cuda" and torch.cuda.device_count() < n:
        return (
            f"VIDEOBOT_GPUS={n} but torch sees {torch.cuda.device_count()} CUDA GPU(s) "
            "(check CUDA_VISIBLE_DEVICES); set VIDEOBOT_GPUS to at most that."
        )
    return None


def rank_device(device: str, rank: int) -> Any:
    """The device of ``rank``: GPU ``rank`` on CUDA (``auto``/``cuda``), else the CPU (tests, trying it out)."""
    import torch

    kind = device.split(":")[0]
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device("cuda", rank) if kind == "cuda" else torch.device("cpu")


# ----------------------------------------------------------------------------------------- torch.distributed
def init_group(rank: int, world: int, port: int, device: Any, timeout_s: float) -> Any:
    """Join the process group; returns the gloo group used to hand jobs out (long timeout: ranks idle there)."""
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
        backend = "cpu:gloo,cuda:nccl"  # diffusers gathers small size tensors on gloo when it is there
    else:
        backend = "gloo"
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=timeout_s),
    )
    return dist.new_group(backend="gloo", timeout=IDLE_TIMEOUT)


@contextlib.contextmanager
def _cpu_device_count() -> Iterator[None]:
    """diffusers 0.42 places rank r on accelerator ``r % torch.accelerator.device_count()``, which divides by
    zero on a machine without one; on the CPU pretend there is one device (every rank uses the CPU)."""
    import torch

    original = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.accelerator.device_count = original  # type: ignore[assignment]


def enable_context_parallel(pipeline: Any, world: int, mode: str) -> None:
    """Shard attention over the group: Ulysses (heads all-to-all) or ring (K/V passed around)."""
    from diffusers import ContextParallelConfig

    name = pipeline.preset.name
    for attr in ("transformer", "transformer_2"):
        model = getattr(pipeline.pipe, attr, None)
        if model is None:
            continue
        if getattr(model, "_cp_plan", None) is None:
            raise InvalidParameters(
                msg(
                    "The transformer of `{model}` ({cls}) has no context-parallel plan in this "
                    "diffusers version, so it cannot be split across GPUs: set VIDEOBOT_GPUS=1.",
                    model=name,
                    cls=type(model).__name__,
                )
            )
        if mode == "ring":
            config = ContextParallelConfig(ring_degree=world, ring_anything=True)
        else:
            config = ContextParallelConfig(ulysses_degree=world, ulysses_anything=True)
        guard = _cpu_device_count() if pipeline.device.type == "cpu" else contextlib.nullcontext()
        with guard:
            model.enable_parallelism(config=config)
    log.info("context parallelism on: %s over %d ranks (%s)", name, world, mode)


def _broadcast_object(obj: Any, group: Any) -> Any:
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def _broadcast_flag(stop: bool) -> bool:
    """One int on the default group (gloo part on CUDA too: no GPU sync for a flag), bounded by its timeout."""
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1 if stop else 0], dtype=torch.int32)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


# ----------------------------------------------------------------------------------------- rank 0
class ParallelPipeline:
    """Stands in for ``VideoPipeline`` in rank 0's ``Worker``: each ``run`` runs on every rank at once."""

    def __init__(self, local: Any, idle_group: Any, on_broken: Callable[[str], None]) -> None:
        self.local = local
        self.idle_group = idle_group
        self.on_broken = on_broken
        self.broken: str | None = None
        self.job_id: Callable[[], int | None] = lambda: None

    def __getattr__(self, name: str) -> Any:  # preset, device, dtype, pipe, check_inputs, ...
        return getattr(self.local, name)

    def run(
        self, params: GenerationParams, on_step: Callable[[int, int], None] | None = None, **inputs: Any
    ) -> Any:
        """``VideoPipeline.run`` on every rank; ``inputs`` (a first image, a clip to extend) go to every rank."""
        if self.broken:
            raise GroupBroken(self.broken)
        job_id = self.job_id()
        stopped = False
        # Previews are rank 0's alone (its VAE decode between steps; the other ranks wait at the next step).
        previews = inputs.pop("previews", None)

        def step(k: int, n: int) -> None:
            nonlocal stopped
            error: BaseException | None = None
            try:
                if on_step is not None:
                    on_step(k, n)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the other ranks know
                error = exc
            _broadcast_flag(error is not None)
            if error is not None:
                stopped = True
                raise error

        try:
            job = {"op": _OP_JOB, "job_id": job_id, "params": params.to_dict(), "inputs": inputs}
            _broadcast_object(job, self.idle_group)
            return self.local.run(params, step, previews=previews, **inputs)
        except Exception as exc:
            if stopped:  # every rank stopped at this step: the group is still in step
                raise
            self.broken = f"rank 0 stopped mid-job ({type(exc).__name__}: {exc})"
            self.on_broken(self.broken)
            if isinstance(exc, VideobotError):  # the request's own fault (out of memory, bad input)
                raise
            raise GroupBroken(self.broken) from exc


class Ranks:
    """The child processes of ranks 1..N-1."""

    def __init__(self, settings: Settings, port: int, collective_timeout_s: float) -> None:
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        dump = settings.model_dump(mode="json", by_alias=True, exclude={"discord_token", "database_url"})
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DISCORD_TOKEN")}
        for rank in range(1, settings.gpus):
            cmd = [sys.executable, "-m", "generator.parallel", "--rank", str(rank), "--world", str(settings.gpus),
                   "--port", str(port), "--collective-timeout", str(collective_timeout_s), "--settings", json.dumps(dump)]  # fmt: skip
            self.procs[rank] = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)
            log.info("rank %d started (pid %d)", rank, self.procs[rank].pid)

    def dead(self) -> tuple[int, int] | None:
        """(rank, exit code) of the first rank that has exited, if any."""
        for rank, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                return rank, code
        return None

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    def kill(self) -> None:
        for rank, proc in self.procs.items():
            if proc.poll() is None:
                log.warning("stopping rank %d (pid %d)", rank, proc.pid)
                proc.kill()
        for proc in self.procs.values():
            proc.wait()


def _die_with_parent() -> None:
    """In the child: be killed when rank 0 dies, even by SIGKILL (Linux), so no rank outlives its group."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _hard_exit(code: int) -> None:
    """Exit although a thread is stuck in a collective (it can neither finish nor be interrupted)."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


async def _while_ranks_live(ranks: Ranks, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn`` in a thread; if a rank dies first, stop everything (the thread may be stuck for good)."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    while not task.done():
        gone = ranks.dead()
        if gone is not None:
            rank, code = gone
            line = f"rank {rank} exited with code {code} during start-up"
            log.error(line)
            print(f"videobot: {line}", file=sys.stderr)
            ranks.kill()
            _hard_exit(MODEL_LOAD_FAILED if code == MODEL_LOAD_FAILED else FAILED)
        await asyncio.wait({task}, timeout=0.2)
    return task.result()


async def _lead(settings: Settings, *, port: int, collective_timeout_s: float) -> int:
    import torch.distributed as dist

    from generator.pipeline import ModelLoadError
    from generator.worker import (
        GENERIC_FAILURE,
        Worker,
        db_retry,
        default_worker_id,
        enhancer_for,
        load_pipeline,
        load_safety_for,
        served_models,
    )
    from videobot.db import Database
    from videobot.jobs import JobQueue, QueueConfig

    world = settings.gpus
    device = rank_device(settings.device, 0)
    ranks = Ranks(settings, port, collective_timeout_s)
    try:
        idle = await _while_ranks_live(ranks, init_group, 0, world, port, device, collective_timeout_s)
        local_settings = settings.model_copy(update={"device": str(device)})
        try:
            # Rank 0 loads first, so a download (or a tiny model's build) happens once, not N times at once.
            local = await _while_ranks_live(ranks, load_pipeline, local_settings)
        except ModelLoadError as exc:
            log.error("cannot load the model: %s", exc)
            print(f"videobot: cannot load the model: {exc}", file=sys.stderr)
            ranks.kill()
            _hard_exit(MODEL_LOAD_FAILED)
        from generator.safety import SafetyLoadError

        try:  # on rank 0 alone: it scores what the group made, as a one-GPU worker does
            safety = await _while_ranks_live(ranks, load_safety_for, settings, local)
        except SafetyLoadError as exc:
            log.error("cannot load the safety classifier: %s", exc)
            print(f"videobot: cannot load the safety classifier: {exc}", file=sys.stderr)
            ranks.kill()
            _hard_exit(MODEL_LOAD_FAILED)
        await _while_ranks_live(ranks, dist.barrier, idle)  # the others may load now
        await _while_ranks_live(ranks, dist.barrier, idle)  # every rank has its model
        try:  # sets up the device mesh: a collective of all ranks
            await _while_ranks_live(ranks, enable_context_parallel, local, world, settings.context_parallel)
        except InvalidParameters as exc:
            log.error("cannot split the model: %s", exc)
            print(f"videobot: {exc}", file=sys.stderr)
            ranks.kill()
            _hard_exit(MODEL_LOAD_FAILED)
        await _while_ranks_live(ranks, dist.barrier, idle)  # every rank has split its model
    except BaseException:
        ranks.kill()
        raise

    loop = asyncio.get_running_loop()
    broken = asyncio.Event()
    reason: list[str] = []

    def on_broken(why: str) -> None:  # from the job's thread, before the worker settles the job
        reason.append(why)

        def now() -> None:
            worker.stop()  # no next claim: the group cannot run another job
            broken.set()

        loop.call_soon_threadsafe(now)

    pipeline = ParallelPipeline(local, idle, on_broken)
    db = Database(settings.db_url)
    queue = JobQueue(db, QueueConfig.from_settings(settings))
    worker = Worker(
        settings, queue, pipeline, worker_id=settings.worker_id or default_worker_id(),
        models=served_models(settings, local), safety=safety,
        enhancer=enhancer_for(settings, local),  # on rank 0 alone, like the safety check
    )  # fmt: skip
    pipeline.job_id = lambda: worker.current.claim.job_id if worker.current else None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    log.info("worker %s ready: model %s on %d ranks (%s), serving %s", worker.worker_id, local.preset.name, world,
             settings.context_parallel, worker.models)  # fmt: skip

    async def watch() -> None:
        while not broken.is_set():
            gone = ranks.dead()
            if gone is not None:
                reason.append(f"rank {gone[0]} exited with code {gone[1]}")
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(broken.wait(), 0.2)

    work = asyncio.create_task(worker.run(), name="worker")
    watcher = asyncio.create_task(watch(), name="ranks")
    try:
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():  # a normal stop (SIGTERM): release the other ranks
            watcher.cancel()
            work.result()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(_broadcast_object, {"op": _OP_STOP}, idle), 30)
            if not ranks.wait(30):
                ranks.kill()
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
            log.info("worker %s stopped after %d job(s)", worker.worker_id, worker.jobs_done)
            return 0
        why = reason[0] if reason else "a rank failed"
        for _ in range(20):  # name the rank that died, when one did (gloo may report it first, from rank 0)
            gone = ranks.dead()
            if gone is not None:
                why = f"rank {gone[0]} exited with code {gone[1]}"
                break
            await asyncio.sleep(0.1)
        log.error("the group of %d ranks is broken (%s); stopping it", world, why)
        pipeline.broken = pipeline.broken or why
        worker.stop()
        done, _ = await asyncio.wait({work}, timeout=SETTLE_S)
        if work in done:  # the job's thread came back (gloo raises when a peer goes): the worker settled it
            ranks.kill()
            return FAILED
        # The job's thread is stuck in a collective (NCCL waits for a dead peer): record the job's end here.
        running = worker.current
        if running is not None:
            log.error(
                "job %s: a rank failed mid-job; queued again (the attempt counts)", running.claim.job_id
            )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    db_retry(queue.fail, running.claim, GENERIC_FAILURE, code="rank_failed", retryable=True),
                    30,
                )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(queue.worker_gone(worker.worker_id), 10)
        ranks.kill()
        _hard_exit(FAILED)
        return FAILED  # not reached
    except BaseException:
        ranks.kill()
        raise
    finally:
        watcher.cancel()
        await db.dispose()


def main(settings: Settings, *, collective_timeout_s: float = COLLECTIVE_TIMEOUT_S) -> int:
    """Entry point of ``videobot worker`` when ``settings.gpus`` > 1 (this process is rank 0)."""
    why = refusal(settings)
    if why is not None:
        log.error("%s", why)
        print(f"videobot: {why}", file=sys.stderr)
        return MODEL_LOAD_FAILED  # a configuration error: `videobot run` must not restart it in a loop
    try:
        return asyncio.run(_lead(settings, port=_free_port(), collective_timeout_s=collective_timeout_s))
    except KeyboardInterrupt:
        return 130


# ----------------------------------------------------------------------------------------- ranks 1..N-1
def follow(settings: Settings, rank: int, world: int, port: int, collective_timeout_s: float) -> int:
    """Ranks 1..N-1: load the model, then run each job rank 0 broadcasts until it says stop. No database."""
    import torch.distributed as dist

    from generator.pipeline import ModelLoadError
    from generator.worker import load_pipeline

    device = rank_device(settings.device, rank)
    idle = init_group(rank, world, port, device, collective_timeout_s)
    dist.barrier(group=idle)  # rank 0 has loaded the model (downloaded or built it once)
    try:
        pipeline = load_pipeline(settings.model_copy(update={"device": str(device)}))
    except ModelLoadError as exc:
        log.error("rank %d cannot load the model: %s", rank, exc)
        return MODEL_LOAD_FAILED
    dist.barrier(group=idle)
    try:
        enable_context_parallel(pipeline, world, settings.context_parallel)
    except InvalidParameters as exc:
        log.error("rank %d cannot split the model: %s", rank, exc)
        return MODEL_LOAD_FAILED
    dist.barrier(group=idle)

    def step(k: int, n: int) -> None:
        if _broadcast_flag(False):
            raise GroupStop()

    while True:
        order = _broadcast_object(None, idle)
        if order["op"] == _OP_STOP:
            break
        job_id = order.get("job_id")
        log.info("job %s: rank %d joins", job_id, rank)
        try:
            pipeline.run(GenerationParams.from_dict(order["params"]), step, **order["inputs"])
        except GroupStop:
            log.info("job %s: rank %d stopped with the group", job_id, rank)
    log.info("rank %d: stopping", rank)
    dist.destroy_process_group()
    return 0


def _follow_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m generator.parallel", description="A rank > 0 of `videobot worker --gpus N` (started by rank 0).")  # fmt: skip
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--world", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--settings", required=True, help="rank 0's settings as JSON, without secrets")
    ap.add_argument("--collective-timeout", type=float, default=COLLECTIVE_TIMEOUT_S)
    args = ap.parse_args(argv)
    settings = Settings(_env_file=None, **{**json.loads(args.settings), "DATABASE_URL": NO_DATABASE_URL})  # type: ignore[arg-type]
    from videobot.logs import setup_logging

    setup_logging(settings.log_level, process=f"worker-rank{args.rank}")
    try:
        return follow(settings, args.rank, args.world, args.port, args.collective_timeout)
    except Exception:
        log.exception("rank %d failed; the group stops", args.rank)
        _hard_exit(FAILED)
        return FAILED


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: rank 0 decides
    threading.current_thread().name = "rank"
    raise SystemExit(_follow_main())
