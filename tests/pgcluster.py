"""A PostgreSQL server of a test's own: ``initdb`` in a temporary folder, on a free port.

Tests that restart the database server use this instead of the machine's shared server, so a
restart disturbs no other test running at the same time (and no developer's other work).
Needs PostgreSQL's server binaries and root (the server runs as the ``postgres`` user).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """Start with ``start()`` (or ``with``); ``url`` is an admin URL (user postgres, trust auth)."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="videobot-pg-"))
        self.port = _free_port()

    @staticmethod
    def available() -> tuple[bool, str]:
        if _bin_dir() is None:
            return False, "PostgreSQL's server binaries (initdb, pg_ctl) are not installed"
        if os.geteuid() != 0 or shutil.which("runuser") is None:
            return False, "a private PostgreSQL server needs root (it runs as the postgres user)"
        return True, ""

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        assert self.bin is not None
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / args[0]), *args[1:]],
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> PrivatePostgres:
        shutil.chown(self.dir, "postgres", "postgres")
        data = str(self.dir / "data")
        self._run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", data, "-o", opts, "-l", str(self.dir / "server.log"), "-w", "start")
        return self

    def restart(self) -> None:
        """A fast restart (open connections are cut, as in an owner's server restart)."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
