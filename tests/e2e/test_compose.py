"""docker-compose.yml for real: build the image, bring the stack up, send through it, scale, stop.

Needs a Docker engine and `docker compose` (or Debian's `docker-compose`); skips without
them. Deselect with `-m "not compose"`. Ports are published on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import re
import shutil
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


@pytest.fixture
def project(image) -> Iterator[Project]:
    ports = {"API_PORT": free_port(), "FLOWER_PORT": free_port(), "RECEIVER_HOST_PORT": free_port()}
    name = f"msgsmoke{uuid.uuid4().hex[:8]}"
    env = environment(
        COMPOSE_PROJECT_NAME=name,
        MESSAGING_IMAGE=image,
        FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH),
        SEND_INTERVAL_SECONDS=1,
        SEND_BATCH_SIZE=100,
        **ports,
    )
    running = Project(compose_command(), env, name)
    try:
        yield running
    finally:
        subprocess.run([*running.command, "down", "-v", "--remove-orphans", "-t", "5"], cwd=ROOT, env=env, capture_output=True)


def post_messages(api: str, count: int, tag: str) -> list[str]:
    ids = []
    for n in range(count):
        answer = requests.post(
            f"{api}/messaging/messages",
            json={"recipient_phone_number": f"+9053{n:09d}", "content": f"{tag} {n}"},
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
    published = project.run("port", "api", "8080").strip()
    assert published.startswith("127.0.0.1:"), published

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
