"""Replicated servers on loopback for the failover tests: a PostgreSQL primary with a streaming
standby, and a Redis master with a replica watched by three Sentinels. Each can be failed over."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis

from harness.stack import free_port

SENTINEL_MASTER = "mymaster"


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries on this machine, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_basebackup"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def missing_postgres_tools() -> str | None:
    """Why a PostgreSQL pair cannot run here, or None."""
    if postgres_bin() is None:
        return "initdb and pg_basebackup not found under /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0 and not _user_exists("postgres"):
        return "running as root without a postgres user to run the servers as"
    return None


def missing_redis_server() -> str | None:
    return None if shutil.which("redis-server") else "redis-server not found"


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class PostgresPair:
    """A primary and a streaming standby (`pg_basebackup -R`), run as the postgres user in a temporary folder."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="messaging-pg-pair-"))
        self.ports = {"a": free_port(), "b": free_port()}
        self.primary = "a"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {result.stdout}{result.stderr}")

    def start(self, *, synchronous: bool = False) -> PostgresPair:
        """Both servers; `synchronous`: the primary's commits wait for the standby (the promoted one's do not)."""
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        a, b = self.root / "a", self.root / "b"
        self._run("initdb", "-D", str(a), "-A", "trust", "-U", "postgres")
        with (a / "postgresql.conf").open("a") as conf:
            conf.write("wal_level = replica\nmax_wal_senders = 5\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\nmax_connections = 200\nfsync = off\n")
        with (a / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        self._ctl("a", "start")
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.ports["a"]), "-U", "postgres",
                  "-D", str(b), "-R", "-X", "stream")
        self._ctl("b", "start")
        if synchronous:
            self.wait_replicated()
            with psycopg.connect(self.url(), autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                conn.execute("SELECT pg_reload_conf()")
        return self

    def _ctl(self, node: str, action: str, *options: str) -> None:
        self._run("pg_ctl", "-D", str(self.root / node), "-o", f"-p {self.ports[node]}", "-l",
                  str(self.root / f"{node}.log"), "-w", *options, action)

    def url(self, database: str = "postgres") -> str:
        """Both hosts, as a libpq URL that only settles on the one accepting writes."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports.values())
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    def wait_replicated(self, timeout: float = 30) -> None:
        """Until the standby streams from the primary."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.url(), autocommit=True) as conn:
            while not conn.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone()[0]:
                if time.monotonic() > deadline:
                    raise RuntimeError("the standby never streamed")
                time.sleep(0.1)

    def fail_over(self) -> None:
        """The primary stops at once (no shutdown checkpoint, as a crash), the standby is promoted."""
        standby = "b" if self.primary == "a" else "a"
        self._ctl(self.primary, "stop", "-m", "immediate")
        self._ctl(standby, "promote")
        self.primary = standby

    def promote_standby(self) -> None:
        """The standby takes writes while the primary keeps running."""
        standby = "b" if self.primary == "a" else "a"
        self._ctl(standby, "promote")
        self.primary = standby

    def logs(self) -> str:
        return "\n".join(f"===== postgres {n}\n{(self.root / f'{n}.log').read_text(errors='replace')[-3000:]}"
                         for n in self.ports if (self.root / f"{n}.log").exists())

    def stop(self) -> None:
        for node in self.ports:
            try:
                self._ctl(node, "stop", "-m", "immediate")
            except RuntimeError:
                pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)


class RedisSentinels:
    """A Redis master, one replica and three Sentinels watching them, in a temporary folder."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="messaging-sentinels-"))
        self.redis_ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.processes: dict[int, subprocess.Popen] = {}

    def _spawn(self, port: int, *argv: str) -> None:
        log = (self.root / f"{port}.log").open("ab")
        self.processes[port] = subprocess.Popen(["redis-server", *argv], stdout=log, stderr=subprocess.STDOUT,
                                                cwd=self.root)
        _wait_for_ping(port)

    COMMON = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0")

    def start(self) -> RedisSentinels:
        master, replica = self.redis_ports
        self._spawn(master, "--port", str(master), *self.COMMON)
        self._spawn(replica, "--port", str(replica), *self.COMMON, "--replicaof", "127.0.0.1", str(master))
        for port in self.sentinel_ports:
            conf = self.root / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.root}\n"
                f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n"
                f"sentinel failover-timeout {SENTINEL_MASTER} 5000\n"
            )
            self._spawn(port, str(conf), "--sentinel")
        self.wait_synced()
        return self

    def url(self, db: int = 0) -> str:
        """kombu's Sentinel form: every Sentinel, separated by semicolons."""
        return ";".join(f"sentinel://127.0.0.1:{port}/{db}" for port in self.sentinel_ports)

    def master_port(self) -> int:
        """The master's port as the Sentinels' majority reports it."""
        answers = []
        for port in self.sentinel_ports:
            try:
                answers.append(int(redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(
                    SENTINEL_MASTER)[1]))
            except (redis.RedisError, TypeError):
                pass
        return max(set(answers), key=answers.count)

    def wait_synced(self, timeout: float = 30) -> None:
        """Until the replica has synced with the master and every Sentinel knows it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            master = redis.Redis(port=self.master_port(), socket_timeout=1)
            replicas = [redis.Redis(port=p, socket_timeout=1).sentinel_slaves(SENTINEL_MASTER)
                        for p in self.sentinel_ports]
            if master.info("replication").get("slave0", {}).get("state") == "online" and all(replicas):
                return
            time.sleep(0.1)
        raise RuntimeError("the replica never synced")

    def replication_link_port(self) -> int:
        """The replica's own port on its connection to the master (to silence that link)."""
        replicas = self.client().client_list(_type="replica")
        return int(replicas[0]["addr"].rsplit(":", 1)[1])

    def kill_master(self) -> int:
        """SIGKILL the master; its port."""
        port = self.master_port()
        self.processes[port].kill()
        self.processes[port].wait(5)
        return port

    def restart(self, port: int) -> None:
        """Start a killed server again, empty: the Sentinels make it a replica of the current master."""
        self._spawn(port, "--port", str(port), *self.COMMON)

    def wait_new_master(self, old: int, timeout: float = 30) -> int:
        """Until the Sentinels name another master and it accepts writes; its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.master_port()
            if port != old and redis.Redis(port=port, socket_timeout=1).info("replication")["role"] == "master":
                return port
            time.sleep(0.05)
        raise RuntimeError("no new master")

    def client(self, port: int | None = None) -> redis.Redis:
        return redis.Redis(port=port or self.master_port(), socket_timeout=2, decode_responses=True)

    def logs(self) -> str:
        return "\n".join(f"===== redis {p}\n{(self.root / f'{p}.log').read_text(errors='replace')[-2000:]}"
                         for p in self.processes)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


def _wait_for_ping(port: int, timeout: float = 10) -> None:
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on port {port} did not start")
