"""The real processes, started as the README starts them, and the CPU they use."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from harness.stack import ROOT, Process, Stack, environment, free_port

__all__ = ["ROLES", "ReceiverProcess", "Stack", "cpu_by_role", "cpu_spent", "environment", "free_port", "wait_for_log"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ReceiverProcess:
    """`python -m receiver` in its own process, so its CPU is not the sender's; driven over HTTP."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/webhook"
        self._log = (log_dir / "receiver.log").open("ab")
        self._popen = subprocess.Popen(
            [sys.executable, "-m", "receiver", "--port", str(self.port)],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environment(LOG_LEVEL="WARNING"),
        )
        self._http = requests.Session()
        self._http.trust_env = False
        deadline = time.monotonic() + 20
        while True:
            try:
                self.stats()
                return
            except requests.ConnectionError:
                if time.monotonic() > deadline or self._popen.poll() is not None:
                    raise RuntimeError("bench: the receiver did not start")
                time.sleep(0.1)

    def prepare(self, delay_ms: int) -> None:
        """Forget earlier deliveries and answer after `delay_ms`."""
        self._http.post(f"{self.base}/_receiver/reset", timeout=30).raise_for_status()
        self._http.post(f"{self.base}/_receiver/behaviour", json={"delay_ms": delay_ms}, timeout=5).raise_for_status()

    def stats(self) -> dict[str, int]:
        answer = self._http.get(f"{self.base}/_receiver/stats", timeout=30)
        answer.raise_for_status()
        return answer.json()

    def stop(self) -> None:
        self._http.close()
        self._popen.terminate()
        try:
            self._popen.wait(10)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait(5)
        self._log.close()


def wait_for_log(process: Process, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.log():
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name}: no {text!r} within {timeout}s:\n{process.log()[-3000:]}")
        time.sleep(0.1)


def cpu_by_role() -> dict[str, float]:
    """CPU seconds used so far by each kind of process on the machine (live processes only)."""
    totals: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        role = _role(int(entry), comm, cmdline)
        totals[role] = totals.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return totals


def cpu_spent(before: dict[str, float]) -> dict[str, float]:
    """CPU seconds by role since `before` (a `cpu_by_role()` snapshot)."""
    now = cpu_by_role()
    return {role: max(0.0, now.get(role, 0.0) - before.get(role, 0.0)) for role in ROLES}


ROLES = ("workers", "PostgreSQL", "Redis", "RabbitMQ", "receiver", "beat", "bench", "other")


def _role(pid: int, comm: str, cmdline: str) -> str:
    if pid == os.getpid():
        return "bench"  # the floor's threads, the ceiling's publishing, the polling
    if comm == "postgres":
        return "PostgreSQL"
    if comm == "redis-server":
        return "Redis"
    if comm in ("beam.smp", "erl_child_setup", "epmd", "inet_gethost"):
        return "RabbitMQ"
    if "-m receiver" in cmdline:
        return "receiver"
    if "celery" in cmdline and " beat" in cmdline:
        return "beat"
    if "celery" in cmdline and " worker" in cmdline:
        return "workers"
    return "other"
