"""Dashboards (generated JSON), the local scrape config and consumer-group roles, without a stack.

promtool's checks of the alert rules and scrape configs are in
tests/contract/test_monitoring_programs.py.
"""

import importlib.util
import json
import sys

from mimamori.core.config import SOURCE_ROOT, load_settings
from mimamori.stack.monitoring import RULES_DIR, scrape_config

GRAFANA_DIR = SOURCE_ROOT / "docker" / "grafana"


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


def test_replay_groups_are_told_apart_from_live_groups():
    from mimamori.exporter import group_role
    from mimamori.streams.replay import replay_group

    settings = load_settings("local")
    assert group_role(settings.kafka.consumer_group) == "live"
    assert group_role(replay_group(settings, 1_000, 2_000)) == "replay"
