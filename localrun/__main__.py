"""`make run`: every process of the Procfile under honcho, in the foreground, until Ctrl-C.

Two things honcho alone gets wrong in a terminal:
- With its output piped (`make run | tee run.log`), Ctrl-C also ends the reader, and
  honcho's "SIGINT received" line then raises BrokenPipeError inside its signal handler,
  before it signals its children (each in a session of its own, so the terminal's SIGINT
  never reaches them): every process stays up. Here a closed output is replaced by
  /dev/null, so honcho goes on to stop them all.
- The URLs printed before the processes start scroll away under the Celery banners.
  Here they are printed once the API, Flower, the receiver, both workers and beat answer.

Before them: PostgreSQL and Redis where none answers (localrun/servers.py), the migrations and
the demo data. Once they answer: demo traffic (localrun/demo_traffic.py). On the way out: the demo
traffic first, the receiver last, so that a POST in flight gets its answer, then the embedded servers.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import requests
from honcho.environ import parse_procfile
from honcho.manager import Manager
from honcho.printer import Message, Printer

from localrun import demo_traffic, servers
from messaging.errors import SettingsError
from messaging.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# Local-only defaults, set here so that the processes and the printed URLs agree.
DEFAULTS = {"GUNICORN_BIND": "127.0.0.1:8080", "FLOWER_PORT": "5555", "RECEIVER_PORT": "9000"}
# Delivery receipts on from the start: the demo receiver signs them with this, and the API and the
# workers, given the same environment, take them. Everything listens on loopback only; an empty
# RECEIPT_SIGNING_SECRET turns receipts off.
DEMO_RECEIPT_SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
READY_TIMEOUT_SECONDS = 120


class ClosedPipeTolerant:
    """stdout for honcho's printer: once the reader has gone, further output goes to /dev/null."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._discard()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def _discard(self) -> None:
        # What Python's documentation advises for SIGPIPE: point the descriptor at /dev/null,
        # so that output still buffered is dropped quietly too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)


class ReceiverLast(Manager):
    """honcho's manager, but on the way out the demo traffic stops before the processes, and the
    receiver gets SIGTERM only once the rest have stopped: a worker's POST in flight still gets its
    answer, and the message is not sent again next run."""

    LAST = "receiver"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = False
        self.first_to_stop: list[Callable[[], None]] = []

    def _killall(self, force: bool = False) -> None:
        self.stopping = True
        for stop in self.first_to_stop:
            stop()
        if force:
            return super()._killall(force=True)
        for name, process in self._processes.items():
            if name != self.LAST and "returncode" not in process:
                self._system_print(f"sending SIGTERM to {name} (pid {process['pid']})\n")
                self._procmgr.terminate(process["pid"])
        threading.Thread(target=self._stop_last_when_alone, daemon=True).start()

    def _stop_last_when_alone(self) -> None:
        others = [process for name, process in self._processes.items() if name != self.LAST]
        while any("returncode" not in process for process in others):
            time.sleep(0.05)
        last = self._processes.get(self.LAST, {})
        if "returncode" not in last and "pid" in last:
            _say(self, f"sending SIGTERM to {self.LAST} (pid {last['pid']}), the others have stopped")
            self._procmgr.terminate(last["pid"])


def main() -> int:
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    env = os.environ
    env.setdefault("WEBHOOK_URL", f"http://127.0.0.1:{env['RECEIVER_PORT']}/webhook")
    env.setdefault("RECEIPT_SIGNING_SECRET", DEMO_RECEIPT_SIGNING_SECRET)
    env.setdefault("RECEIVER_RECEIPT_URL", f"http://{env['GUNICORN_BIND']}/messaging/receipts")
    # A SIGTERM before honcho takes over still stops the servers started here.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        settings = Settings.from_env(env)
        per_minute = demo_traffic.messages_per_minute(env)
        running = servers.ensure(settings.database_url, settings.redis_url, settings.broker_url)
    except (SettingsError, servers.ServerError) as error:
        print(f"make run: {error}", file=sys.stderr)
        return 1
    try:
        for server in running:
            print(f"make run: {server.describe()}", flush=True)
        for command in ("migrate", "load-demo"):
            if subprocess.run([sys.executable, "-m", "messaging", command], cwd=ROOT).returncode != 0:
                return 1
        return _run_procfile(env, running, per_minute)
    finally:
        servers.stop(running)


def _run_procfile(env: Mapping[str, str], running: list[servers.Server], per_minute: float) -> int:
    procfile = parse_procfile((ROOT / "Procfile").read_text()).processes
    manager = ReceiverLast(Printer(ClosedPipeTolerant(sys.stdout)))
    for name, command in procfile.items():
        manager.add_process(name, command, env=dict(env), cwd=str(ROOT))
    started = time.time()
    threading.Thread(
        target=_announce_when_ready, args=(manager, env, procfile, started, running, per_minute), daemon=True
    ).start()
    manager.loop()
    return manager.returncode or 0


def _announce_when_ready(
    manager: ReceiverLast,
    env: Mapping[str, str],
    procfile: dict[str, str],
    started: float,
    running: list[servers.Server],
    per_minute: float,
) -> None:
    urls = {
        "API": f"http://{env['GUNICORN_BIND']}",
        "Flower": f"http://127.0.0.1:{env['FLOWER_PORT']}",
        "Receiver": f"http://127.0.0.1:{env['RECEIVER_PORT']}",
    }
    checks = {
        "API": lambda: _answers(f"{urls['API']}/health"),
        "Flower": lambda: _answers(f"{urls['Flower']}/healthcheck"),
        "receiver": lambda: _answers(f"{urls['Receiver']}/_receiver/stats"),
        "workers": lambda: _workers_answer(_worker_names(procfile)),
        "beat": lambda: _beat_ticked_since(started),
    }
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    waiting = dict(checks)
    while waiting and time.monotonic() < deadline:
        waiting = {name: check for name, check in waiting.items() if not check()}
        time.sleep(0.5)
    if waiting:
        _say(manager, f"not up after {READY_TIMEOUT_SECONDS} s: {', '.join(waiting)} (see the lines above)")
        return
    # Flower learns of the workers only when it asks them: ask now, so that the URL printed answers at once.
    _answers(f"{urls['Flower']}/api/workers?refresh=true")
    _say(manager, _banner(urls, env, running, per_minute))
    if per_minute and not manager.stopping:
        say = functools.partial(_say, manager)
        manager.first_to_stop.append(demo_traffic.start(urls["API"], env.get("API_TOKEN", ""), per_minute, say))


def _banner(urls: dict[str, str], env: Mapping[str, str], running: list[servers.Server], per_minute: float) -> str:
    api = urls["API"]
    return "\n".join(
        [
            "everything is up:",
            f"  API        {api}",
            f"  Swagger UI {api}/docs",
            f"  Flower     {urls['Flower']}  (HTTP API: {urls['Flower']}/api/workers)",
            f"  Receiver   {urls['Receiver']}  (the webhook; it logs every delivery)",
            f"  To see a retry or a failure, tell the receiver to fail: POST {urls['Receiver']}/_receiver/behaviour"
            " (README: \"See a retry, a failure and a manual retry\")",
            *(f"  {server.describe()}" for server in running),
            _sending_hint(api, env),
            _receipts_hint(env),
            f"Demo traffic: {per_minute:g} new message(s) a minute through the API ({demo_traffic.VARIABLE}; 0: off)"
            if per_minute
            else f"Demo traffic: off ({demo_traffic.VARIABLE}=0)",
            "Ctrl-C stops everything.",
        ]
    )


def _sending_hint(api: str, env: Mapping[str, str]) -> str:
    token = env.get("API_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        status = requests.get(f"{api}/messaging/status", headers=headers, timeout=5).json()
    except (requests.RequestException, ValueError):
        return f"Start sending: curl -X POST {api}/messaging/start"
    if status.get("enabled"):
        return (
            f"Sending is on: {status['batch_size']} message(s) every {status['interval_seconds']:g} s "
            f"(stop: curl -X POST {api}/messaging/stop)"
        )
    return f"Sending is off: curl -X POST {api}/messaging/start"


def _receipts_hint(env: Mapping[str, str]) -> str:
    if not env.get("RECEIPT_SIGNING_SECRET"):
        return "Delivery receipts: off (RECEIPT_SIGNING_SECRET is empty)"
    demo = " (a demo RECEIPT_SIGNING_SECRET)" if env["RECEIPT_SIGNING_SECRET"] == DEMO_RECEIPT_SIGNING_SECRET else ""
    return f"Delivery receipts: on{demo}, sent by the receiver to {env['RECEIVER_RECEIPT_URL']} (docs/records.md#try-it)"


def _say(manager: Manager, text: str) -> None:
    manager.events.put(Message(type="line", data=text + "\n", time=datetime.now(), name="system", colour=None))


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _worker_names(procfile: dict[str, str]) -> list[str]:
    """The node names the Procfile gives its workers (`--hostname=worker1@%h`)."""
    names = (re.search(r"--hostname=(\S+)", command) for command in procfile.values())
    return [name.group(1).replace("%h", socket.gethostname()) for name in names if name]


def _workers_answer(names: list[str]) -> bool:
    from worker import app

    replies = app.control.ping(destination=names, timeout=1.0)
    return {name for reply in replies for name in reply} >= set(names)


def _beat_ticked_since(started: float) -> bool:
    from worker.beat import heartbeat_file

    try:
        return heartbeat_file().stat().st_mtime >= started
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main())
