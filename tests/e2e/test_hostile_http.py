"""Hostile HTTP against the real gunicorn API, over raw sockets: it changes nothing and forges no log line."""

from __future__ import annotations

import socket
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.helpers import wait_for
from tests.stack import Process, Stack, environment, free_port

pytestmark = pytest.mark.e2e


@dataclass
class Api:
    port: int
    process: Process

    def send(self, request: bytes) -> bytes:
        """Send raw bytes on a fresh connection; everything the server answers until it closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(request)
            return read_all(sock)

    def access_line(self, marker: str) -> str:
        """The access log line of the request whose path holds `marker` (it may take a moment to be written)."""
        lines = wait_for(
            lambda: [line for line in self.process.log().splitlines() if "event=http_request" in line and marker in line],
            what=f"the access log line of {marker}",
        )
        assert len(lines) == 1, lines
        return lines[0]


@pytest.fixture(scope="module")
def api(database_url, redis_url, tmp_path_factory) -> Iterator[Api]:
    stack = Stack(environment(DATABASE_URL=database_url, REDIS_URL=redis_url, AUTO_START="false"), tmp_path_factory.mktemp("api"))
    port = free_port()
    process = stack.api(port)
    yield Api(port, process)
    stack.stop()


def read_all(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def get(path: bytes, *headers: bytes) -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: api\r\n" + b"".join(h + b"\r\n" for h in headers) + b"Connection: close\r\n\r\n"


def raw_controls(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") and c != "\n"]


# --- log lines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("escape", "written"),
    [
        (b"%0aevent=delivery%20outcome=sent", r"\nevent=delivery outcome=sent"),
        (b"%0d%0aevent=delivery", r"\r\nevent=delivery"),
        (b"%00", r"\x00"),
        (b"%1b[31m%7f", r"\x1b[31m\x7f"),
        # NEL, LINE SEPARATOR and RLO in UTF-8, which the WSGI path holds as latin-1 characters.
        (b"%c2%85%e2%80%a8%e2%80%ae", r"Â\x85â\x80¨â\x80®"),
        (b"%5c%22%20status=200", r'\\\" status=200'),
    ],
    ids=["lf", "crlf", "nul", "esc-del", "unicode-breaks", "backslash-quote"],
)
def test_control_characters_in_a_path_never_reach_the_access_log_raw(api, escape, written):
    marker = uuid.uuid4().hex
    answer = api.send(get(b"/messaging/messages/" + marker.encode() + escape))

    assert answer.startswith(b"HTTP/1.1 404 ")
    line = api.access_line(marker)
    assert f'path="/messaging/messages/{marker}{written}" status=404 ' in line
    log = api.process.log()
    assert raw_controls(log) == []
    assert not any(line.startswith("event=delivery") for line in log.splitlines()), "no forged line"
