"""Flow control's settings: the rate limit, the breaker and the signing secrets, read and validated at start."""

from __future__ import annotations

import base64

import pytest

from messaging.errors import SettingsError
from messaging.settings import Settings

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 24).decode().rstrip("=")


def test_flow_control_defaults_are_spec_8s():
    settings = Settings.from_env({})
    assert (settings.rate_limit_per_second, settings.rate_limit_burst) == (0, 1)
    assert (settings.breaker_failure_ratio, settings.breaker_min_calls) == (0.7, 10)
    assert (settings.breaker_window_seconds, settings.breaker_open_seconds) == (300, 30)
    assert settings.webhook_signing_secrets == ()


def test_every_flow_control_variable_is_read():
    settings = Settings.from_env(
        {
            "RATE_LIMIT_PER_SECOND": "50",
            "RATE_LIMIT_BURST": "5",
            "BREAKER_FAILURE_RATIO": "0.5",
            "BREAKER_MIN_CALLS": "20",
            "BREAKER_WINDOW_SECONDS": "60",
            "BREAKER_OPEN_SECONDS": "2.5",
            "WEBHOOK_SIGNING_SECRET": f" {SECRET}  {OTHER} ",
        }
    )
    assert (settings.rate_limit_per_second, settings.rate_limit_burst) == (50, 5)
    assert (settings.breaker_failure_ratio, settings.breaker_min_calls) == (0.5, 20)
    assert (settings.breaker_window_seconds, settings.breaker_open_seconds) == (60, 2.5)
    assert settings.webhook_signing_secrets == (SECRET, OTHER), "split on spaces, unpadded base64 accepted"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RATE_LIMIT_PER_SECOND", "-1", "between 0"),
        ("RATE_LIMIT_PER_SECOND", "fast", "a number"),
        ("RATE_LIMIT_BURST", "0", "between 1"),
        ("RATE_LIMIT_BURST", "1.5", "whole number"),
        ("BREAKER_FAILURE_RATIO", "0", "between 0.01 and 1"),
        ("BREAKER_FAILURE_RATIO", "1.5", "between 0.01 and 1"),
        ("BREAKER_MIN_CALLS", "0", "between 1"),
        ("BREAKER_WINDOW_SECONDS", "0", "between 1"),
        ("BREAKER_OPEN_SECONDS", "0", "between 0.1"),
    ],
)
def test_a_bad_flow_control_value_names_its_variable(variable, value, says):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert raised.value.variable == variable
    assert says in str(raised.value)


@pytest.mark.parametrize(
    ("value", "position"),
    [
        ("k" * 40, 1),  # no prefix
        ("whsec_", 1),  # nothing after it
        ("whsec_not base64!", 1),  # the space splits it: "whsec_not" is too short
        ("whsec_@@@@" + "A" * 40, 1),  # not base64
        ("whsec_" + base64.b64encode(b"short").decode(), 1),  # a key too short to be a secret
        (f"{SECRET} whsec_%%%", 2),  # the second of two
    ],
)
def test_a_bad_signing_secret_stops_the_process_with_one_line_that_hides_it(value, position):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"WEBHOOK_SIGNING_SECRET": value})
    message = str(raised.value)
    assert raised.value.variable == "WEBHOOK_SIGNING_SECRET"
    assert f"secret {position} must be whsec_" in message
    assert "\n" not in message
    for secret in value.split():
        key = secret.removeprefix("whsec_")
        assert len(key) < 4 or key not in message, "a secret is never echoed"


def test_the_signing_secret_never_shows_in_the_settings_repr():
    assert SECRET[6:] not in repr(Settings.from_env({"WEBHOOK_SIGNING_SECRET": SECRET}))
