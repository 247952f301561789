"""The folders of messaging/ say what a module may touch: each import below runs in a fresh
interpreter, and what it loaded shows which drivers and packages came with it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

DRIVERS = {"redis": "Redis", "psycopg": "PostgreSQL", "psycopg_pool": "PostgreSQL", "urllib3": "the provider",
           "celery": "Celery", "kombu": "the broker", "flask": "the API"}  # fmt: skip


def loaded_by(module: str) -> set[str]:
    """The top-level packages of this project and the drivers that importing `module` loads."""
    script = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules} | "
        "{'.'.join(name.split('.')[:2]) for name in sys.modules if name.startswith('messaging.')})))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(result.stdout))


@pytest.mark.parametrize(
    ("module", "may_touch"),
    [
        ("messaging.domain.message", set()),
        ("messaging.domain.content", set()),
        ("messaging.domain.public", set()),
        ("messaging.delivery.rules", set()),
        ("messaging.postgres.records", {"psycopg", "psycopg_pool"}),
        ("messaging.redis.flow", {"redis"}),
        ("messaging.redis.shared_counts", {"redis"}),
        ("messaging.provider.webhook", {"urllib3"}),
    ],
)
def test_a_module_loads_only_the_drivers_its_folder_names(module, may_touch):
    found = loaded_by(module) & DRIVERS.keys()
    assert found <= may_touch, f"{module} loads {', '.join(DRIVERS[name] for name in found - may_touch)}"


@pytest.mark.parametrize("module", ["messaging.runtime", "messaging.ops.audit", "messaging.__main__"])
def test_the_domain_imports_neither_entry_point(module):
    assert not loaded_by(module) & {"api", "worker", "celery", "flask"}


def test_the_worker_loads_neither_the_api_nor_its_web_packages():
    """The status callbacks render the message object from the domain (messaging/domain/public.py), not the API."""
    assert not loaded_by("worker.tasks") & {"api", "flask", "marshmallow", "flask_smorest"}


def test_the_api_runtime_opens_no_webhook_client_and_no_flow_control():
    from messaging.runtime import ApiRuntime, Runtime

    assert {"provider", "flow"} <= Runtime.__dataclass_fields__.keys()
    assert not {"provider", "flow"} & ApiRuntime.__dataclass_fields__.keys()
