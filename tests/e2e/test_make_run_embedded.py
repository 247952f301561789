"""`make run` where nothing answers on the URLs: it brings its own PostgreSQL and Redis, and Ctrl-C ends them too."""

from __future__ import annotations

import os
import re
import shutil
import signal

import pytest
import requests

from harness.stack import ROOT, environment, free_port
from tests.e2e.test_make_run import CTRL_C, Terminal, descendants, process_table, still_running
from tests.helpers import skip_unless_embedded_postgres_can_run_here, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def nothing_listening(tmp_path):
    """URLs at free loopback ports, the embedded servers' data removed afterwards. Under root in a checkout
    nobody may enter (a `mktemp -d` clone), `make run` refuses by design with one line: skipped, saying it."""
    skip_unless_embedded_postgres_can_run_here()
    postgres_port, redis_port, receiver_port = free_port(), free_port(), free_port()
    env = environment(
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{postgres_port}/messaging",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        GUNICORN_BIND=f"127.0.0.1:{free_port()}",
        FLOWER_PORT=free_port(),
        RECEIVER_PORT=receiver_port,
        WEBHOOK_URL=f"http://127.0.0.1:{receiver_port}/webhook",
        BEAT_HEARTBEAT_FILE=tmp_path / "beat-heartbeat",
        SEND_INTERVAL_SECONDS=0.5,
    )
    yield env, postgres_port, redis_port
    for name in (f"postgres-{postgres_port}", f"redis-{redis_port}"):
        shutil.rmtree(ROOT / ".devdata" / name, ignore_errors=True)
        (ROOT / ".devdata" / f"{name}.log").unlink(missing_ok=True)


def test_make_run_with_nothing_listening_starts_its_own_servers_delivers_and_leaves_no_process(nothing_listening, tmp_path):
    env, postgres_port, redis_port = nothing_listening
    terminal = Terminal(f"make -o .venv/.installed run 2>&1 | tee {tmp_path / 'run.log'}", env)
    processes: set[tuple[int, str]] = set()
    try:
        wait_for(lambda: "Ctrl-C stops everything" in terminal.output(), timeout=120, what="the URLs")
        processes = descendants(terminal.pid)
        output = terminal.output()
        assert f"PostgreSQL 127.0.0.1:{postgres_port} (embedded, started, data in .devdata/postgres-{postgres_port})" in output
        assert f"Redis 127.0.0.1:{redis_port} (embedded, started, data in .devdata/redis-{redis_port})" in output
        servers = {pid for pid, _ in processes if _command(pid).startswith(("postgres", "valkey-server"))}
        assert len(servers) >= 2, "the embedded servers are not the run's own processes"

        # Flower was asked at start: the URL printed answers with the workers at once, without ?refresh.
        flower = f"http://127.0.0.1:{env['FLOWER_PORT']}"
        workers = requests.get(f"{flower}/api/workers", timeout=5).json()
        assert any(name.startswith("worker1@") for name in workers), workers

        receiver = f"http://127.0.0.1:{env['RECEIVER_PORT']}/_receiver/stats"
        wait_for(lambda: requests.get(receiver, timeout=2).json()["unique"] >= 2, timeout=30, what="demo deliveries")

        receivers = {process for process in processes if "-m receiver" in _command(process[0], whole=True)}
        workers = {process for process in processes if "--hostname=worker" in _command(process[0], whole=True)}
        assert receivers and len(workers) >= 2
        terminal.type(CTRL_C)
        wait_for(lambda: not still_running(receivers), timeout=40, interval=0.02, what="the receiver to stop")
        assert not still_running(workers), "the receiver stopped before the workers: a POST in flight would be cut"
        try:
            wait_for(lambda: not still_running(processes), timeout=40, interval=0.2, what="every process to stop")
        except AssertionError:
            left = still_running(processes)
            pytest.fail(f"{len(left)} processes still running after Ctrl-C\n{terminal.output()[-4000:]}")
    finally:
        for pid, _ in still_running(processes | {(terminal.pid, process_table().get(terminal.pid, (0, ""))[1])}):
            os.kill(pid, signal.SIGKILL)


def _command(pid: int, whole: bool = False) -> str:
    """The program's name (or its whole command line), from /proc."""
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\0")
    except OSError:
        return ""
    return " ".join(argv) if whole else re.sub(r".*/", "", argv[0])
