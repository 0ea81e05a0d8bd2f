"""Start-up messages for expected misconfiguration, and /healthz + /metrics on a real database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import update

from videobot.db import Database
from videobot.health import HealthServer
from videobot.jobs import JobQueue, QueueConfig, ResultData, SubmitRequest
from videobot.migrate import head_revision
from videobot.models import Job

ROOT = Path(__file__).resolve().parents[2]


def videobot(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("VIDEOBOT_", "DATABASE_URL", "DISCORD_"))
    }
    clean.update({"VIDEOBOT_DATA_DIR": str(tmp_path / "data"), "VIDEOBOT_HEALTH_PORT": "0", **env})
    return subprocess.run(
        [sys.executable, "-m", "videobot.cli", *args],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "env", "expect"),
    [
        (["run"], {}, "DISCORD_TOKEN is not set"),
        (["bot"], {}, "discord.com/developers/applications"),
        (
            ["run"],
            {"DISCORD_TOKEN": "x", "DATABASE_URL": "postgresql+asyncpg://u@127.0.0.1:1/nope"},
            "Cannot reach the database",
        ),
        (["worker"], {"DATABASE_URL": "mysql://x"}, "DATABASE_URL: use sqlite+aiosqlite"),
        (["worker"], {"VIDEOBOT_LEASE_SECONDS": "soon"}, "VIDEOBOT_LEASE_SECONDS"),
        (["worker"], {}, "Run `videobot db upgrade`"),
        (
            ["run"],
            {"DISCORD_TOKEN": "x", "VIDEOBOT_DATA_DIR": "/proc/videobot"},
            "VIDEOBOT_DATA_DIR=/proc/videobot is not writable",
        ),
    ],
)
def test_misconfiguration_gives_a_clear_message_not_a_traceback(args, env, expect, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = videobot(args, tmp_path, **env)
    assert res.returncode == 2, res.stderr[-2000:]
    assert expect in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("model", "expect"),
    [
        ("wan2.1-1.3b", "needs a CUDA GPU but torch sees none"),
        ("someorg/not-a-video-model", "Unknown model `someorg/not-a-video-model`"),
        ("ltx-video", "VIDEOBOT_MODEL=tiny"),
    ],
)
def test_worker_that_cannot_load_its_model_explains_why(model: str, expect: str, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the presets would load")
    assert videobot(["db", "upgrade"], tmp_path).returncode == 0
    res = videobot(["worker"], tmp_path, VIDEOBOT_MODEL=model, HF_HUB_OFFLINE="1")
    assert res.returncode == 3, res.stderr[-2000:]
    assert "videobot: cannot load the model" in res.stderr and expect in res.stderr
    assert "Traceback" not in res.stderr


def test_db_upgrade_then_current(tmp_path: Path) -> None:
    assert videobot(["db", "upgrade"], tmp_path).returncode == 0
    res = videobot(["db", "current"], tmp_path)
    newest = max(p.name.split("_", 1)[0] for p in (ROOT / "migrations" / "versions").glob("[0-9]*_*.py"))
    assert res.returncode == 0 and res.stdout.strip() == head_revision() == newest


def test_help_lists_every_command(tmp_path: Path) -> None:
    out = videobot(["--help"], tmp_path).stdout
    for cmd in ("run", "bot", "worker", "db upgrade", "generate", "make-tiny-model"):
        assert cmd in out


async def test_healthz_and_metrics(db: Database) -> None:
    connected = {"ok": False}
    reason = "discord: not connected (cannot reach Discord: x, retrying)"
    server = HealthServer(
        db, discord_problem=lambda: None if connected["ok"] else reason, worker_stale_seconds=30
    )
    port = await server.start("127.0.0.1", 0)
    q = JobQueue(db, QueueConfig(default_limit=5))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                body = await r.json()
                assert r.status == 503
                assert reason in body["problems"]
                assert any("no worker heartbeat" in p for p in body["problems"])
            connected["ok"] = True
            await q.worker_seen("gpu-1", ["tiny"], gpu_memory_bytes=123456)
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200 and (await r.json())["workers"] == 1
            for i in range(3):
                await q.submit(
                    SubmitRequest(
                        idempotency_key=f"m{i}", guild_id=1, channel_id=1, user_id=i, model="tiny", params={}
                    )
                )
            c = await q.claim("gpu-1")
            assert c is not None
            await q.complete(
                c,
                ResultData(
                    video=b"v",
                    width=2,
                    height=2,
                    num_frames=1,
                    fps=1,
                    duration_s=1,
                    generation_seconds=4.2,
                    seconds_per_step=0.75,
                    peak_gpu_bytes=7_000_000_000,
                ),
            )
            c = await q.claim("gpu-1")
            assert c is not None
            await q.fail(c, "nope", code="x")
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                text = await r.text()
            assert r.status == 200
            lines = set(text.splitlines())
            assert 'videobot_jobs{status="queued"} 1.0' in lines
            assert 'videobot_jobs{status="succeeded"} 1.0' in lines
            assert 'videobot_jobs{status="failed"} 1.0' in lines
            assert "videobot_queue_depth 1.0" in lines
            assert "videobot_credits_charged_total 3.0" in lines
            assert "videobot_credits_refunded_total 1.0" in lines
            assert 'videobot_generation_seconds_bucket{le="5.0"} 1.0' in lines
            assert 'videobot_generation_seconds_bucket{le="1.0"} 0.0' in lines
            assert 'videobot_worker_gpu_memory_bytes{worker="gpu-1"} 123456.0' in lines
            assert 'videobot_step_seconds_bucket{le="0.5"} 0.0' in lines
            assert 'videobot_step_seconds_bucket{le="1.0"} 1.0' in lines
            assert "videobot_step_seconds_sum 0.75" in lines
            assert 'videobot_last_job_seconds_per_step{model="tiny"} 0.75' in lines
            assert 'videobot_last_job_peak_gpu_bytes{model="tiny"} 7e+09' in lines
            assert any(line.startswith("videobot_ack_latency_seconds_bucket") for line in lines)
    finally:
        await server.stop()


def test_make_tiny_model_builds_a_diffusers_folder_that_loads(tmp_path: Path) -> None:
    target = tmp_path / "tiny-model"
    res = videobot(["make-tiny-model", str(target)], tmp_path, HF_HUB_OFFLINE="1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert Path(res.stdout.strip()) == target
    index = (target / "model_index.json").read_text()
    assert '"LTXConditionPipeline"' in index  # the default family: text, image and extend
    # The same loading path as a real checkpoint: DiffusionPipeline.from_pretrained on the folder.
    code = (
        "import sys; from diffusers import DiffusionPipeline; "
        "p = DiffusionPipeline.from_pretrained(sys.argv[1]); print(type(p).__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.stdout.strip().endswith("LTXConditionPipeline"), out.stderr[-2000:]


@pytest.mark.parametrize(("family", "pipeline"), [("wan", "WanPipeline"), ("ltx2", "LTX2Pipeline")])
def test_make_tiny_model_family_option(tmp_path: Path, family: str, pipeline: str, capsys) -> None:  # type: ignore[no-untyped-def]
    from videobot.cli import main

    target = tmp_path / family
    assert main(["make-tiny-model", str(target), "--family", family]) == 0
    assert Path(capsys.readouterr().out.strip()) == target
    assert json.loads((target / "model_index.json").read_text())["_class_name"] == pipeline


def test_make_tiny_model_refuses_an_unknown_family(tmp_path: Path) -> None:
    res = videobot(["make-tiny-model", str(tmp_path / "m"), "--family", "sora"], tmp_path)
    assert res.returncode == 2 and "invalid choice: 'sora'" in res.stderr
    assert not (tmp_path / "m").exists()


async def test_healthz_answers_while_a_writer_holds_the_database(db_url: str) -> None:
    """A long write (the SQLite write lock) does not hold up /healthz: it reads beside it."""
    writer_db, health_db = Database(db_url), Database(db_url)
    server = HealthServer(health_db, discord_problem=lambda: None, worker_stale_seconds=30)
    port = await server.start("127.0.0.1", 0)
    try:
        await JobQueue(writer_db, QueueConfig()).worker_seen("gpu-1", ["tiny"])
        holding, answered = asyncio.Event(), asyncio.Event()
        state = {"writer_committed": False}

        async def writer() -> None:
            async with writer_db.transaction() as s:
                await s.execute(update(Job).values(progress_step=1))  # takes the write lock
                holding.set()
                try:
                    await asyncio.wait_for(answered.wait(), 2.0)
                except TimeoutError:
                    pass
            state["writer_committed"] = True

        task = asyncio.create_task(writer())
        await holding.wait()
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    status, body = r.status, await r.json()
            committed_first = state["writer_committed"]
        finally:
            answered.set()
            await task
        assert not committed_first, "/healthz waited for the writer"
        assert (status, body) == (200, {"ok": True, "workers": 1})
    finally:
        await server.stop()
        await writer_db.dispose()
        await health_db.dispose()


async def test_healthz_is_503_with_the_reason_when_the_database_does_not_answer() -> None:
    """A database server that accepts the connection and then says nothing: 503 within the time limit."""
    silent: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)  # keep the connection open, never answer

    hung = await asyncio.start_server(accept, "127.0.0.1", 0)
    hung_port = hung.sockets[0].getsockname()[1]
    db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{hung_port}/nothing")
    server = HealthServer(db, discord_problem=lambda: None, db_timeout_seconds=0.5)
    port = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                status, body = r.status, await r.json()
        assert status == 503
        assert body["problems"] == ["database did not answer within 0.5 s"]
    finally:
        await server.stop()
        for w in silent:
            w.close()
        hung.close()
        await hung.wait_closed()
        await db.dispose()


async def test_healthz_turns_503_when_the_last_worker_heartbeat_is_too_old(
    clocked_db: Database, clock
) -> None:  # type: ignore[no-untyped-def]
    server = HealthServer(clocked_db, discord_problem=lambda: None, worker_stale_seconds=30)
    port = await server.start("127.0.0.1", 0)
    try:
        await JobQueue(clocked_db, QueueConfig()).worker_seen("gpu-1", ["tiny"])
        async with aiohttp.ClientSession() as http:

            async def healthz() -> tuple[int, dict]:  # type: ignore[type-arg]
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    return r.status, await r.json()

            clock.advance(30)
            assert await healthz() == (200, {"ok": True, "workers": 1})
            clock.advance(0.5)
            assert await healthz() == (
                503,
                {"ok": False, "problems": ["no worker heartbeat in the last 30 s"]},
            )
    finally:
        await server.stop()
