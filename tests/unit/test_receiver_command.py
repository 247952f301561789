"""`python -m receiver` reads the service's own variables: LOG_LEVEL=WARNING leaves out a line per request."""

from __future__ import annotations

from receiver.__main__ import parse_args


def test_the_receiver_logs_at_the_services_log_level(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    assert parse_args([]).log_level == "WARNING"
    monkeypatch.delenv("LOG_LEVEL")
    assert parse_args([]).log_level == "INFO"
    assert parse_args(["--log-level", "ERROR"]).log_level == "ERROR"
