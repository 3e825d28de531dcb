"""Alert rules (promtool) and dashboards (generated JSON), without a running stack."""

import importlib.util
import json
import subprocess
import sys

import pytest

from mimamori.core.config import SOURCE_ROOT, load_settings
from mimamori.stack.monitoring import RULES_DIR, prometheus_binaries, scrape_config

PROMETHEUS_DIR = SOURCE_ROOT / "docker" / "prometheus"
GRAFANA_DIR = SOURCE_ROOT / "docker" / "grafana"


@pytest.fixture(scope="module")
def promtool():
    return prometheus_binaries(load_settings("local")) / "promtool"


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


def _rules():
    import yaml

    for path in RULES_DIR.glob("*.rules.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def load_dashboards():
    """docker/grafana/dashboards.py (not a package: Grafana's folder holds it)."""
    spec = importlib.util.spec_from_file_location("grafana_dashboards", GRAFANA_DIR / "dashboards.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_committed_dashboards_are_what_the_generator_makes(tmp_path):
    module = load_dashboards()
    for dashboard in module.DASHBOARDS:
        committed = json.loads((GRAFANA_DIR / "dashboards" / f"{dashboard.uid}.json").read_text())
        assert committed == module.to_grafana(dashboard), f"run docker/grafana/dashboards.py ({dashboard.uid})"
    provisioned = {p.stem for p in (GRAFANA_DIR / "dashboards").glob("*.json")}
    assert provisioned == {d.uid for d in module.DASHBOARDS}


def test_the_local_scrape_config_covers_workers_api_exporter_and_milvus(tmp_path):
    config = scrape_config(load_settings("local"), tmp_path)
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"mimamori-pipeline", "mimamori-api", "mimamori-exporter", "milvus"} <= jobs
    assert config["rule_files"] == [str(RULES_DIR / "*.rules.yml")]


def test_promtool_accepts_the_local_and_the_compose_scrape_configs(promtool, tmp_path):
    import yaml

    generated = tmp_path / "prometheus.yml"
    generated.write_text(yaml.safe_dump(scrape_config(load_settings("local"), tmp_path)))
    for config in (generated, PROMETHEUS_DIR / "prometheus.compose.yml"):
        result = subprocess.run([str(promtool), "check", "config", "--syntax-only", str(config)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_replay_groups_are_told_apart_from_live_groups():
    from mimamori.streams.replay import replay_group

    from mimamori.exporter import group_role

    settings = load_settings("local")
    assert group_role(settings.kafka.consumer_group) == "live"
    assert group_role(replay_group(settings, 1_000, 2_000)) == "replay"


def test_discovery_files_of_dead_processes_are_forgotten(tmp_path):
    import os

    from mimamori.core.scrape_targets import forget_dead_targets

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, pid in (("alive", os.getpid()), ("dead", dead.pid)):
        (tmp_path / f"mimamori-api-{name}.json").write_text(
            json.dumps([{"targets": ["127.0.0.1:1"], "labels": {"job": "mimamori-api", "pid": str(pid)}}]))
    forget_dead_targets(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["mimamori-api-alive.json"]
