"""Network faults for real, as root: chosen loopback connections silenced with iptables, and a
host partitioned by taking down the veth link of a network namespace. Each undoes itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

SS_PROCESS = re.compile(r"pid=(\d+)")


def _missing(*binaries: str) -> str | None:
    """Why the network faults cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for binary in binaries:
        if shutil.which(binary) is None:
            return f"needs `{binary}` on PATH"
    return None


def iptables_unusable() -> str | None:
    """None when this process can add and delete an iptables rule, else why not."""
    missing = _missing("iptables", "ss")
    if missing:
        return missing
    probe = ["INPUT", "-i", "lo", "-p", "tcp", "--sport", "1", "--dport", "1", "-j", "DROP"]
    added = _run("iptables", "-I", *probe)
    if added.returncode != 0:
        return f"iptables refused a rule: {added.stderr.strip()}"
    _run("iptables", "-D", *probe)
    return None


def netns_unusable() -> str | None:
    """None when this process can make a network namespace with a veth link, else why not."""
    missing = _missing("ip")
    if missing:
        return missing
    name = f"probe-{uuid.uuid4().hex[:8]}"
    made = _run("ip", "netns", "add", name)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _run("ip", "netns", "del", name)
    return None


def process_tree(pid: int) -> set[int]:
    """A process and all its descendants (a worker's pool processes, say)."""
    found = {pid}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found |= process_tree(int(child))
    return found


def client_ports(server_port: int, pids: set[int]) -> set[int]:
    """The local ports of the established loopback connections to `server_port` that `pids` hold."""
    listing = _run("ss", "-tnpH", "state", "established", f"( dport = :{server_port} )").stdout
    ports = set()
    for line in listing.splitlines():
        fields = line.split()
        owners = {int(pid) for pid in SS_PROCESS.findall(line)}
        if len(fields) >= 3 and owners & pids:
            ports.add(int(fields[2].rsplit(":", 1)[1]))
    return ports


@contextmanager
def silenced(server_port: int, ports: Iterable[int]) -> Iterator[None]:
    """Drop every packet, both ways, of the given loopback connections: no reset, no error, silence.

    New connections (other client ports) still work, as after a failover or a lost NAT entry.
    """
    rules = []
    for port in sorted(ports):
        rules.append(["INPUT", "-i", "lo", "-p", "tcp", "--sport", str(server_port), "--dport", str(port), "-j", "DROP"])
        rules.append(["INPUT", "-i", "lo", "-p", "tcp", "--dport", str(server_port), "--sport", str(port), "-j", "DROP"])
    added = []
    try:
        for rule in rules:
            _run("iptables", "-I", *rule, check=True)
            added.append(rule)
        yield
    finally:
        for rule in added:
            _run("iptables", "-D", *rule)


class Namespace:
    """A network namespace joined to this host by a veth pair: a second host on one machine."""

    def __init__(self, subnet: int) -> None:
        tag = uuid.uuid4().hex[:6]
        self.name = f"msg-{tag}"
        self.host_link = f"vh-{tag}"
        self.inner_link = f"vn-{tag}"
        self.host_address = f"10.213.{subnet}.1"
        self.inner_address = f"10.213.{subnet}.2"

    def create(self) -> Namespace:
        inside = ["ip", "netns", "exec", self.name]
        for command in (
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self.host_link, "type", "veth", "peer", "name", self.inner_link],
            ["ip", "link", "set", self.inner_link, "netns", self.name],
            ["ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_link],
            ["ip", "link", "set", self.host_link, "up"],
            [*inside, "ip", "addr", "add", f"{self.inner_address}/30", "dev", self.inner_link],
            [*inside, "ip", "link", "set", self.inner_link, "up"],
            [*inside, "ip", "link", "set", "lo", "up"],
        ):
            _run(*command, check=True)
        return self

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def connections_to(self, ports: set[int]) -> int:
        """How many established TCP connections inside the namespace go to one of `ports`."""
        listing = _run(*self.command("ss", "-tnH", "state", "established"), check=True).stdout
        return sum(1 for line in listing.splitlines() if int(line.split()[3].rsplit(":", 1)[1]) in ports)

    def link_down(self) -> None:
        _run("ip", "link", "set", self.host_link, "down", check=True)

    def link_up(self) -> None:
        _run("ip", "link", "set", self.host_link, "up", check=True)

    def delete(self) -> None:
        """Remove the namespace and its link (deleting one end of a veth deletes both)."""
        _run("ip", "link", "del", self.host_link)
        _run("ip", "netns", "del", self.name)


def _run(*argv: str, check: bool = False) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done
