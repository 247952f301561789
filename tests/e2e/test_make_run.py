"""`make run` in a real terminal (a pty), its output piped through `tee`, stopped with Ctrl-C."""

from __future__ import annotations

import os
import pty
import re
import signal
import threading
from pathlib import Path

import psycopg
import pytest
import requests

from api.messages import DEMO_DELIVERED_MESSAGE_ID
from harness.stack import ROOT, environment, free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e
CTRL_C = b"\x03"


class Terminal:
    """A command run as a terminal runs it: in the pty's foreground process group, output collected."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.pid, self._master = pty.fork()
        if self.pid == 0:  # the child: a session of its own, the pty as its controlling terminal
            os.chdir(ROOT)
            os.execvpe("sh", ["sh", "-c", command], env)
        self._output = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: every process holding the pty has gone
                return
            if not chunk:
                return
            with self._lock:
                self._output += chunk

    def output(self) -> str:
        with self._lock:
            return self._output.decode(errors="replace")

    def type(self, keys: bytes) -> None:
        os.write(self._master, keys)


def process_table() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, start time), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat.rpartition(")")[2].split()
        table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def descendants(root: int) -> set[tuple[int, str]]:
    """(pid, start time) of every process below `root`, at any depth."""
    table = process_table()
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, (parent, _) in table.items() if parent in frontier}
        found |= {(pid, table[pid][1]) for pid in frontier}
    return found


def still_running(processes: set[tuple[int, str]]) -> set[tuple[int, str]]:
    table = process_table()
    return {(pid, start) for pid, start in processes if pid in table and table[pid][1] == start}


@pytest.fixture
def run_env(database_url, redis_url, tmp_path):
    receiver_port = free_port()
    return environment(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        GUNICORN_BIND=f"127.0.0.1:{free_port()}",
        FLOWER_PORT=free_port(),
        RECEIVER_PORT=receiver_port,
        WEBHOOK_URL=f"http://127.0.0.1:{receiver_port}/webhook",
        BEAT_HEARTBEAT_FILE=tmp_path / "beat-heartbeat",
        SEND_INTERVAL_SECONDS=1,
    )


def test_make_run_prints_its_urls_once_up_serves_flowers_api_and_stops_on_ctrl_c_through_a_pipe(run_env, tmp_path, database_url):
    # `-o`: the shared virtualenv is installed already; everything else is what `make run` does.
    terminal = Terminal(f"make -o .venv/.installed run 2>&1 | tee {tmp_path / 'run.log'}", run_env)
    processes: set[tuple[int, str]] = set()
    try:
        wait_for(lambda: "Swagger UI" in terminal.output(), timeout=120, what="the URLs")
        processes = descendants(terminal.pid)
        assert len(processes) > 10, terminal.output()
        output = terminal.output()
        urls_at = output.index("Swagger UI")
        for up in ("worker1@", "worker2@"):
            assert re.search(rf"{up}\S+ ready\.", output[:urls_at]), f"{up} was not ready when the URLs were printed"
        assert "Listening at" in output[:urls_at] and "beat: Starting" in output[:urls_at]
        assert "Sending is on" in output[urls_at:], "AUTO_START is on by default: no hint to start what runs"
        # Demo traffic at the sending rate (2 every second here): new messages keep coming through the API.
        assert "Demo traffic: 120 new message(s) a minute" in output[urls_at:]
        with psycopg.connect(database_url, autocommit=True) as conn:
            newest = conn.execute("SELECT max(created_at) FROM messages").fetchone()[0]
            new = "SELECT count(*) FROM messages WHERE created_at > %s"
            wait_for(lambda: conn.execute(new, (newest,)).fetchone()[0] >= 6, timeout=10, what="demo traffic")
            # Delivery receipts are on (a demo secret, the same for the API, workers and receiver), and
            # the receiver sends them to the API where it listens, not to the default port.
            delivered = "SELECT count(*) FROM messages WHERE delivery_status = 'delivered' AND id <> %s"
            demo_delivered = (DEMO_DELIVERED_MESSAGE_ID,)  # the demo data's, delivered as loaded
            wait_for(lambda: conn.execute(delivered, demo_delivered).fetchone()[0] >= 1, timeout=20,
                     what="a delivery receipt applied")

        flower = f"http://127.0.0.1:{run_env['FLOWER_PORT']}"
        workers = requests.get(f"{flower}/api/workers", params={"refresh": "true"}, timeout=20)
        assert workers.status_code == 200, workers.text
        assert any(name.startswith("worker1@") for name in workers.json())

        terminal.type(CTRL_C)

        try:
            wait_for(lambda: not still_running(processes), timeout=40, interval=0.2, what="every process to stop")
        except AssertionError:
            left = still_running(processes)
            pytest.fail(f"{len(left)} processes still running after Ctrl-C\n{terminal.output()[-4000:]}")
    finally:
        for pid, _ in still_running(processes | {(terminal.pid, process_table().get(terminal.pid, (0, ""))[1])}):
            os.kill(pid, signal.SIGKILL)
