"""Start the real processes (gunicorn API, celery worker, celery beat) as the README runs them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import kombu
import requests
from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def broker_unreachable(url: str) -> str | None:
    """None when the broker at `url` accepts a connection, else why not."""
    try:
        with kombu.Connection(url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=3)
    except Exception as error:  # any failure to connect means: no broker to run against
        return f"{type(error).__name__}: {error}"
    return None


def environment(**variables: object) -> dict[str, str]:
    """The caller's environment plus the service's variables, as strings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "PYTEST_"))}
    env.update({key: str(value) for key, value in variables.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class Stack:
    """A set of service processes sharing one environment; `stop()` ends them all."""

    env: dict[str, str]
    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    def start(self, name: str, *argv: str, extra_env: dict[str, str] | None = None) -> Process:
        log_path = self.log_dir / f"{name}.log"
        handle = log_path.open("ab")
        popen = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    def api(self, port: int, name: str = "api") -> Process:
        process = self.start(
            name,
            str(BIN / "gunicorn"),
            "api:create_app()",
            extra_env={"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1"},
        )
        wait_until_up(f"http://127.0.0.1:{port}/health", process)
        return process

    def worker(self, name: str = "worker", *options: str) -> Process:
        return self.start(
            name,
            str(BIN / "celery"),
            "-A",
            "worker",
            "worker",
            "--loglevel=INFO",
            f"--hostname={name}@%h",
            "--without-mingle",
            "--without-gossip",
            *options,
        )

    def tasks_run(self, task: str, *workers: str) -> int:
        """How many `task`s the named workers have run, by their own count (`celery inspect stats`).

        0 until they answer over the broker: a worker that counts is up and consuming.
        """
        control = Celery(broker=self.env.get("CELERY_BROKER_URL") or self.env["REDIS_URL"], set_as_current=False).control
        nodes = [f"{worker}@{socket.gethostname()}" for worker in workers]
        replies = control.inspect(destination=nodes, timeout=1.0).stats() or {}
        return sum(reply.get("total", {}).get(task, 0) for reply in replies.values())

    def beat(self, name: str = "beat") -> Process:
        return self.start(name, str(BIN / "celery"), "-A", "worker", "beat", "--loglevel=INFO")

    def stop(self, timeout: float = 30) -> dict[str, int | None]:
        """SIGTERM everything, wait, SIGKILL what is left; the exit codes by name."""
        for process in self.processes:
            process.signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for process in self.processes:
            try:
                codes[process.name] = process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.popen.pid, signal.SIGKILL)
                process.wait(5)
                codes[process.name] = None
        return codes

    def logs(self, tail: int = 6000) -> str:
        """Each process's log without the routine per-task lines, for a failing test's report."""
        return "\n".join(f"===== {p.name}\n{_interesting(p.log())[-tail:]}" for p in self.processes)


ROUTINE = ("outcome=sent", "] received", "succeeded in", "Sending due task", "event=batch claimed=0")


def _interesting(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if not any(marker in line for marker in ROUTINE))


def wait_until_up(url: str, process: Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited early:\n{process.log()[-3000:]}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # still booting
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} did not answer {url} within {timeout}s:\n{process.log()[-3000:]}")
