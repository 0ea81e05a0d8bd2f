"""``videobot worker --gpus 2`` on the CPU: two real ranks over gloo with diffusers context parallelism.

Real processes, the real tiny Wan model split by Ulysses attention across the two ranks, a real SQLite
queue. Rank 1 is given a database URL that cannot be opened, so a job that succeeds proves rank 1 never
touched the database.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from generator.encode import encode_mp4, probe_mp4
from generator.pipeline import VideoPipeline
from videobot.db import Database
from videobot.jobs import JobQueue, SubmitRequest
from videobot.migrate import upgrade
from videobot.presets import PRESETS, GenerationParams, plan
from videobot.settings import Settings

from .test_worker import _wait_running_step, _wait_status, _worker_env

# Wan: the family whose context parallelism works in diffusers 0.42 (the default tiny model is LTX).
MODEL = "tiny-wan"
TINY = PRESETS[MODEL]
_n = iter(range(10**6))


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from generator.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("wan") / MODEL, "wan")


@pytest.fixture
async def qdb(tmp_path: Path, tiny_wan_dir: Path):  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    shutil.copytree(tiny_wan_dir, data / "models" / MODEL)
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    db = Database(url)
    yield db, data
    await db.dispose()


def _params(seed: int, steps: int | None = None) -> dict[str, object]:
    p = plan(TINY, "a fox running through snow", seed=seed).to_dict()
    if steps:
        p["num_inference_steps"] = steps
    return p


async def submit(q: JobQueue, user: int = 1, *, steps: int | None = None, seed: int = 7) -> int:
    req = SubmitRequest(
        idempotency_key=f"p{next(_n)}", guild_id=1, channel_id=2, user_id=user, model=MODEL,
        params=_params(seed, steps),
    )  # fmt: skip
    return (await q.submit(req)).job.id


ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="ranks die with their parent on Linux"
)


async def _start(data: Path, url: str, log: Path, *args: str, **extra: str) -> asyncio.subprocess.Process:
    env = {**_worker_env(data, url, VIDEOBOT_DEVICE="cpu"), "VIDEOBOT_MODEL": MODEL, **extra}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "videobot.cli", "worker", *args, cwd=ROOT, env=env,
        stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def _stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 60)


def _rank_pid(log: Path, rank: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(rf"rank {rank} started \(pid (\d+)\)", log.read_text(errors="replace"))
        if m:
            return int(m.group(1))
        time.sleep(0.1)
    raise AssertionError(log.read_text()[-3000:])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie awaits its parent's wait: it is gone


def _decode(video: bytes) -> np.ndarray:
    with av.open(io.BytesIO(video)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


async def test_two_cpu_ranks_make_the_video_one_process_makes(qdb, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db)
    job_id = await submit(q, steps=4, seed=11)
    log = tmp_path / "worker.log"
    proc = await _start(data, db.url, log, "--gpus", "2")
    try:
        assert await _wait_status(q, job_id, {"succeeded", "failed"}, 180) == "succeeded", log.read_text()[
            -3000:
        ]
    finally:
        assert await _stop(proc) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert text.count("context parallelism on: tiny-wan over 2 ranks (ulysses)") == 2  # both ranks sharded
    assert f"job {job_id}: rank 1 joins" in text
    assert "rank 1: stopping" in text  # rank 0 released it on SIGTERM
    result = await q.get_result(job_id)
    assert result is not None
    info = probe_mp4(result.video)
    assert info["codec"] == "h264" and info["num_frames"] == TINY.default_frames

    # The same job in one process, no parallelism: the same video. The raw frames are identical (checked by
    # hand); x264's threads make two encodes of identical frames differ by a few levels now and then, so
    # compare decoded videos on average, with a control: the next seed's video is far off.
    one = VideoPipeline.load(MODEL, data_dir=data, device="cpu")

    def single(seed: int) -> np.ndarray:
        params = GenerationParams.from_dict(_params(seed, 4))
        return _decode(encode_mp4(one.run(params).frames, params.fps).data).astype(int)

    got = _decode(result.video).astype(int)
    same, other = single(11), single(12)
    assert got.shape == same.shape
    # Float sums across ranks can round a pixel differently and x264 then takes other decisions: the
    # videos agree closely, and far more than with the next seed's video (the control).
    d_same, d_other = np.abs(got - same).mean(), np.abs(got - other).mean()
    assert d_same <= 0.6 and d_other > max(0.75, 2 * d_same), (d_same, d_other)


async def test_cancel_stops_every_rank_at_the_same_step_and_the_group_keeps_serving(
    qdb, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db)
    first = await submit(q, steps=40)
    second = await submit(q, user=2, steps=3)
    log = tmp_path / "worker.log"
    proc = await _start(data, db.url, log, "--gpus", "2", VIDEOBOT_TEST_STEP_DELAY="0.2")
    try:
        await _wait_running_step(q, first, timeout=180)
        assert (await q.cancel(first, user_id=1)).state == "requested"
        assert await _wait_status(q, first, {"cancelled", "succeeded", "failed"}, 60) == "cancelled"
        assert await _wait_status(q, second, {"succeeded", "failed"}, 120) == "succeeded", log.read_text()[
            -3000:
        ]
    finally:
        assert await _stop(proc) == 0, log.read_text()[-3000:]
    assert f"job {first}: rank 1 stopped with the group" in log.read_text()


async def test_a_rank_killed_mid_job_sends_the_job_back_and_the_group_exits_non_zero(
    qdb, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db)
    job_id = await submit(q, steps=30)
    log = tmp_path / "worker.log"
    proc = await _start(data, db.url, log, "--gpus", "2", VIDEOBOT_TEST_STEP_DELAY="0.3")
    try:
        rank1 = _rank_pid(log, 1)
        await _wait_running_step(q, job_id, timeout=180)
        os.kill(rank1, signal.SIGKILL)
        code = await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code != 0, log.read_text()[-3000:]  # so `videobot run` restarts the group
    job = await q.get(job_id)
    assert job is not None and job.status == "queued" and job.attempts == 1, log.read_text()[-3000:]
    assert "rank 1 exited with code -9" in log.read_text()
    # A fresh worker finishes it.
    proc = await _start(data, db.url, log)
    try:
        assert await _wait_status(q, job_id, {"succeeded", "failed"}, 120) == "succeeded", log.read_text()[
            -3000:
        ]
    finally:
        await _stop(proc)


async def test_rank_0_killed_takes_the_other_ranks_with_it(qdb, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    log = tmp_path / "worker.log"
    proc = await _start(data, db.url, log, "--gpus", "2")
    try:
        rank1 = _rank_pid(log, 1)
        deadline = time.monotonic() + 180
        while "ready: model tiny-wan on 2 ranks" not in log.read_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        proc.kill()
        await proc.wait()
        deadline = time.monotonic() + 30
        while _alive(rank1) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not _alive(rank1)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_family_without_context_parallelism_refuses_to_start(qdb, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    log = tmp_path / "worker.log"
    proc = await _start(data, db.url, log, "--gpus", "2", VIDEOBOT_MODEL="cogvideox-2b")
    code = await asyncio.wait_for(proc.wait(), 60)
    text = log.read_text()
    assert code == 3, text[-3000:]  # MODEL_LOAD_FAILED: `videobot run` stops instead of restarting it
    assert "VIDEOBOT_GPUS=2" in text and "cogvideox" in text and "VIDEOBOT_GPUS=1" in text


def _settings(**env: str) -> Settings:
    base = {"VIDEOBOT_MODEL": MODEL, "VIDEOBOT_DEVICE": "cpu", "VIDEOBOT_GPUS": "2"}
    return Settings(_env_file=None, **{**base, **env})  # type: ignore[arg-type]


def test_start_up_refusals_name_the_setting_to_change() -> None:
    from generator.parallel import refusal

    assert refusal(_settings()) is None
    why = refusal(_settings(VIDEOBOT_MODEL="cogvideox-5b"))
    assert why is not None and "cogvideox" in why and "VIDEOBOT_GPUS=1" in why
    assert refusal(_settings(VIDEOBOT_MODEL="tiny-wan22")) is None
    for broken in (
        "ltx-video",
        "ltx-2",
    ):  # a context-parallel plan exists, but it fails (see BROKEN_FAMILIES)
        why = refusal(_settings(VIDEOBOT_MODEL=broken))
        assert why is not None and "attention mask" in why and "VIDEOBOT_GPUS=1" in why
    why = refusal(_settings(VIDEOBOT_OFFLOAD="model"))
    assert why is not None and "VIDEOBOT_OFFLOAD=none" in why
    why = (
        refusal(_settings(VIDEOBOT_DEVICE="cuda", VIDEOBOT_GPUS="64"))
        if not torch.cuda.is_available()
        else None
    )
    assert why is None or ("CUDA GPU" in why and "VIDEOBOT_GPUS" in why)
    # Speed options that would let the ranks drift apart.
    assert "VIDEOBOT_STEP_CACHE=off" in (refusal(_settings(VIDEOBOT_STEP_CACHE="first_block")) or "")
    assert "VIDEOBOT_ATTENTION_BACKEND=flash" in (refusal(_settings(VIDEOBOT_CONTEXT_PARALLEL="ring")) or "")
    compiled = _settings(VIDEOBOT_COMPILE="regional")
    assert "VIDEOBOT_COMPILE=off" in (refusal(compiled) or "")


def test_gpus_flag_takes_a_positive_whole_number() -> None:
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "videobot.cli", "worker", "--gpus", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "--gpus takes a whole number from 1 to 64, not '0'" in out.stderr
    helptext = subprocess.run(
        [sys.executable, "-m", "videobot.cli", "worker", "--help"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert "--gpus N" in helptext and "VIDEOBOT_GPUS" in helptext
