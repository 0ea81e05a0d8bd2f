"""The worker registry: which worker processes are alive, on which models, running which job."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, update

from videobot.db import Database, db_now
from videobot.models import WorkerHeartbeat


class WorkerRegistry:
    """The worker-registry half of ``JobQueue``."""

    db: Database

    async def worker_seen(
        self,
        worker_id: str,
        models: Sequence[str],
        *,
        current_job_id: int | None = None,
        gpu_memory_bytes: int | None = None,
    ) -> None:
        """Record that a worker is alive (for /healthz and /metrics)."""
        values = dict(
            models=list(models),
            seen_at=db_now(),
            current_job_id=current_job_id,
            gpu_memory_bytes=gpu_memory_bytes,
        )
        async with self.db.transaction() as s:
            res = await s.execute(
                update(WorkerHeartbeat)
                .where(WorkerHeartbeat.worker_id == worker_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if res.rowcount == 0:
                s.add(WorkerHeartbeat(worker_id=worker_id, started_at=db_now(), **values))

    async def forget_workers(self, unseen_seconds: float) -> list[str]:
        """Remove the rows of workers not seen for ``unseen_seconds`` (killed ones never say goodbye)."""
        async with self.db.transaction() as s:
            rows = await s.execute(
                delete(WorkerHeartbeat)
                .where(WorkerHeartbeat.seen_at < db_now() - unseen_seconds)
                .returning(WorkerHeartbeat.worker_id)
            )
            return [row[0] for row in rows]

    async def worker_gone(self, worker_id: str) -> None:
        async with self.db.transaction() as s:
            await s.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.worker_id == worker_id))
