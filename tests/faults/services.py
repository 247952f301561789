"""Faults injected for real: a private Redis that can be restarted, PostgreSQL backends terminated."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import psycopg
import redis

from tests.conftest import TEST_CONNECTION_NAME


class PrivateRedis:
    """A redis-server of this test's own, so restarting it disturbs nobody else."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"private redis on port {self.port} did not start")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def terminate_backends(database_url: str) -> int:
    """pg_terminate_backend on the service's connections to the test database (not the test's own)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name <> %s",
            (TEST_CONNECTION_NAME,),
        ).fetchall()
    return len(rows)
