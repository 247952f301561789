"""The container files' mistakes that only show up later, found without a Docker engine: compose's
own `config` renders the file as `docker-compose up` would read it, and the image's packages are
imported from a copy of exactly what the Dockerfile copies.

Everything else about docker-compose.yml and the Dockerfile is shown by running them:
tests/e2e/test_compose.py builds the image, brings the stack up healthy, sends through
it, scales the workers and stops it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from messaging.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
# What the processes run: `gunicorn 'api:create_app()'`, `celery -A worker`, `python -m messaging|receiver`.
ENTRY_POINTS = ("api", "worker.tasks", "worker.beat", "worker.health", "messaging.__main__", "receiver.__main__")
# Read at run time rather than imported: the migrations and the API's gunicorn settings.
DATA = {"sql", "gunicorn.conf.py"}


def compose_config(**variables: str) -> subprocess.CompletedProcess:
    """`docker-compose config` with only `variables` set: the file as compose reads it, or its refusal."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("Debian's docker-compose (v1) renders a compose file offline; it is not on PATH (.ci/run installs it)")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **variables}
    return subprocess.run([binary, "-f", str(COMPOSE_FILE), "config"], env=env, capture_output=True, text=True, timeout=60)


def compose_services(**variables: str) -> dict[str, dict]:
    rendered = compose_config(FLOWER_BASIC_AUTH="u:p", **variables)
    assert rendered.returncode == 0, rendered.stderr
    return yaml.safe_load(rendered.stdout)["services"]


def test_every_app_service_starts_with_the_compose_defaults():
    for name, service in compose_services().items():
        environment = service.get("environment") or {}
        if "build" in service and "DATABASE_URL" in environment:  # the receiver reads no settings
            Settings.from_env(environment)  # raises SettingsError naming a bad variable


def test_compose_refuses_to_start_without_flower_basic_auth_saying_so():
    refused = compose_config()
    assert refused.returncode != 0
    assert "set FLOWER_BASIC_AUTH=user:password" in refused.stderr


def test_flower_has_no_unauthenticated_api():
    services = compose_services()
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "u:p"
    assert all("FLOWER_UNAUTHENTICATED_API" not in (service.get("environment") or {}) for service in services.values())


def test_every_published_port_is_on_loopback_unless_told_otherwise():
    def published(**variables: str) -> list[str]:
        return [str(port) for service in compose_services(**variables).values() for port in service.get("ports", [])]

    assert published() and all(port.startswith("127.0.0.1:") for port in published()), published()
    assert all(port.startswith("0.0.0.0:") for port in published(PUBLISH_ADDRESS="0.0.0.0")), published(PUBLISH_ADDRESS="0.0.0.0")


def dockerfile_copies() -> set[str]:
    """The sources the runtime image copies from the build context (not from another stage)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    copies = set()
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(word.startswith("--from") for word in words):
            copies |= {source.rstrip("/") for source in words[1:-1] if not source.startswith("--")}
    return copies


def test_dockerignore_keeps_every_path_the_dockerfile_copies():
    ignored = [line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [pattern for pattern in ignored if pattern and not pattern.startswith("#")]
    for source in dockerfile_copies():
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
        assert not any(fnmatch(source, pattern) for pattern in patterns), f".dockerignore drops {source}"


def test_the_image_holds_every_package_its_processes_import(tmp_path):
    """What the Dockerfile copies, alone in a folder: each process's entry point imports from it."""
    for source in dockerfile_copies():
        copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copy2
        copy(ROOT / source, tmp_path / source)
    assert DATA <= {path.name for path in tmp_path.iterdir()}
    imports = "; ".join(f"import {module}" for module in ENTRY_POINTS)
    # -I: isolated, so neither the checkout nor PYTHONPATH can lend a package the image lacks.
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, '.'); {imports}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
