"""The alerting rules in deploy/alerts.yml: valid for Prometheus, each one checked to fire and to stay
silent by promtool's own unit tests (tests/unit/alerts_test.yml), and each naming a runbook that exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.test_docs import anchors

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "alerts.yml"
PROMTOOL_TESTS = Path(__file__).with_name("alerts_test.yml")
RUNBOOK = re.compile(r"^(docs/[\w-]+\.md)#([\w-]+)$")

requires_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


@requires_promtool
def test_promtool_finds_the_rules_valid():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


@requires_promtool
def test_each_alert_fires_on_the_series_it_is_for_and_not_on_the_others():
    tested = promtool("test", "rules", str(PROMTOOL_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_case_where_promtool_expects_it_to_fire():
    cases = yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]
    firing = {check["alertname"] for case in cases for check in case["alert_rule_test"] if check.get("exp_alerts")}
    assert {rule["alert"] for rule in alerts()} == firing


def test_every_alert_names_a_runbook_section_that_exists():
    assert alerts()
    for rule in alerts():
        annotations = rule["annotations"]
        assert annotations.get("summary") and annotations.get("description"), rule["alert"]
        found = RUNBOOK.match(annotations.get("runbook", ""))
        assert found, f"{rule['alert']}: runbook must be docs/<page>.md#<section>"
        page, section = found.groups()
        assert section in anchors(ROOT / page), f"{rule['alert']}: {page} has no section #{section}"
