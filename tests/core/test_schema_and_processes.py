"""Models and migrations agree; several worker processes share one queue; the bot side stays small."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from videobot.db import Database
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.models import Base, Job

ROOT = Path(__file__).resolve().parents[2]


async def test_models_and_migrations_agree(db: Database) -> None:
    def diff(conn):  # type: ignore[no-untyped-def]
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)

    async with db.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_four_worker_processes_claim_each_job_exactly_once(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=10_000, max_queued_per_user=10_000))
    for i in range(500):
        await q.submit(
            SubmitRequest(
                idempotency_key=f"bulk-{i}", guild_id=1, channel_id=1, user_id=i % 25, model="tiny", params={}
            )
        )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.core.claimer",
            db.url,
            f"proc-{n}",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for n in range(4)
    ]
    outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), timeout=240)
    claimed: list[int] = []
    for proc, (out, err) in zip(procs, outs, strict=True):
        text = err.decode()
        assert "locked" not in text.lower(), text[-2000:]
        assert proc.returncode == 0, text[-2000:]
        claimed += [int(line) for line in out.decode().split()]
    assert len(claimed) == 500 and len(set(claimed)) == 500
    assert sum(1 for out, _ in outs if out.strip()) >= 2  # the work really was shared
    async with db.sessionmaker() as s:
        statuses = (await s.execute(select(Job.status, func.count()).group_by(Job.status))).all()
    assert dict(statuses) == {"succeeded": 500}


# Imports every module of the given packages (pkgutil walks subpackages too), then prints what
# got imported: the packages' own modules and any of the forbidden top-level packages.
_IMPORT_ALL = """
import importlib, json, pkgutil, sys
packages, forbidden = sys.argv[1].split(","), sys.argv[2].split(",")
for name in packages:
    pkg = importlib.import_module(name)
    for info in pkgutil.walk_packages(pkg.__path__, name + "."):
        importlib.import_module(info.name)
print(json.dumps({
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in packages),
    "forbidden": sorted(m for m in forbidden if m in sys.modules),
}))
"""


def import_everything(packages: list[str], forbidden: list[str]) -> dict[str, list[str]]:
    """Import every module under ``packages`` in a fresh interpreter; which forbidden ones came along."""
    res = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, ",".join(packages), ",".join(forbidden)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.splitlines()[-1])


def modules_under(*dirs: str) -> set[str]:
    """Every module name a walk of these source folders must reach."""
    names = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts) for d in dirs for p in (ROOT / d).rglob("*.py")
    }
    return {n.removesuffix(".__init__") for n in names}


def test_bot_side_does_not_import_torch_or_diffusers() -> None:
    got = import_everything(
        ["bot", "videobot"], ["torch", "diffusers", "transformers", "accelerate", "av", "numpy"]
    )
    missing = modules_under("bot", "videobot") - set(got["modules"])
    assert not missing, f"not imported: {sorted(missing)}"
    assert got["forbidden"] == []


def test_core_and_generator_do_not_import_discord() -> None:
    got = import_everything(["generator", "videobot"], ["discord"])
    missing = modules_under("generator", "videobot") - set(got["modules"])
    assert not missing, f"not imported: {sorted(missing)}"
    assert got["forbidden"] == []
