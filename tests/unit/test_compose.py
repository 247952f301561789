"""The container files' mistakes that only show up later, checked without a Docker engine.

Everything else about docker-compose.yml and the Dockerfile is shown by running them:
tests/e2e/test_compose.py builds the image, brings the stack up healthy, sends through
it, scales the workers and stops it.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from messaging.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}: compose's interpolation forms.
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<word>[^}]*))?\}")
# What the processes run: `gunicorn 'api:create_app()'`, `celery -A worker`, `python -m messaging|receiver`.
ENTRY_POINTS = ("api", "worker", "messaging", "receiver")
# Read at run time rather than imported: the migrations and the API's gunicorn settings.
DATA = {"sql", "gunicorn.conf.py"}


def with_defaults(value: object, given: dict[str, str] | None = None) -> str:
    """A compose value as a container receives it when only `given` is set in the shell."""
    given = given or {}

    def substitute(match: re.Match) -> str:
        name, op, word = match["name"], match["op"], match["word"]
        if name in given:
            return given[name]
        if op and op.endswith("?"):
            raise LookupError(f"{name} is required: {word}")
        return word or ""

    return INTERPOLATION.sub(substitute, str(value))


def compose_services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def app_services() -> dict[str, dict]:
    """The services that run this project's code (built from the Dockerfile)."""
    return {name: service for name, service in compose_services().items() if "build" in service}


def test_every_app_service_starts_with_the_compose_defaults():
    for name, service in app_services().items():
        environment = {key: with_defaults(value, {"FLOWER_BASIC_AUTH": "u:p"}) for key, value in service["environment"].items()}
        if "DATABASE_URL" in environment:  # the receiver reads no settings
            Settings.from_env(environment)  # raises SettingsError naming a bad variable


def test_flower_has_no_default_password_and_no_unauthenticated_api():
    flower = compose_services()["flower"]["environment"]
    with pytest.raises(LookupError, match="FLOWER_BASIC_AUTH"):
        with_defaults(flower["FLOWER_BASIC_AUTH"])
    assert all("FLOWER_UNAUTHENTICATED_API" not in (service.get("environment") or {}) for service in compose_services().values())


def test_compose_refuses_to_start_without_flower_basic_auth_saying_so(tmp_path):
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("Debian's docker-compose (v1) validates a compose file offline; it is not on PATH")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    refused = subprocess.run([binary, "-f", str(COMPOSE_FILE), "config", "-q"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "set FLOWER_BASIC_AUTH=user:password" in refused.stderr
    accepted = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "config", "-q"], env={**env, "FLOWER_BASIC_AUTH": "u:p"}, capture_output=True, text=True, timeout=60
    )
    assert accepted.returncode == 0, accepted.stderr


def test_every_published_port_is_on_loopback_unless_told_otherwise():
    published = [(name, port) for name, service in compose_services().items() for port in service.get("ports", [])]
    assert published
    for name, port in published:
        assert with_defaults(port).startswith("127.0.0.1:"), (name, port)
        assert with_defaults(port, {"PUBLISH_ADDRESS": "0.0.0.0"}).startswith("0.0.0.0:"), (name, port)


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


def test_the_image_holds_every_package_its_processes_import():
    copied = dockerfile_copies()
    local = {path.name for path in ROOT.iterdir() if (path / "__init__.py").exists()}
    needed, todo = set(), list(ENTRY_POINTS)
    while todo:
        package = todo.pop()
        if package in needed:
            continue
        needed.add(package)
        for source in (ROOT / package).rglob("*.py"):
            todo += sorted(_top_level_imports(source) & local)
    missing = (needed | DATA) - copied
    assert not missing, f"the image lacks {sorted(missing)}"


def _top_level_imports(source: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names
