"""docker-compose.yml for real: build the image, bring the stack up, send through it, scale, stop;
slow clients and big bodies meet nginx, not the API; the app runs with least privilege.

Needs a Docker engine and `docker compose` (or Debian's `docker-compose`); skips without
them. Deselect with `-m "not compose"`. Ports are published on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from harness.stack import ROOT, environment, free_port
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.compose, pytest.mark.timeout(900)]
FLOWER_AUTH = ("smoke", "test-password")
API_TOKEN = "compose-test-token-" + "0123456789abcdef" * 2
AUTHORIZED = {"Authorization": f"Bearer {API_TOKEN}"}
# Trickling clients: each sends a header line this often and never ends its request.
TRICKLERS = 200
TRICKLE_INTERVAL = 3.0
APP_SERVICES = ("api", "worker", "beat", "flower", "receiver")
SENT_LINE = re.compile(r"event=delivery message_id=(\S+) outcome=sent")


def compose_command() -> list[str] | None:
    if shutil.which("docker") is None:
        return None
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def docker_answers() -> bool:
    return shutil.which("docker") is not None and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@dataclass
class Container:
    id: str
    service: str
    status: str
    health: str | None
    exit_code: int


@dataclass
class Project:
    command: list[str]
    env: dict[str, str]
    name: str

    def run(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [*self.command, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done.stdout

    def containers(self) -> list[Container]:
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.name}"],
            capture_output=True, text=True, check=True,
        ).stdout.split()
        if not ids:
            return []
        inspected = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout)
        return [
            Container(
                id=item["Id"],
                service=item["Config"]["Labels"]["com.docker.compose.service"],
                status=item["State"]["Status"],
                health=(item["State"].get("Health") or {}).get("Status"),
                exit_code=item["State"]["ExitCode"],
            )
            for item in inspected
        ]

    def healthy(self, expected: dict[str, int]) -> bool:
        """Every long-running service has its expected number of healthy containers; migrate exited 0."""
        containers = self.containers()
        migrate = [c for c in containers if c.service == "migrate"]
        if not migrate or any(c.status != "exited" or c.exit_code != 0 for c in migrate):
            return False
        for service, count in expected.items():
            if sum(1 for c in containers if c.service == service and c.health == "healthy") != count:
                return False
        return True

    def wait_healthy(self, expected: dict[str, int], timeout: float = 240) -> None:
        try:
            wait_for(lambda: self.healthy(expected), timeout=timeout, interval=2, what=f"healthy containers: {expected}")
        except AssertionError as error:
            pytest.fail(f"{error}\n{self.report()}")

    def logs(self, container: Container) -> str:
        done = subprocess.run(["docker", "logs", container.id], capture_output=True, text=True)
        return done.stdout + done.stderr

    def report(self) -> str:
        lines = [f"{c.service} {c.id[:12]} {c.status} health={c.health} exit={c.exit_code}" for c in self.containers()]
        return "\n".join(lines)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    if compose_command() is None or not docker_answers():
        pytest.skip("no Docker engine answers (docker info failed), or no docker compose / docker-compose")
    tag = f"messaging-compose-test:{uuid.uuid4().hex[:8]}"
    # Host network: the build reaches the package index the host reaches (a mirror on loopback too).
    subprocess.run(["docker", "build", "--network", "host", "-t", tag, "."], cwd=ROOT, check=True, capture_output=True, timeout=600)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def new_project(image: str, prefix: str) -> Project:
    """A compose project of its own name, on free loopback ports, with every required secret set."""
    ports = {"API_PORT": free_port(), "FLOWER_PORT": free_port(), "RECEIVER_HOST_PORT": free_port()}
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    env = environment(
        COMPOSE_PROJECT_NAME=name,
        MESSAGING_IMAGE=image,
        FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH),
        REDIS_PASSWORD=uuid.uuid4().hex,
        API_TOKEN=API_TOKEN,
        SEND_INTERVAL_SECONDS=1,
        SEND_BATCH_SIZE=100,
        **ports,
    )
    return Project(compose_command(), env, name)


def tear_down(project: Project) -> None:
    subprocess.run([*project.command, "down", "-v", "--remove-orphans", "-t", "5"], cwd=ROOT, env=project.env, capture_output=True)


@pytest.fixture
def project(image) -> Iterator[Project]:
    running = new_project(image, "msgsmoke")
    try:
        yield running
    finally:
        tear_down(running)


@pytest.fixture(scope="module")
def front(image) -> Iterator[Project]:
    """nginx and what it needs (api, migrate, PostgreSQL, Redis), up and answering /health through nginx."""
    running = new_project(image, "msgfront")
    try:
        running.run("up", "-d", "--no-build", "nginx")
        health = f"http://127.0.0.1:{running.env['API_PORT']}/health"
        wait_for(lambda: answers(health), timeout=240, interval=1, what="/health through nginx")
        yield running
    finally:
        tear_down(running)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def post_messages(api: str, count: int, tag: str) -> list[str]:
    ids = []
    for n in range(count):
        answer = requests.post(
            f"{api}/messaging/messages",
            json={"recipient_phone_number": f"+9053{n:09d}", "content": f"{tag} {n}"},
            headers=AUTHORIZED,
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    return ids


def delivered(receiver: str, ids: list[str]) -> bool:
    keys = {d["key"] for d in requests.get(f"{receiver}/_receiver/deliveries", timeout=10).json()}
    return keys >= set(ids)


def test_the_compose_stack_comes_up_healthy_sends_scales_and_stops_cleanly(project):
    api = f"http://127.0.0.1:{project.env['API_PORT']}"
    receiver = f"http://127.0.0.1:{project.env['RECEIVER_HOST_PORT']}"
    flower = f"http://127.0.0.1:{project.env['FLOWER_PORT']}"
    long_running = {"postgres": 1, "redis": 1, "api": 1, "worker": 2, "beat": 1, "flower": 1, "receiver": 1}

    project.run("up", "-d", "--no-build")
    project.wait_healthy(long_running)
    published = project.run("port", "nginx", "8080").strip()
    assert published == f"127.0.0.1:{project.env['API_PORT']}", published
    wait_for(lambda: answers(f"{api}/health"), timeout=30, interval=1, what="/health through nginx")

    first = post_messages(api, 5, "smoke")
    wait_for(lambda: delivered(receiver, first), timeout=60, interval=1, what="the first messages at the receiver")

    project.run("up", "-d", "--no-build", "--no-recreate", "--scale", "worker=3")
    project.wait_healthy({**long_running, "worker": 3})
    assert requests.get(f"{flower}/api/workers", timeout=10).status_code == 401, "Flower asks for its password"
    workers = requests.get(f"{flower}/api/workers", params={"refresh": "true"}, auth=FLOWER_AUTH, timeout=30).json()
    assert len(workers) == 3, workers

    requests.post(f"{receiver}/_receiver/behaviour", json={"delay_ms": 20}, timeout=10).raise_for_status()
    backlog = post_messages(api, 300, "spread")
    wait_for(lambda: delivered(receiver, backlog), timeout=120, interval=1, what="the backlog at the receiver")

    def sent_per_worker() -> dict[str, int]:
        """From each worker's own delivery log lines: how many of the backlog it sent."""
        return {
            worker.id[:12]: len(set(SENT_LINE.findall(project.logs(worker))) & set(backlog))
            for worker in project.containers()
            if worker.service == "worker"
        }

    wait_for(lambda: sum(sent_per_worker().values()) == len(backlog), timeout=30, what="every delivery logged")
    per_worker = sent_per_worker()
    assert len(per_worker) == 3 and all(per_worker.values()), f"every worker sends a share: {per_worker}"

    stopping = time.monotonic()
    project.run("stop")
    assert time.monotonic() - stopping < 30, "every process stops on SIGTERM, none waits for the kill"
    stopped = project.containers()
    assert all(c.status == "exited" for c in stopped), project.report()
    app_codes = {(c.service, c.exit_code) for c in stopped if c.service in APP_SERVICES}
    assert app_codes == {(service, 0) for service in APP_SERVICES}, project.report()


def test_the_images_healthcheck_follows_the_port_the_api_binds_to(image):
    name = f"msgprobe{uuid.uuid4().hex[:8]}"
    # /health needs neither PostgreSQL nor Redis: the API only has to listen.
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--init", "--network", "none", "--health-interval", "1s",
         "-e", "GUNICORN_BIND=0.0.0.0:9090", image],
        check=True, capture_output=True,
    )
    try:
        def health() -> str:
            return subprocess.run(
                ["docker", "inspect", "--format", "{{.State.Health.Status}}", name], capture_output=True, text=True
            ).stdout.strip()

        wait_for(lambda: health() == "healthy", timeout=60, interval=1, what="the API container to turn healthy on port 9090")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_compose_up_refuses_to_start_without_an_api_token_unless_api_auth_is_off(image):
    refused = new_project(image, "msgnotoken")
    del refused.env["API_TOKEN"]
    try:
        done = subprocess.run(
            [*refused.command, "up", "-d", "--no-build"], cwd=ROOT, env=refused.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode != 0
        assert "set API_TOKEN (32+ characters" in done.stderr, done.stderr
        assert refused.containers() == [], "nothing was started"
    finally:
        tear_down(refused)


def trickle(port: int, count: int) -> list[socket.socket]:
    """`count` connections that each start a request and send one header line; the caller sends the rest."""
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        clients.append(client)
    return clients


def timed_health(url: str) -> float:
    started = time.monotonic()
    answer = requests.get(url, timeout=5)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    return elapsed


def test_slow_clients_hold_nginx_connections_not_the_apis_threads(front):
    """200 clients that send a header line every 3 s and never finish: /health still answers within 100 ms,
    and nginx drops the tricklers once client_header_timeout (10 s, deploy/nginx.conf) has passed."""
    port = int(front.env["API_PORT"])
    clients = trickle(port, TRICKLERS)
    try:
        latencies = []
        for round_number in range(3):  # 9 s of trickling, inside nginx's 10 s header timeout
            for n, client in enumerate(clients):
                client.sendall(f"X-Trickle-{round_number}: {n}\r\n".encode())
            latencies += [timed_health(f"http://127.0.0.1:{port}/health") for _ in range(5)]
            time.sleep(TRICKLE_INTERVAL)
        assert max(latencies) < 0.1, f"/health took {max(latencies) * 1000:.0f} ms with {TRICKLERS} trickling clients"

        def dropped(client: socket.socket) -> bool:
            client.settimeout(15)
            try:
                while client.recv(4096):
                    pass
            except TimeoutError:
                return False
            except ConnectionError:
                pass
            return True

        assert all(dropped(client) for client in clients), "nginx closes a request header that never ends"
    finally:
        for client in clients:
            client.close()


def test_nginx_refuses_bodies_over_64_kib_and_the_api_publishes_no_port(front):
    url = f"http://127.0.0.1:{front.env['API_PORT']}/messaging/messages"
    body = b'{"content": "' + b"x" * (65 * 1024) + b'"}'
    refused = requests.post(url, data=body, headers={**AUTHORIZED, "Content-Type": "application/json"}, timeout=10)
    assert refused.status_code == 413, refused.status_code
    assert refused.headers.get("Server", "").startswith("nginx"), "refused by nginx, before gunicorn reads it"
    api = subprocess.run([*front.command, "port", "api", "8080"], cwd=ROOT, env=front.env, capture_output=True, text=True)
    assert api.stdout.strip() in ("", ":0"), f"the api container publishes {api.stdout.strip()}"


def test_the_app_runs_as_its_own_role_and_redis_asks_for_a_password(front):
    def in_service(service: str, *command: str) -> str:
        return front.run("exec", "-T", service, *command).strip()

    owners = in_service(
        "postgres", "psql", "-U", "postgres", "-d", "messaging", "-Atc",
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'",
    )  # fmt: skip
    assert owners == "messaging", owners
    superuser = in_service("postgres", "psql", "-U", "postgres", "-Atc", "SELECT rolsuper FROM pg_roles WHERE rolname = 'messaging'")
    assert superuser == "f"
    unauthenticated = subprocess.run(
        [*front.command, "exec", "-T", "redis", "env", "-u", "REDISCLI_AUTH", "redis-cli", "ping"],
        cwd=ROOT, env=front.env, capture_output=True, text=True,
    )  # fmt: skip
    assert "NOAUTH" in unauthenticated.stdout + unauthenticated.stderr
    assert in_service("redis", "redis-cli", "config", "get", "maxmemory-policy").split() == ["maxmemory-policy", "noeviction"]
