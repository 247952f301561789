"""Static checks of the container files: docker-compose.yml, Dockerfile, .dockerignore.

No Docker engine is needed. When the `docker-compose` binary (v1, which validates
offline) is on PATH, the file is also validated with `docker-compose config -q`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

APP_IMAGE = "messaging:latest"
EXPECTED_SERVICES = {
    "postgres", "redis", "migrate", "api", "worker", "beat", "flower", "receiver", "rabbitmq",
}
LONG_RUNNING = {"postgres", "redis", "api", "worker", "beat", "flower", "receiver"}
PYTHON_SERVICES = ("api", "worker", "beat", "migrate", "flower")

# SPEC section 2 variables and the defaults they get inside compose.
SPEC_ENV_DEFAULTS = {
    "DATABASE_URL": "postgresql://postgres:postgres@postgres:5432/messaging",
    "REDIS_URL": "redis://redis:6379/0",
    "CELERY_BROKER_URL": "",  # empty = unset: the broker follows REDIS_URL
    "WEBHOOK_URL": "http://receiver:9000/webhook",
    "WEBHOOK_AUTH_KEY": "",
    "WEBHOOK_TIMEOUT_SECONDS": "10",
    "SEND_INTERVAL_SECONDS": "120",
    "SEND_BATCH_SIZE": "2",
    "AUTO_START": "true",
    "MAX_ATTEMPTS": "5",
    "RETRY_BASE_SECONDS": "10",
    "RETRY_MAX_SECONDS": "600",
    "CLAIM_TIMEOUT_SECONDS": "300",
    "CACHE_TTL_SECONDS": "86400",
    "API_TOKEN": "",
    "LOG_LEVEL": "INFO",
}

_INTERPOLATION = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+)(?::?-(?P<default>[^}]*))?\}$")


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _env(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        env = {key: value for key, value in pairs}
    return {key: ("" if value is None else str(value)) for key, value in env.items()}


def _depends_on(service: dict) -> dict:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def _seconds(duration: str) -> float:
    """Parse a compose duration such as '30s', '1m30s', '90'."""
    text = str(duration).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {duration!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    return sum(float(n) * scale[u] for n, u in parts)


def _command_text(service: dict) -> str:
    command = service.get("command") or ""
    return " ".join(command) if isinstance(command, list) else str(command)


def _healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


# ---------------------------------------------------------------- compose


def test_all_services_present(services):
    assert EXPECTED_SERVICES <= set(services), EXPECTED_SERVICES - set(services)


@pytest.mark.parametrize("name", ["postgres", "redis", "api", "worker", "beat"])
def test_core_services_have_healthchecks(services, name):
    healthcheck = services[name].get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable"), f"{name} healthcheck is disabled"
    assert healthcheck.get("test"), f"{name} healthcheck has no test"


def test_app_services_override_image_healthcheck(services):
    # The image's HEALTHCHECK probes the API on :8080; every other role built
    # from it must replace or disable it, or it would be reported unhealthy.
    for name, service in services.items():
        if service.get("image") == APP_IMAGE:
            assert "healthcheck" in service, f"{name} inherits the API healthcheck"


def test_healthcheck_commands(services):
    assert "pg_isready" in _healthcheck_text(services["postgres"])
    assert "redis-cli" in _healthcheck_text(services["redis"])
    assert "/health" in _healthcheck_text(services["api"])
    worker_check = _healthcheck_text(services["worker"])
    assert "inspect ping" in worker_check
    assert "celery@$$HOSTNAME" in worker_check  # $$ survives compose interpolation
    assert "worker.health beat" in _healthcheck_text(services["beat"])
    assert "rabbitmq-diagnostics -q ping" in _healthcheck_text(services["rabbitmq"])


def test_redis_appendonly(services):
    command = _command_text(services["redis"])
    assert re.search(r"--appendonly\s+yes", command), command
    assert services["redis"].get("volumes"), "redis data must be on a volume"


def test_postgres_has_password_and_volume(services):
    postgres = services["postgres"]
    assert "POSTGRES_PASSWORD" in _env(postgres)
    assert postgres.get("volumes"), "postgres data must be on a volume"


def test_migrate_waits_for_healthy_postgres(services):
    assert _depends_on(services["migrate"])["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", ["api", "worker", "beat"])
def test_app_waits_for_migrate_and_redis(services, name):
    deps = _depends_on(services[name])
    assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert deps["redis"]["condition"] == "service_healthy"


def test_migrate_is_one_shot(services):
    migrate = services["migrate"]
    assert "python -m messaging migrate" in _command_text(migrate)
    assert str(migrate.get("restart", "no")) in {"no", "False", "false"}


@pytest.mark.parametrize("name", PYTHON_SERVICES)
def test_spec_variables_reach_python_services(services, name):
    env = _env(services[name])
    missing = set(SPEC_ENV_DEFAULTS) - set(env)
    assert not missing, f"{name} lacks {sorted(missing)}"
    for key, expected_default in SPEC_ENV_DEFAULTS.items():
        match = _INTERPOLATION.match(env[key])
        assert match and match["name"] == key, f"{name}.{key} = {env[key]!r} is not ${{{key}:-...}}"
        assert (match["default"] or "") == expected_default, f"{name}.{key} default"


def test_compose_defaults_pass_settings_validation():
    # What a container receives when nothing is overridden must start cleanly.
    from messaging.settings import Settings

    settings = Settings.from_env(dict(SPEC_ENV_DEFAULTS))
    assert settings.broker_url == SPEC_ENV_DEFAULTS["REDIS_URL"]
    assert settings.webhook_auth_key == "" and settings.api_token == ""


def test_environment_written_once(compose):
    text = COMPOSE_FILE.read_text()
    keys = re.findall(r"^\s*SEND_BATCH_SIZE\s*:", text, flags=re.MULTILINE)
    assert len(keys) == 1, "the variable list should be written once (YAML anchor)"
    assert any(key.startswith("x-") for key in compose), "no x- extension field"


def test_commands(services):
    assert _command_text(services["api"]).startswith("gunicorn -c gunicorn.conf.py")
    assert "api:create_app()" in _command_text(services["api"])
    assert _env(services["api"]).get("GUNICORN_BIND") == "0.0.0.0:8080"
    assert _command_text(services["worker"]).startswith("celery -A worker worker")
    assert _command_text(services["beat"]).startswith("celery -A worker beat")
    assert _command_text(services["flower"]).startswith("celery -A worker flower")
    assert _command_text(services["receiver"]) == "python -m receiver"


def test_worker_pool_lives_in_celery_config(services):
    tokens = _command_text(services["worker"]).split()
    for flag in ("-P", "--pool", "-c", "--concurrency"):
        assert not any(t == flag or t.startswith(flag + "=") for t in tokens), flag


@pytest.mark.parametrize("name", ["worker", "beat"])
def test_celery_log_level_follows_LOG_LEVEL(services, name):
    assert "--loglevel=${LOG_LEVEL:-INFO}" in _command_text(services[name])


def test_worker_healthcheck_pings_the_workers_own_node_name(services):
    # The healthcheck asks for celery@$HOSTNAME: Celery's default node name, so the
    # command must not rename the node.
    tokens = _command_text(services["worker"]).split()
    assert not any(t in ("-n", "--hostname") or t.startswith("--hostname=") for t in tokens)


def test_exactly_one_beat(services):
    beat = services["beat"]
    assert (beat.get("deploy") or {}).get("replicas", 1) == 1
    for name, service in services.items():
        if name != "beat":
            assert " beat" not in _command_text(service), f"{name} also runs beat"
            assert "--beat" not in _command_text(service) and " -B" not in _command_text(service), name


def test_worker_is_scalable(services):
    worker = services["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports"), "fixed host ports prevent --scale worker=N"


def test_app_services_share_one_image(services):
    for name in ("migrate", "api", "worker", "beat", "flower", "receiver"):
        assert services[name].get("image") == APP_IMAGE, name
        assert services[name].get("build") in (".", {"context": "."}), name


@pytest.mark.parametrize("name", ["worker", "beat"])
def test_celery_processes_run_under_init(services, name):
    assert services[name].get("init") is True


def test_stop_grace_periods(services):
    webhook_timeout = float(SPEC_ENV_DEFAULTS["WEBHOOK_TIMEOUT_SECONDS"])
    assert _seconds(services["worker"]["stop_grace_period"]) >= 30
    assert _seconds(services["api"]["stop_grace_period"]) > webhook_timeout


def test_restart_policy_for_long_running(services):
    for name in LONG_RUNNING | {"rabbitmq"}:
        assert services[name].get("restart") == "unless-stopped", name


def test_flower_basic_auth(services):
    flower = services["flower"]
    env = _env(flower)
    assert "FLOWER_BASIC_AUTH" in env
    assert env["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH"), "must be overridable"
    assert any("5555" in str(port) for port in flower.get("ports", []))


def test_receiver(services):
    env = _env(services["receiver"])
    assert env.get("RECEIVER_HOST") == "0.0.0.0"
    assert env.get("RECEIVER_PORT") == "9000"


def test_rabbitmq_behind_profile(services):
    rabbitmq = services["rabbitmq"]
    assert rabbitmq.get("profiles") == ["rabbitmq"]
    assert rabbitmq["image"].startswith("rabbitmq:3-management")
    # Nothing started by default may depend on a profile-only service.
    for name, service in services.items():
        if not service.get("profiles"):
            assert "rabbitmq" not in _depends_on(service), name


def test_docker_compose_config_validates():
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose (v1) binary not on PATH; install Debian's docker-compose to validate offline")
    result = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr or result.stdout


# ---------------------------------------------------------------- Dockerfile


@pytest.fixture(scope="module")
def dockerfile_lines() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _instructions(lines: list[str], name: str) -> list[tuple[int, str]]:
    return [(i, line) for i, line in enumerate(lines) if line.split()[0].upper() == name]


def test_dockerfile_multi_stage(dockerfile_lines):
    froms = _instructions(dockerfile_lines, "FROM")
    assert len(froms) >= 2, "expected a builder stage and a runtime stage"
    assert "python:3.11-slim" in froms[-1][1]


def test_dockerfile_non_root_user(dockerfile_lines):
    users = _instructions(dockerfile_lines, "USER")
    assert users, "no USER instruction"
    final_user = users[-1][1].split()[1]
    assert final_user.split(":")[0] not in {"root", "0"}


def test_dockerfile_healthcheck_and_defaults(dockerfile_lines):
    healthchecks = _instructions(dockerfile_lines, "HEALTHCHECK")
    assert healthchecks and "/health" in healthchecks[-1][1]
    text = "\n".join(dockerfile_lines)
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    assert "PYTHONUNBUFFERED=1" in text
    assert _instructions(dockerfile_lines, "EXPOSE")[-1][1].split()[1] == "8080"
    assert _instructions(dockerfile_lines, "STOPSIGNAL")[-1][1].split()[1] == "SIGTERM"
    assert "gunicorn" in _instructions(dockerfile_lines, "CMD")[-1][1]


def test_dockerfile_requirements_copied_before_source(dockerfile_lines):
    copies = _instructions(dockerfile_lines, "COPY")
    requirements = [i for i, line in copies if "requirements.txt" in line]
    source = [i for i, line in copies if re.search(r"\b(messaging|worker|api)/?\b", line) and "--from" not in line]
    assert requirements, "requirements.txt is never copied"
    assert source, "application packages are never copied"
    assert min(requirements) < min(source)
    installs = [i for i, line in _instructions(dockerfile_lines, "RUN") if "pip install" in line]
    assert installs and min(requirements) < min(installs) < min(source)


def test_dockerfile_copies_only_the_app(dockerfile_lines):
    for _, line in _instructions(dockerfile_lines, "COPY"):
        assert not re.search(r"COPY\s+(--\S+\s+)*\.\s", line), f"copies the whole context: {line}"


def _copied_sources(dockerfile_lines) -> set[str]:
    copied = set()
    for _, line in _instructions(dockerfile_lines, "COPY"):
        if "--from" in line:
            continue
        args = [a for a in line.split()[1:] if not a.startswith("--")]
        copied |= {source.rstrip("/") for source in args[:-1]}
    return copied


def test_dockerfile_copies_everything_the_processes_need(dockerfile_lines):
    copied = _copied_sources(dockerfile_lines)
    # api, worker, beat, flower, migrate (+ its SQL), the demo receiver, gunicorn's settings.
    for needed in ("requirements.txt", "gunicorn.conf.py", "sql", "messaging", "worker", "api", "receiver"):
        assert needed in copied, f"the image lacks {needed}"
        assert (ROOT / needed).exists(), needed


def test_dockerignore_keeps_what_the_dockerfile_copies(dockerfile_lines):
    from fnmatch import fnmatch

    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    for source in _copied_sources(dockerfile_lines):
        assert not any(fnmatch(source, pattern.rstrip("/")) for pattern in patterns), f".dockerignore drops {source}"


def test_dockerignore():
    entries = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    for required in (".venv", ".git", "tests"):
        assert required in entries, required
    assert any("__pycache__" in entry for entry in entries)
