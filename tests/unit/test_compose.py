"""The container files' mistakes that only show up later, found without a Docker engine: compose's
own `config` renders the file as `docker-compose up` would read it, and the image's packages are
imported from a copy of exactly what the Dockerfile copies.

Everything else about docker-compose.yml and the Dockerfile is shown by running them:
tests/e2e/test_compose.py builds the image, brings the stack up healthy, sends through
it, scales the workers and stops it.
"""

from __future__ import annotations

import re
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
RABBITMQ_FILE = ROOT / "deploy" / "rabbitmq.yml"
# The variables compose requires, each a value found nowhere else in the rendered file.
REQUIRED = {
    "FLOWER_BASIC_AUTH": "u:p",
    "REDIS_PASSWORD": "redis-secret-0123",
    "API_TOKEN": "api-token-" + "t" * 32,
}
# What the processes run: `gunicorn 'api:create_app()'`, `celery -A worker`, `python -m messaging|receiver`.
ENTRY_POINTS = (
    "api",
    "worker.tasks",
    "worker.beat",
    "worker.health",
    "messaging.__main__",
    "receiver.__main__",
)
# Read at run time rather than imported: the migrations and the API's gunicorn settings.
DATA = {"sql", "gunicorn.conf.py"}


def compose_config(*files: Path, **variables: str) -> subprocess.CompletedProcess:
    """`docker-compose config` with only `variables` set: the file as compose reads it, or its refusal."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "Debian's docker-compose (v1) renders a compose file offline; it is not on PATH (.ci/run installs it)"
        )
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **variables}
    chosen = [argument for file in (COMPOSE_FILE, *files) for argument in ("-f", str(file))]
    return subprocess.run([binary, *chosen, "config"], env=env, capture_output=True, text=True, timeout=60)


def compose_services(*files: Path, **variables: str) -> dict[str, dict]:
    rendered = compose_config(*files, **{**REQUIRED, **variables})
    assert rendered.returncode == 0, rendered.stderr
    return yaml.safe_load(rendered.stdout)["services"]


def test_every_app_service_starts_with_the_compose_defaults():
    for name, service in compose_services().items():
        environment = service.get("environment") or {}
        if "build" in service and "DATABASE_URL" in environment:  # the receiver reads no settings
            Settings.from_env(environment)  # raises SettingsError naming a bad variable


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("FLOWER_BASIC_AUTH", "set FLOWER_BASIC_AUTH=user:password"),
        ("REDIS_PASSWORD", "set REDIS_PASSWORD"),
        ("API_TOKEN", "set API_TOKEN (32+ characters"),
    ],
)
def test_compose_refuses_to_start_without_a_required_secret_saying_which(missing, message):
    refused = compose_config(**{name: value for name, value in REQUIRED.items() if name != missing})
    assert refused.returncode != 0
    assert message in refused.stderr, refused.stderr


def test_the_api_asks_for_its_token_unless_api_auth_off_is_said():
    assert compose_services()["api"]["environment"]["API_AUTH"] == "token"
    assert compose_services()["api"]["environment"]["API_TOKEN"] == REQUIRED["API_TOKEN"]
    without_token = {name: value for name, value in REQUIRED.items() if name != "API_TOKEN"}
    opened = compose_config(API_AUTH="off", **without_token)
    assert opened.returncode == 0, opened.stderr
    api = yaml.safe_load(opened.stdout)["services"]["api"]["environment"]
    assert api["API_AUTH"] == "off" and "API_TOKEN" not in api
    assert compose_config(API_AUTH="auto", **REQUIRED).returncode != 0, "compose knows token and off only"


def test_the_api_is_published_only_through_nginx_which_buffers_and_limits_bodies():
    services = compose_services(API_PORT="18080", ALLOWED_HOSTS="sms.example")
    assert "ports" not in services["api"], services["api"].get("ports")
    assert services["nginx"]["ports"] == ["127.0.0.1:18080:8080/tcp"], services["nginx"]["ports"]
    assert services["nginx"]["image"] == "nginx:1.27-alpine"
    assert any(
        volume.startswith(f"{ROOT / 'deploy' / 'nginx.conf'}:/etc/nginx/conf.d/default.conf:ro")
        for volume in map(str, services["nginx"]["volumes"])
    ), services["nginx"]["volumes"]
    assert services["api"]["environment"]["ALLOWED_HOSTS"] == "sms.example"
    assert compose_services()["api"]["environment"]["ALLOWED_HOSTS"] == "localhost,127.0.0.1"


def test_nginx_times_out_slow_clients_and_refuses_bodies_over_64_kib():
    directives = {}
    for line in (ROOT / "deploy" / "nginx.conf").read_text().splitlines():
        words = line.split("#", 1)[0].strip().rstrip(";").split()
        if words:
            directives.setdefault(words[0], []).append(" ".join(words[1:]))
    for timeout in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert directives[timeout] == ["10s"], timeout
    assert directives["client_max_body_size"] == ["64k"]
    assert directives["proxy_buffering"] == ["on"] and directives["proxy_request_buffering"] == ["on"]
    assert "Host $http_host" in directives["proxy_set_header"]
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in directives["proxy_set_header"]
    assert directives["listen"] == ["8080"]


def test_flower_has_no_unauthenticated_api():
    services = compose_services()
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "u:p"
    assert all("FLOWER_UNAUTHENTICATED_API" not in (service.get("environment") or {}) for service in services.values())


def test_every_published_port_is_on_loopback_unless_told_otherwise():
    def published(**variables: str) -> list[str]:
        return [str(port) for service in compose_services(**variables).values() for port in service.get("ports", [])]

    assert published() and all(port.startswith("127.0.0.1:") for port in published()), published()
    assert all(port.startswith("0.0.0.0:") for port in published(PUBLISH_ADDRESS="0.0.0.0")), published(
        PUBLISH_ADDRESS="0.0.0.0"
    )


def rendered_text(service: dict) -> str:
    """What a container is given: its environment and its command, as text to search."""
    return yaml.safe_dump({"environment": service.get("environment"), "command": service.get("command")})


def test_each_service_gets_only_the_secrets_it_uses():
    secrets = {
        "WEBHOOK_AUTH_KEY": ("webhook-key-sentinel", {"worker"}),
        "WEBHOOK_SIGNING_SECRET": (
            "whsec_c2lnbmluZy1zZWNyZXQtc2VudGluZWwtMzItYnl0ZXM=",
            {"worker"},
        ),
        "WEBHOOK_URL": ("http://hook:hook-password@provider.example/sms", {"worker"}),
        "STATUS_CALLBACK_URL": ("https://client:callback-password@client.example/events", {"worker"}),
        "STATUS_CALLBACK_SIGNING_SECRET": ("whsec_Y2FsbGJhY2stc2VjcmV0LXNlbnRpbmVsLTMyLWJ5dGVz", {"worker"}),
        "RECEIPT_SIGNING_SECRET": ("whsec_cmVjZWlwdC1zZWNyZXQtc2VudGluZWwtMzItYnl0ZXM=", {"api"}),
        "API_TOKEN": (REQUIRED["API_TOKEN"], {"api"}),
        "SECRET_KEY": ("secret-key-sentinel", {"api"}),
        "FLOWER_BASIC_AUTH": (REQUIRED["FLOWER_BASIC_AUTH"], {"flower"}),
        "POSTGRES_PASSWORD": ("postgres-admin-sentinel", {"postgres", "postgres-role"}),
        "REDIS_PASSWORD": (
            REQUIRED["REDIS_PASSWORD"],
            {"redis", "migrate", "api", "worker", "beat", "flower"},
        ),
    }
    services = compose_services(**{name: value for name, (value, _) in secrets.items()})
    for name, (value, users) in secrets.items():
        holders = {service for service, config in services.items() if value in rendered_text(config)}
        assert holders == users, f"{name} reaches {sorted(holders)}, meant for {sorted(users)}"


def test_every_redis_client_uses_the_password_and_redis_never_evicts():
    services = compose_services()
    redis = services["redis"]
    command = " ".join(redis["command"])
    assert f"--requirepass {REQUIRED['REDIS_PASSWORD']}" in command
    assert "--maxmemory-policy noeviction" in command and "--maxmemory 256mb" in command
    assert redis["environment"]["REDISCLI_AUTH"] == REQUIRED["REDIS_PASSWORD"], "the healthcheck authenticates"
    for name, service in services.items():
        url = (service.get("environment") or {}).get("REDIS_URL")
        if url is not None:
            assert url == f"redis://:{REQUIRED['REDIS_PASSWORD']}@redis:6379/0", name


def test_the_app_connects_as_its_own_role_which_owns_the_database():
    services = compose_services()
    for name, service in services.items():
        url = (service.get("environment") or {}).get("DATABASE_URL")
        if url is not None:
            assert url.startswith("postgresql://messaging:"), f"{name} connects as {url.split('@')[0]}"
    role = services["postgres-role"]
    assert role["environment"]["PGUSER"] == "postgres" and role["environment"]["APP_ROLE"] == "messaging"
    assert services["migrate"]["depends_on"]["postgres-role"]["condition"] == "service_completed_successfully"
    script = (ROOT / "deploy" / "postgres-role.sql").read_text()
    assert "NOSUPERUSER" in script and "ALTER DATABASE" in script


def test_rabbitmq_comes_with_its_own_user_and_no_guest():
    broker = {"RABBITMQ_DEFAULT_USER": "sms", "RABBITMQ_DEFAULT_PASS": "rabbit-secret"}
    assert "set RABBITMQ_DEFAULT_PASS" in compose_config(RABBITMQ_FILE, RABBITMQ_DEFAULT_USER="sms", **REQUIRED).stderr
    assert "set RABBITMQ_DEFAULT_USER" in compose_config(RABBITMQ_FILE, RABBITMQ_DEFAULT_PASS="p", **REQUIRED).stderr
    services = compose_services(RABBITMQ_FILE, **broker)
    assert services["rabbitmq"]["environment"] == broker
    for name in ("api", "worker", "beat", "flower"):
        assert services[name]["environment"]["CELERY_BROKER_URL"] == "amqp://sms:rabbit-secret@rabbitmq:5672//"
    assert "guest" not in yaml.safe_dump(services)
    assert "rabbitmq" not in compose_services(), "RabbitMQ only when its file is named"


def test_the_image_installs_the_hashed_lock_file_which_make_keeps_current():
    lock = (ROOT / "requirements.lock").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", lock, flags=re.MULTILINE)
    blocks = re.split(r"\n(?=[A-Za-z])", lock.split("\n", 2)[2])
    assert pins and all("--hash=sha256:" in block for block in blocks if "==" in block), "every pin has hashes"
    locked = {name.lower(): version for name, version in pins}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^]]*\])?==(\S+)", line)
        if match:
            assert locked.get(match[1].lower()) == match[3], f"{match[1]} in requirements.txt is not locked as pinned"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r /tmp/requirements.lock" in dockerfile
    assert "requirements.txt" not in dockerfile_copies()
    assert re.search(
        r"^requirements\.lock: requirements\.txt",
        (ROOT / "Makefile").read_text(),
        flags=re.MULTILINE,
    )


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


def test_the_receipts_and_callbacks_flags_reach_every_process_that_writes_or_schedules_for_them():
    services = compose_services(DELIVERY_RECEIPTS="on", STATUS_CALLBACKS="on")
    for name in ("api", "worker", "beat"):
        environment = services[name]["environment"]
        assert (environment["DELIVERY_RECEIPTS"], environment["STATUS_CALLBACKS"]) == ("on", "on"), name
    assert compose_services()["worker"]["environment"]["STATUS_CALLBACKS"] == "off"
