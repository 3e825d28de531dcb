"""Alert rules and scrape configs checked by promtool, and the discovery files of dead processes.

promtool comes from Debian's prometheus package (``apt-get download`` once, then cached).
The dashboards and the generated scrape config are checked without it in
tests/unit/test_monitoring_files.py.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mimamori.core.config import SOURCE_ROOT, load_settings
from mimamori.core.scrape_targets import forget_dead_targets
from mimamori.stack.monitoring import RULES_DIR, prometheus_binaries, scrape_config

PROMETHEUS_DIR = SOURCE_ROOT / "docker" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> Path:
    return prometheus_binaries(load_settings("local")) / "promtool"


def _rules() -> Iterator[dict]:
    for path in RULES_DIR.glob("*.rules.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def test_promtool_checks_the_alert_rules(promtool):
    for rules in sorted(RULES_DIR.glob("*.rules.yml")):
        result = subprocess.run([str(promtool), "check", "rules", str(rules)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alert_rules_pass(promtool):
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
    assert tests
    result = subprocess.run([str(promtool), "test", "rules", *map(str, tests)], capture_output=True, text=True,
                            cwd=PROMETHEUS_DIR / "tests")
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {rule["alert"] for rule in _rules()}
    tested = " ".join(path.read_text() for path in tests)
    assert all(f"alertname: {alert}" in tested for alert in alerts), "every alert has a unit test"


def test_promtool_accepts_the_local_and_the_compose_scrape_configs(promtool, tmp_path):
    generated = tmp_path / "prometheus.yml"
    generated.write_text(yaml.safe_dump(scrape_config(load_settings("local"), tmp_path)))
    for config in (generated, PROMETHEUS_DIR / "prometheus.compose.yml"):
        result = subprocess.run([str(promtool), "check", "config", "--syntax-only", str(config)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_discovery_files_of_dead_processes_are_forgotten(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, pid in (("alive", os.getpid()), ("dead", dead.pid)):
        (tmp_path / f"mimamori-api-{name}.json").write_text(
            json.dumps([{"targets": ["127.0.0.1:1"], "labels": {"job": "mimamori-api", "pid": str(pid)}}]))
    forget_dead_targets(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["mimamori-api-alive.json"]
