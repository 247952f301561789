"""Secrets stay secret where an operator looks: `celery inspect conf` (which Flower shows too)."""

from __future__ import annotations

import subprocess

import pytest
import redis

from harness.stack import BIN, Stack, environment, free_port
from localrun import redis_server
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

SECRETS = {
    "redis": "redis-pass-7f3a9c",
    "database": "database-pass-2b8e61",
    "webhook_url": "webhook-pass-c41d07",
    "auth_key": "auth-key-9e0f52",
    "signing": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3",
}


@pytest.fixture
def redis_with_password(tmp_path):
    """A Redis of this test's own that requires a password, as compose's does."""
    port = free_port()
    server = subprocess.Popen(
        [redis_server.binary(), "--port", str(port), "--bind", "127.0.0.1", "--requirepass", SECRETS["redis"],
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://:{SECRETS['redis']}@127.0.0.1:{port}/0"
    try:
        wait_for(lambda: _answers(url), what="the password-protected redis")
        yield url
    finally:
        server.terminate()
        server.wait(10)


def _answers(url: str) -> bool:
    try:
        return redis.Redis.from_url(url, socket_timeout=1).ping()
    except redis.ConnectionError:
        return False


def test_celery_inspect_conf_against_a_running_worker_prints_no_secret(database_url, redis_with_password, receiver, tmp_path):
    env = environment(
        DATABASE_URL=database_url.replace("postgres@", f"postgres:{SECRETS['database']}@"),  # trust auth ignores it
        REDIS_URL=redis_with_password,
        WEBHOOK_URL=receiver.url.replace("http://", f"http://provider:{SECRETS['webhook_url']}@"),
        WEBHOOK_AUTH_KEY=SECRETS["auth_key"],
        WEBHOOK_SIGNING_SECRET=SECRETS["signing"],
        AUTO_START="false",
    )
    stack = Stack(env, tmp_path)
    stack.worker("conf-check")
    try:
        def answered() -> str | None:
            result = subprocess.run(
                [str(BIN / "celery"), "-A", "worker", "inspect", "conf", "--timeout", "2"],
                env=env, capture_output=True, text=True, timeout=60,
            )
            shown = result.stdout + result.stderr
            return shown if "worker_concurrency" in shown else None

        shown = wait_for(answered, timeout=60, what="the worker's conf")
        assert "conf-check@" in shown and "messaging_settings" not in shown
        leaked = [name for name, value in SECRETS.items() if value in shown]
        assert leaked == [], shown
    finally:
        stack.stop()
