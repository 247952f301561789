from __future__ import annotations

import pytest

from api.auth import check_access
from messaging.errors import SettingsError
from messaging.sentinel_urls import sentinels
from messaging.settings import Settings

LONG_TOKEN = "0123456789abcdef0123456789abcdef"


def test_defaults_give_the_original_rule_two_messages_every_two_minutes():
    settings = Settings.from_env({})
    assert settings.send_batch_size == 2
    assert settings.send_interval_seconds == 120
    assert settings.auto_start is True
    assert settings.broker_url == settings.redis_url == "redis://127.0.0.1:6379/0"


def test_every_variable_is_read():
    env = {
        "DATABASE_URL": "postgresql://u:p@db:5432/x",
        "REDIS_URL": "redis://cache:6379/3",
        "CELERY_BROKER_URL": "amqp://guest:guest@mq:5672//",
        "WEBHOOK_URL": "https://hooks.example.test/in",
        "WEBHOOK_AUTH_KEY": "k",
        "WEBHOOK_TIMEOUT_SECONDS": "2.5",
        "SEND_INTERVAL_SECONDS": "0.5",
        "SEND_BATCH_SIZE": "50",
        "AUTO_START": "false",
        "MAX_ATTEMPTS": "3",
        "RETRY_BASE_SECONDS": "1",
        "RETRY_MAX_SECONDS": "30",
        "CLAIM_TIMEOUT_SECONDS": "60",
        "CACHE_TTL_SECONDS": "100",
        "API_TOKEN": " " + "t" * 32 + "\n",
    }
    settings = Settings.from_env(env)
    assert settings.broker_url.startswith("amqp://")
    assert settings.send_interval_seconds == 0.5
    assert settings.send_batch_size == 50
    assert settings.auto_start is False
    assert (settings.max_attempts, settings.retry_base_seconds, settings.retry_max_seconds) == (3, 1, 30)
    assert (settings.claim_timeout_seconds, settings.cache_ttl_seconds) == (60, 100)
    assert (settings.webhook_auth_key, settings.api_token) == ("k", "t" * 32)


def test_the_broker_defaults_to_the_redis_url():
    assert Settings.from_env({"REDIS_URL": "redis://other:6379/2"}).broker_url == "redis://other:6379/2"


def test_an_empty_variable_means_its_default():
    assert Settings.from_env({"SEND_BATCH_SIZE": "", "CELERY_BROKER_URL": ""}).send_batch_size == 2


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("SEND_BATCH_SIZE", "0", "between 1"),
        ("SEND_BATCH_SIZE", "abc", "whole number"),
        ("SEND_BATCH_SIZE", "2.5", "whole number"),
        ("SEND_INTERVAL_SECONDS", "-1", "between"),
        ("SEND_INTERVAL_SECONDS", "soon", "a number"),
        ("MAX_ATTEMPTS", "0", "between 1"),
        ("WEBHOOK_TIMEOUT_SECONDS", "0", "between"),
        ("CACHE_TTL_SECONDS", "-5", "between"),
        ("AUTO_START", "maybe", "true or false"),
        ("DATABASE_URL", "mysql://db/x", "scheme"),
        ("REDIS_URL", "http://cache", "scheme"),
        ("CELERY_BROKER_URL", "sqs://q", "scheme"),
        ("WEBHOOK_URL", "ftp://hooks", "scheme"),
        ("WEBHOOK_URL", "http://", "host"),
        ("LOG_LEVEL", "LOUD", "one of"),
        ("SENT_RESPONSE_FORMAT", "go", "one of standard, seed"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(variable, value, says):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert raised.value.variable == variable
    assert str(raised.value).startswith(variable)
    assert says in str(raised.value)


def test_the_sent_list_answers_in_the_standard_shape_unless_told_to_answer_as_the_go_service():
    assert Settings.from_env({}).sent_response_format == "standard"
    assert Settings.from_env({"SENT_RESPONSE_FORMAT": "seed"}).sent_response_format == "seed"
    assert Settings.from_env({"SENT_RESPONSE_FORMAT": " Seed "}).sent_response_format == "seed"
    assert Settings.from_env({"LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_a_claim_must_outlive_a_post():
    with pytest.raises(SettingsError, match="CLAIM_TIMEOUT_SECONDS"):
        Settings.from_env({"CLAIM_TIMEOUT_SECONDS": "5", "WEBHOOK_TIMEOUT_SECONDS": "10"})


def test_the_retry_cap_is_not_below_the_base():
    with pytest.raises(SettingsError, match="RETRY_MAX_SECONDS"):
        Settings.from_env({"RETRY_BASE_SECONDS": "60", "RETRY_MAX_SECONDS": "10"})


def test_a_password_never_reaches_a_repr_or_an_error():
    settings = Settings.from_env({"DATABASE_URL": "postgresql://u:hunter2@db/x", "WEBHOOK_AUTH_KEY": "sekrit"})
    assert "hunter2" not in repr(settings) and "sekrit" not in repr(settings)
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"DATABASE_URL": "mysql://u:hunter2@db/x"})
    assert "hunter2" not in str(raised.value)


def test_attempts_are_kept_30_days_unless_attempt_retention_days_says_otherwise():
    assert Settings.from_env({}).attempt_retention_days == 30
    assert Settings.from_env({"ATTEMPT_RETENTION_DAYS": "7"}).attempt_retention_days == 7
    for bad in ("0", "1.5", "forever"):
        with pytest.raises(SettingsError, match="ATTEMPT_RETENTION_DAYS"):
            Settings.from_env({"ATTEMPT_RETENTION_DAYS": bad})


SECRET = "s3cr3t-value-that-must-never-show"
SIGNING_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3"


def test_repr_masks_every_secret_and_every_password_in_a_url():
    settings = Settings.from_env(
        {
            "DATABASE_URL": f"postgresql://app:{SECRET}@db/x?sslmode=require",
            "REDIS_URL": f"redis://:{SECRET}@cache:6379/0",
            "CELERY_BROKER_URL": f"amqp://user:{SECRET}@mq:5672//",
            "WEBHOOK_URL": f"https://hook:{SECRET}@provider.test/in",
            "WEBHOOK_AUTH_KEY": SECRET,
            "WEBHOOK_SIGNING_SECRET": SIGNING_SECRET,
            "API_TOKEN": SECRET,
            "SECRET_KEY": SECRET,
        }
    )
    shown = repr(settings)
    assert SECRET not in shown and SIGNING_SECRET not in shown
    assert "provider.test" in shown and "cache:6379" in shown  # still says where things are
    assert "send_batch_size=2" in shown


def test_repr_masks_a_password_given_as_a_query_parameter():
    settings = Settings.from_env({"DATABASE_URL": f"postgresql://db/x?user=app&password={SECRET}"})
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    "value",
    ["key\n", " key", "key ", "k\rey", "k\x00ey", "k\x7fey", "kéy"],
    ids=["trailing-newline", "leading-space", "trailing-space", "carriage-return", "nul", "delete", "non-ascii"],
)
def test_a_header_value_that_cannot_be_sent_stops_the_process_naming_its_variable(value):
    with pytest.raises(SettingsError, match="^WEBHOOK_AUTH_KEY ") as raised:
        Settings.from_env({"WEBHOOK_AUTH_KEY": value})
    assert "\n" not in str(raised.value) and value.strip() not in str(raised.value)


def test_a_header_value_with_inner_spaces_and_punctuation_is_fine():
    assert Settings.from_env({"WEBHOOK_AUTH_KEY": "Bearer a.b-c_d~e+f/g=="}).webhook_auth_key == "Bearer a.b-c_d~e+f/g=="


def test_messages_are_kept_90_days_and_0_keeps_them_forever():
    assert Settings.from_env({}).message_retention_days == 90
    assert Settings.from_env({"MESSAGE_RETENTION_DAYS": "0"}).message_retention_days == 0
    assert Settings.from_env({"MESSAGE_RETENTION_DAYS": "400"}).message_retention_days == 400
    for bad in ("-1", "1.5", "forever"):
        with pytest.raises(SettingsError, match="MESSAGE_RETENTION_DAYS"):
            Settings.from_env({"MESSAGE_RETENTION_DAYS": bad})


def test_api_token_is_stripped_and_refused_below_32_characters():
    assert Settings.from_env({"API_TOKEN": f" {LONG_TOKEN}\n"}).api_token == LONG_TOKEN
    assert Settings.from_env({"API_TOKEN": " \n"}).api_token == ""
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"API_TOKEN": LONG_TOKEN[:31]})
    assert raised.value.variable == "API_TOKEN" and "32" in str(raised.value)
    assert LONG_TOKEN[:31] not in str(raised.value)


@pytest.mark.parametrize("control", ["\x00", "\r\n", "\t", "\x7f", "\u2028"])
def test_api_token_with_a_control_character_is_refused(control):
    with pytest.raises(SettingsError, match="^API_TOKEN .*control"):
        Settings.from_env({"API_TOKEN": LONG_TOKEN[:16] + control + LONG_TOKEN[16:]})


def test_api_auth_is_auto_unless_said_and_nothing_else():
    assert Settings.from_env({}).api_auth == "auto"
    assert Settings.from_env({"API_AUTH": " Token "}).api_auth == "token"
    with pytest.raises(SettingsError, match="^API_AUTH "):
        Settings.from_env({"API_AUTH": "none"})


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        ({}, None),
        ({"API_TOKEN": LONG_TOKEN}, None),
        ({"API_AUTH": "token", "API_TOKEN": LONG_TOKEN}, None),
        ({"API_AUTH": "off"}, None),
        ({"API_AUTH": "token"}, "API_TOKEN"),
        ({"API_AUTH": "off", "API_TOKEN": LONG_TOKEN}, "API_AUTH"),
    ],
)
def test_the_api_starts_only_when_api_auth_and_api_token_agree(env, refused):
    settings = Settings.from_env(env)  # a worker reads the same settings whatever they say of the API
    if refused is None:
        check_access(settings)
        return
    with pytest.raises(SettingsError) as raised:
        check_access(settings)
    assert raised.value.variable == refused
    assert "\n" not in str(raised.value)
    if refused == "API_TOKEN":
        assert "API_AUTH=off" in str(raised.value)


@pytest.mark.parametrize(
    ("env", "allowed"),
    [
        ({}, {"127.0.0.1", "localhost", "[::1]"}),
        ({"GUNICORN_BIND": "0.0.0.0:8080"}, {"127.0.0.1", "localhost", "[::1]", "0.0.0.0"}),
        ({"GUNICORN_BIND": "[::]:8080"}, {"127.0.0.1", "localhost", "[::1]", "[::]"}),
        ({"GUNICORN_BIND": "10.1.2.3:80"}, {"127.0.0.1", "localhost", "[::1]", "10.1.2.3"}),
        ({"GUNICORN_BIND": "unix:/run/api.sock"}, {"127.0.0.1", "localhost", "[::1]"}),
        (
            {"ALLOWED_HOSTS": "SMS.example.com:443, api.example.com.  [2001:db8::1]:8080"},
            {"127.0.0.1", "localhost", "[::1]", "sms.example.com", "api.example.com", "[2001:db8::1]"},
        ),
        ({"ALLOWED_HOSTS": "*"}, {"127.0.0.1", "localhost", "[::1]", "*"}),
    ],
)
def test_allowed_hosts_are_the_loopback_names_the_bind_host_and_what_allowed_hosts_adds(env, allowed):
    assert set(Settings.from_env(env).allowed_hosts) == allowed


@pytest.mark.parametrize("bad", ["http://sms.example.com", "sms.example.com/x", "*.example.com", "exa mple;x"])
def test_a_host_that_is_no_host_name_is_refused(bad):
    with pytest.raises(SettingsError, match="^ALLOWED_HOSTS "):
        Settings.from_env({"ALLOWED_HOSTS": bad})



def test_secret_key_is_read_stripped_and_empty_by_default():
    assert Settings.from_env({}).secret_key == ""
    assert Settings.from_env({"SECRET_KEY": " k3y\n"}).secret_key == "k3y"


def test_redis_and_the_broker_may_name_sentinels_in_kombus_form():
    url = "sentinel://s1:26379/2;sentinel://s2:26380/2;sentinel://s3/2"
    settings = Settings.from_env({"REDIS_URL": url, "REDIS_SENTINEL_MASTER": "cache", "REDIS_SENTINEL_PASSWORD": SECRET})
    assert settings.broker_url == settings.redis_url == url
    assert settings.redis_sentinel_master == "cache"
    named = sentinels(url)
    assert named.addresses == (("s1", 26379), ("s2", 26380), ("s3", 26379))
    assert named.db == 2
    assert Settings.from_env({"REDIS_URL": url}).redis_sentinel_master == "mymaster"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sentinel://s1:26379/0;redis://s2:6379/0", "sentinel:// URLs separated by semicolons"),
        ("sentinel://s1:port/0", "numeric port and db"),
        ("sentinel://s1:26379/0;sentinel://s2:26379/1", "the same db and credentials"),
        ("sentinel:///0", "must name a host"),
    ],
)
def test_a_sentinel_url_that_kombu_would_misread_is_refused(url, says):
    with pytest.raises(SettingsError, match=says):
        Settings.from_env({"CELERY_BROKER_URL": url})


def test_repr_masks_the_password_of_every_sentinel_url_and_the_sentinels_own():
    url = f"sentinel://:{SECRET}@s1:26379/0;sentinel://:{SECRET}@s2:26379/0"
    shown = repr(Settings.from_env({"REDIS_URL": url, "REDIS_SENTINEL_PASSWORD": SECRET}))
    assert SECRET not in shown and "s2:26379" in shown


def test_receipts_are_off_until_receipt_signing_secret_is_set_and_it_is_checked_like_webhook_signing_secret():
    settings = Settings.from_env({})
    assert settings.receipt_signing_secrets == () and not settings.receipts_enabled
    assert (settings.receipt_timeout_seconds, settings.receipt_orphan_seconds) == (259200, 300)
    on = Settings.from_env({"RECEIPT_SIGNING_SECRET": SIGNING_SECRET, "RECEIPT_TIMEOUT_SECONDS": "60"})
    assert on.receipt_signing_secrets == (SIGNING_SECRET,) and on.receipts_enabled
    assert on.receipt_timeout_seconds == 60
    assert SIGNING_SECRET not in repr(on)
    with pytest.raises(SettingsError, match="^RECEIPT_SIGNING_SECRET ") as raised:
        Settings.from_env({"RECEIPT_SIGNING_SECRET": "whsec_short"})
    assert "short" not in str(raised.value)
    for name, bad in (("RECEIPT_TIMEOUT_SECONDS", "0"), ("RECEIPT_ORPHAN_SECONDS", "-1"), ("RECEIPT_ORPHAN_SECONDS", "x")):
        with pytest.raises(SettingsError, match=f"^{name} "):
            Settings.from_env({name: bad})


def test_delivery_receipts_is_a_flag_of_its_own_that_defaults_to_whether_the_secret_is_set():
    assert not Settings.from_env({}).receipts_enabled
    assert Settings.from_env({"RECEIPT_SIGNING_SECRET": SIGNING_SECRET}).receipts_enabled
    # Workers and beat hold no secret: the flag alone turns receipts on for them.
    worker = Settings.from_env({"DELIVERY_RECEIPTS": "on"})
    assert worker.receipts_enabled and worker.receipt_signing_secrets == ()
    assert not Settings.from_env({"RECEIPT_SIGNING_SECRET": SIGNING_SECRET, "DELIVERY_RECEIPTS": "off"}).receipts_enabled
    with pytest.raises(SettingsError, match="^DELIVERY_RECEIPTS "):
        Settings.from_env({"DELIVERY_RECEIPTS": "maybe"})


def test_status_callbacks_are_off_until_a_url_is_set_and_their_secret_and_url_are_checked_and_masked():
    off = Settings.from_env({})
    assert not off.status_callbacks and off.status_callback_url == ""
    assert (off.status_callback_max_attempts, off.status_callback_timeout_seconds) == (10, 5.0)
    on = Settings.from_env({
        "STATUS_CALLBACK_URL": "https://client:hunter2@client.example/sms-events",
        "STATUS_CALLBACK_SIGNING_SECRET": SIGNING_SECRET,
        "STATUS_CALLBACK_MAX_ATTEMPTS": "3",
    })
    assert on.status_callbacks and on.status_callback_signing_secrets == (SIGNING_SECRET,)
    assert on.status_callback_max_attempts == 3
    assert SIGNING_SECRET not in repr(on) and "hunter2" not in repr(on)
    # The API and beat write or schedule events without the URL (it may carry a password).
    assert Settings.from_env({"STATUS_CALLBACKS": "on"}).status_callbacks
    with pytest.raises(SettingsError, match="^STATUS_CALLBACK_SIGNING_SECRET ") as raised:
        Settings.from_env({"STATUS_CALLBACK_SIGNING_SECRET": "whsec_short"})
    assert "short" not in str(raised.value)
    for name, bad in (("STATUS_CALLBACK_URL", "ftp://x"), ("STATUS_CALLBACK_URL", "http://"),
                      ("STATUS_CALLBACK_MAX_ATTEMPTS", "0"), ("STATUS_CALLBACK_TIMEOUT_SECONDS", "x")):  # fmt: skip
        with pytest.raises(SettingsError, match=f"^{name} "):
            Settings.from_env({name: bad})
