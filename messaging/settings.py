"""Process configuration: read once from the environment, validated, then passed down."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from messaging.environment import Environment
from messaging.errors import SettingsError
from messaging.masking import MASK, without_password
from messaging.sentinel_urls import DEFAULT_SENTINEL_MASTER, SENTINEL_SCHEME

T = TypeVar("T")

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/messaging"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_WEBHOOK_URL = "http://127.0.0.1:9000/webhook"

DATABASE_SCHEMES = ("postgresql", "postgres")
REDIS_SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)
BROKER_SCHEMES = REDIS_SCHEMES + ("amqp", "amqps", "pyamqp")
WEBHOOK_SCHEMES = ("http", "https")
SIGNING_SECRET_PREFIX = "whsec_"
MIN_SIGNING_KEY_BYTES = 24  # Standard Webhooks: keys of 24 to 64 bytes
# GET /messaging/sent: our shape, or the Go service's (a bare array, its field names and errors).
SENT_RESPONSE_FORMATS = ("standard", "seed")
# API_AUTH: `auto` requires the token when API_TOKEN is set; `token` refuses to start without it; `off` without.
API_AUTH_MODES = ("auto", "token", "off")
MIN_API_TOKEN_CHARS = 32
DEFAULT_BIND = "127.0.0.1:8080"  # gunicorn.conf.py's default for GUNICORN_BIND
# Host names a page of another site can never make a browser send (no DNS answer changes them).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
ANY_HOST = "*"
HOST_NAME = r"[a-z0-9.-]+|\[[0-9a-f:.]+\]"
HOST_AND_PORT = re.compile(rf"({HOST_NAME})(:[0-9]{{1,5}})?", re.IGNORECASE)


def secret(default: Any = "") -> Any:
    """A field whose value `repr` never shows."""
    return field(default=default, metadata={"secret": True})


@dataclass(frozen=True)
class Settings:
    """Every setting of the service; build it with `Settings.from_env()`."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    broker_url: str = DEFAULT_REDIS_URL
    # With sentinel:// URLs: the name the Sentinels monitor the master under, and their own password.
    redis_sentinel_master: str = DEFAULT_SENTINEL_MASTER
    redis_sentinel_password: str = secret()
    webhook_url: str = DEFAULT_WEBHOOK_URL
    webhook_auth_key: str = secret()
    webhook_timeout_seconds: float = 10.0
    send_interval_seconds: float = 120.0
    send_batch_size: int = 2
    auto_start: bool = True
    max_attempts: int = 5
    retry_base_seconds: float = 10.0
    retry_max_seconds: float = 600.0
    claim_timeout_seconds: float = 300.0
    cache_ttl_seconds: int = 86400
    api_token: str = secret()
    api_auth: str = "auto"
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    secret_key: str = secret()  # signs the API's page cursors; empty: a random key kept in PostgreSQL
    sent_response_format: str = "standard"
    log_level: str = "INFO"
    attempt_retention_days: int = 30
    message_retention_days: int = 90  # 0: kept forever
    # Flow control toward the provider: a shared rate limit, a circuit breaker, signatures.
    rate_limit_per_second: float = 0.0  # 0: off
    rate_limit_burst: int = 1
    breaker_failure_ratio: float = 0.7
    breaker_min_calls: int = 10
    breaker_window_seconds: float = 300.0
    breaker_open_seconds: float = 30.0
    webhook_signing_secrets: tuple[str, ...] = secret(())
    # Delivery receipts from the provider: POST /messaging/receipts answers only while a secret is set.
    receipt_signing_secrets: tuple[str, ...] = secret(())
    receipt_timeout_seconds: int = 259200  # no final receipt by then after sent_at: expired (72 h, as Vonage does)
    receipt_orphan_seconds: int = 300  # a receipt whose messageId no message has yet is kept this long
    # Whether receipts are on, for the processes that hold no secret (workers record each messageId,
    # beat schedules the sweep); default: on when RECEIPT_SIGNING_SECRET is set.
    delivery_receipts: bool = False
    # Status callbacks to the client: every change of a message's state, POSTed by the workers.
    status_callbacks: bool = False  # whether events are written (default: on when STATUS_CALLBACK_URL is set)
    status_callback_url: str = ""
    status_callback_signing_secrets: tuple[str, ...] = secret(())
    status_callback_timeout_seconds: float = 5.0
    status_callback_max_attempts: int = 10

    @property
    def receipts_enabled(self) -> bool:
        """Whether the provider's delivery receipts are taken (and recorded against sent messages)."""
        return self.delivery_receipts

    def __repr__(self) -> str:
        # Secrets never reach a log line through a repr: secret fields are masked, URLs lose their passwords.
        shown = []
        for setting in fields(self):
            value = getattr(self, setting.name)
            if setting.metadata.get("secret"):
                value = MASK if value else value
            elif setting.name.endswith("_url"):
                value = without_password(value)
            shown.append(f"{setting.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; raise SettingsError naming the first bad one."""
        env = Environment(os.environ if environ is None else environ)
        redis_url = env.url("REDIS_URL", DEFAULT_REDIS_URL, REDIS_SCHEMES)
        settings = cls(
            database_url=env.url("DATABASE_URL", DEFAULT_DATABASE_URL, DATABASE_SCHEMES),
            redis_url=redis_url,
            broker_url=env.url("CELERY_BROKER_URL", redis_url, BROKER_SCHEMES),
            redis_sentinel_master=env.text("REDIS_SENTINEL_MASTER", "").strip() or DEFAULT_SENTINEL_MASTER,
            redis_sentinel_password=env.text("REDIS_SENTINEL_PASSWORD", "").strip(),
            webhook_url=env.url("WEBHOOK_URL", DEFAULT_WEBHOOK_URL, WEBHOOK_SCHEMES),
            webhook_auth_key=env.header_value("WEBHOOK_AUTH_KEY"),
            webhook_timeout_seconds=env.number("WEBHOOK_TIMEOUT_SECONDS", 10.0, float, low=0.1, high=300),
            send_interval_seconds=env.number("SEND_INTERVAL_SECONDS", 120.0, float, low=0.05, high=86400),
            send_batch_size=env.number("SEND_BATCH_SIZE", 2, int, low=1, high=100_000),
            auto_start=env.boolean("AUTO_START", True),
            max_attempts=env.number("MAX_ATTEMPTS", 5, int, low=1, high=100),
            retry_base_seconds=env.number("RETRY_BASE_SECONDS", 10.0, float, low=0, high=86400),
            retry_max_seconds=env.number("RETRY_MAX_SECONDS", 600.0, float, low=0, high=7 * 86400),
            claim_timeout_seconds=env.number("CLAIM_TIMEOUT_SECONDS", 300.0, float, low=1, high=86400),
            cache_ttl_seconds=env.number("CACHE_TTL_SECONDS", 86400, int, low=1, high=365 * 86400),
            **_api_access(env),
            sent_response_format=env.choice("SENT_RESPONSE_FORMAT", "standard", SENT_RESPONSE_FORMATS),
            log_level=env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
            attempt_retention_days=env.number("ATTEMPT_RETENTION_DAYS", 30, int, low=1, high=3650),
            message_retention_days=env.number("MESSAGE_RETENTION_DAYS", 90, int, low=0, high=36500),
            **_flow_control(env),
            **_receipts(env),
            **_status_callbacks(env),
        )
        settings.check_consistency()
        return settings

    def check_consistency(self) -> None:
        """Reject combinations that would break the delivery guarantees."""
        if self.retry_max_seconds < self.retry_base_seconds:
            raise SettingsError("RETRY_MAX_SECONDS", "must be at least RETRY_BASE_SECONDS")
        # A claim may only expire once its POST can no longer be under way,
        # otherwise a slow POST and its re-claim would both reach the webhook.
        if self.claim_timeout_seconds <= self.webhook_timeout_seconds:
            raise SettingsError("CLAIM_TIMEOUT_SECONDS", "must be greater than WEBHOOK_TIMEOUT_SECONDS")


def _flow_control(env: Environment) -> dict[str, Any]:
    """Flow control's variables: the shared rate limit, the circuit breaker and the signing secrets."""
    return dict(
        rate_limit_per_second=env.number("RATE_LIMIT_PER_SECOND", 0.0, float, low=0, high=1_000_000),
        rate_limit_burst=env.number("RATE_LIMIT_BURST", 1, int, low=1, high=1_000_000),
        breaker_failure_ratio=env.number("BREAKER_FAILURE_RATIO", 0.7, float, low=0.01, high=1),
        breaker_min_calls=env.number("BREAKER_MIN_CALLS", 10, int, low=1, high=1_000_000),
        breaker_window_seconds=env.number("BREAKER_WINDOW_SECONDS", 300.0, float, low=1, high=86400),
        breaker_open_seconds=env.number("BREAKER_OPEN_SECONDS", 30.0, float, low=0.1, high=86400),
        webhook_signing_secrets=signing_secrets(env.text("WEBHOOK_SIGNING_SECRET", "")),
    )


def _receipts(env: Environment) -> dict[str, Any]:
    """The provider's delivery receipts: the secret they are signed with, how long to wait for them."""
    return dict(
        receipt_signing_secrets=signing_secrets(env.text("RECEIPT_SIGNING_SECRET", ""), "RECEIPT_SIGNING_SECRET"),
        receipt_timeout_seconds=env.number("RECEIPT_TIMEOUT_SECONDS", 259200, int, low=1, high=365 * 86400),
        receipt_orphan_seconds=env.number("RECEIPT_ORPHAN_SECONDS", 300, int, low=1, high=7 * 86400),
        delivery_receipts=env.boolean("DELIVERY_RECEIPTS", bool(env.text("RECEIPT_SIGNING_SECRET", "").strip())),
    )


def _status_callbacks(env: Environment) -> dict[str, Any]:
    """Status callbacks: whether events are written, where and how the workers POST them."""
    url = env.url("STATUS_CALLBACK_URL", "", WEBHOOK_SCHEMES)
    return dict(
        status_callbacks=env.boolean("STATUS_CALLBACKS", bool(url)),
        status_callback_url=url,
        status_callback_signing_secrets=signing_secrets(
            env.text("STATUS_CALLBACK_SIGNING_SECRET", ""), "STATUS_CALLBACK_SIGNING_SECRET"
        ),
        status_callback_timeout_seconds=env.number("STATUS_CALLBACK_TIMEOUT_SECONDS", 5.0, float, low=0.1, high=60),
        status_callback_max_attempts=env.number("STATUS_CALLBACK_MAX_ATTEMPTS", 10, int, low=1, high=100),
    )


def _api_access(env: Environment) -> dict[str, Any]:
    """Who may call the API, from where, and the key its page cursors are signed with."""
    return dict(
        api_token=api_token(env.text("API_TOKEN", "")),
        api_auth=env.choice("API_AUTH", "auto", API_AUTH_MODES),
        allowed_hosts=allowed_hosts(env.text("ALLOWED_HOSTS", ""), env.text("GUNICORN_BIND", DEFAULT_BIND)),
        secret_key=env.text("SECRET_KEY", "").strip(),
    )


def api_token(raw: str) -> str:
    """API_TOKEN without surrounding whitespace (a secret file's newline): empty, or 32 printable characters or more."""
    token = raw.strip()
    if any(not character.isprintable() for character in token):
        raise SettingsError("API_TOKEN", "must not contain control characters (it is compared to a header)")
    if token and len(token) < MIN_API_TOKEN_CHARS:
        raise SettingsError("API_TOKEN", f"must be at least {MIN_API_TOKEN_CHARS} characters, got {len(token)}")
    return token


def allowed_hosts(raw: str, bind: str) -> tuple[str, ...]:
    """The loopback names, GUNICORN_BIND's host, and ALLOWED_HOSTS (separated by commas or spaces, any port)."""
    names = [*LOOPBACK_HOSTS, *_bind_host(bind)]
    for entry in raw.replace(",", " ").split():
        if entry != ANY_HOST and not HOST_AND_PORT.fullmatch(entry):
            raise SettingsError("ALLOWED_HOSTS", f"must be host names or * separated by commas or spaces, got {entry!r}")
        names.append(entry if entry == ANY_HOST else host_name(entry))
    return tuple(dict.fromkeys(names))


def host_name(host: str) -> str:
    """A Host header's (or an address's) name: lower case, no port, no final dot; IPv6 in brackets."""
    host = host.strip().lower()
    name = host.partition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]
    return name.removesuffix(".")


def _bind_host(bind: str) -> tuple[str, ...]:
    """The host of a gunicorn bind address (none for a Unix socket or a file descriptor).

    0.0.0.0 and [::] are taken literally, as a Host header naming them: listening on every
    address does not make every name this API's own.
    """
    return (host_name(bind),) if HOST_AND_PORT.fullmatch(bind.strip()) else ()


def signing_secrets(raw: str, variable: str = "WEBHOOK_SIGNING_SECRET") -> tuple[str, ...]:
    """`whsec_<base64>` secrets separated by spaces (several while rotating); the value never appears in an error."""
    secrets = tuple(raw.split())
    for position, secret in enumerate(secrets, start=1):
        if not _valid_signing_secret(secret):
            raise SettingsError(
                variable,
                f"secret {position} must be {SIGNING_SECRET_PREFIX} followed by the base64 of "
                f"at least {MIN_SIGNING_KEY_BYTES} bytes",
            )
    return secrets


def _valid_signing_secret(secret: str) -> bool:
    if not secret.startswith(SIGNING_SECRET_PREFIX):
        return False
    encoded = secret[len(SIGNING_SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(key) >= MIN_SIGNING_KEY_BYTES


def local_number(environ: Mapping[str, str], name: str, default: T, kind: Callable[[str], T], *, low: float, high: float) -> T:
    """A variable only `make run` reads (localrun), checked as the settings are: the service never reads it."""
    return Environment(environ).number(name, default, kind, low=low, high=high)
