"""Hostile HTTP against the real gunicorn API, over raw sockets: it changes nothing and forges no log line."""

from __future__ import annotations

import json
import socket
import threading
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from harness.stack import Process, Stack, environment, free_port
from messaging.redis import keys
from tests.helpers import wait_for

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
    # The raw requests below name the API "api" in their Host header: ALLOWED_HOSTS adds that name.
    env = environment(DATABASE_URL=database_url, REDIS_URL=redis_url, AUTO_START="false", ALLOWED_HOSTS="api")
    stack = Stack(env, tmp_path_factory.mktemp("api"))
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


def chunked_post(path: bytes) -> bytes:
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
VALID_BODY = json.dumps({"recipient_phone_number": "+905321234567", "content": "hi"}).encode()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one answer, read by its Content-Length (the server may still be draining)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or pytest.fail(f"closed before an answer: {data!r}")
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536) or pytest.fail("closed inside the body")
    return int(status_line.split()[1]), headers, body


def count_messages(db) -> int:
    return db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"]


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


# --- request bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "status"),
    [
        ([b" " * 100_000, VALID_BODY], 413),
        ([VALID_BODY, b" " * 65_536], 413),
        ([VALID_BODY[:10], VALID_BODY[10:]], 201),
    ],
    ids=["100-kb-of-spaces-first", "json-then-64-kib-of-spaces", "small-json-in-two-chunks"],
)
def test_a_chunked_body_over_64_kib_answers_413_and_stores_nothing(api, db, chunks, status):
    answer = api.send(chunked_post(b"/messaging/messages") + b"".join(chunk(c) for c in chunks) + LAST_CHUNK)

    assert answer.split(b" ", 2)[1] == str(status).encode(), answer[:300]
    assert count_messages(db) == (1 if status == 201 else 0)
    if status == 413:
        assert b'"code":"request_entity_too_large"' in answer


def test_a_20_mb_chunked_body_is_refused_after_64_kib_without_waiting_for_the_rest(api, db):
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:

        def send_body() -> None:
            try:
                sock.sendall(chunked_post(b"/messaging/messages") + chunk(VALID_BODY))
                for _ in range(20 * 16):
                    sock.sendall(chunk(b" " * 65_536))
                sock.sendall(LAST_CHUNK)
            except OSError:
                pass  # the server closes once it has answered and drained a little

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        status, headers, body = read_answer(sock)
        sock.shutdown(socket.SHUT_RDWR)
        sender.join(10)

    assert status == 413 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "request_entity_too_large"
    assert count_messages(db) == 0


def test_a_chunked_body_is_answered_413_before_the_client_has_sent_it_all(api):
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(chunked_post(b"/messaging/stop") + chunk(b" " * 70_000))  # no last chunk: the body never ends

        status, _, body = read_answer(sock)

    assert status == 413, body


@pytest.mark.parametrize("path", [b"/messaging/messages", b"/messaging/stop"])
@pytest.mark.parametrize(
    "body",
    [b"zz\r\n", b"5\r\nabc\r\n0\r\n\r\n", b"5;a=\x01\r\nabcde\r\n0\r\n\r\n", b"3\r\nabc\r\n0\r\nX: \x01\r\n\r\n"],
    ids=["bad-size", "short-chunk", "bad-extension", "bad-trailer"],
)
def test_a_malformed_chunked_body_answers_400_json_and_changes_nothing(api, db, redis_url, path, body):
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(chunked_post(path) + body)
        status, headers, answer = read_answer(sock)

    assert status == 400 and headers["content-type"] == "application/json", answer
    assert json.loads(answer)["error"]["code"] == "bad_request"
    assert count_messages(db) == 0
    assert redis.Redis.from_url(redis_url).get(keys.ENABLED) is None


# --- browsers ------------------------------------------------------------------------------


def from_browser(method: bytes, path: bytes, host: bytes, *headers: bytes) -> bytes:
    return b"%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n" % (
        method, path, host, b"".join(h + b"\r\n" for h in headers)
    )


def test_a_rebound_host_gets_400_and_a_foreign_page_403_from_the_real_server(api, redis_url):
    own = b"127.0.0.1:%d" % api.port
    rebound = api.send(from_browser(b"GET", b"/messaging/sent", b"attacker.example:%d" % api.port))
    foreign_page = api.send(
        from_browser(b"POST", b"/messaging/stop", own, b"Origin: https://attacker.example", b"Sec-Fetch-Site: cross-site")
    )

    assert rebound.startswith(b"HTTP/1.1 400 ") and b'"host_not_allowed"' in rebound, rebound
    assert foreign_page.startswith(b"HTTP/1.1 403 ") and b'"forbidden"' in foreign_page, foreign_page
    assert redis.Redis.from_url(redis_url).get(keys.ENABLED) is None  # sending was not stopped
    own_page = from_browser(b"GET", b"/messaging/sent", own, b"Origin: http://" + own, b"Sec-Fetch-Site: same-origin")
    assert api.send(own_page).startswith(b"HTTP/1.1 200 ")
    assert api.send(from_browser(b"GET", b"/messaging/sent", b"[::1]:%d" % api.port)).startswith(b"HTTP/1.1 200 ")


# --- what gunicorn refuses itself ----------------------------------------------------------

# The README and docs/api.md list these answers as the only ones that are not JSON: gunicorn writes them before
# the request reaches the app, and has no setting for their body.
GUNICORN_REFUSALS = {
    "uri-over-4094-bytes": (b"GET /" + b"a" * 4095 + b" HTTP/1.1", (), 414),
    "raw-non-ascii-byte-in-the-request-line": (b"GET /messaging/\xff HTTP/1.1", (), 400),
    "control-byte-in-the-request-line": (b"GET /messaging/a\x1bb HTTP/1.1", (), 400),
    "bad-http-version": (b"GET / HTTP/9.9", (), 400),
    "control-byte-in-a-header": (b"GET /health HTTP/1.1", (b"X-Forged: a\x1b[2Jevent=delivery",), 400),
    "obsolete-line-folding": (b"GET /health HTTP/1.1", (b"X-A: a\r\n b",), 400),
    "length-and-chunked": (b"POST /messaging/stop HTTP/1.1", (b"Content-Length: 5", b"Transfer-Encoding: chunked"), 400),
    "header-over-8190-bytes": (b"GET /health HTTP/1.1", (b"X-A: " + b"a" * 8190,), 431),
    "more-than-100-headers": (b"GET /health HTTP/1.1", tuple(b"X-%d: a" % n for n in range(101)), 431),
    "unknown-expectation": (b"POST /messaging/stop HTTP/1.1", (b"Expect: teapot", b"Content-Length: 0"), 417),
}


@pytest.mark.parametrize(("line", "headers", "status"), GUNICORN_REFUSALS.values(), ids=GUNICORN_REFUSALS.keys())
def test_requests_gunicorn_refuses_get_its_own_html_answer_and_reach_nothing(api, redis_url, line, headers, status):
    request = line + b"\r\nHost: api\r\n" + b"".join(h + b"\r\n" for h in headers) + b"Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(request)
        answered, answer_headers, _ = read_answer(sock)

    assert answered == status
    assert answer_headers["content-type"] == "text/html"
    assert redis.Redis.from_url(redis_url).get(keys.ENABLED) is None
    assert raw_controls(api.process.log()) == []


def test_a_uri_just_under_gunicorns_limit_reaches_the_app_and_answers_json(api):
    answer = api.send(get(b"/" + b"a" * 4000))

    assert answer.startswith(b"HTTP/1.1 404 ")
    assert b"Content-Type: application/json" in answer
