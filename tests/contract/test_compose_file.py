"""docker/compose.yaml, parsed and checked (the docker CLI here has no compose plugin to do it)."""

import re

import yaml

from mimamori.core.config import SOURCE_ROOT, load_settings

DOCKER = SOURCE_ROOT / "docker"


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_every_service_has_a_pinned_image_a_health_check_and_declared_volumes():
    document = compose()
    declared = set(document["volumes"])
    for name, service in document["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
        health = service.get("healthcheck", {})
        assert health.get("test") or (name == "init" and health.get("disable")), f"{name} has no health check"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_start_order_waits_on_health_and_names_real_services():
    services = compose()["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency == "init" else "service_healthy"
            assert condition["condition"] == expected, f"{name} -> {dependency}"


def test_secrets_come_from_files_and_env_vars_that_git_ignores():
    document = compose()
    gitignore = (SOURCE_ROOT / ".gitignore").read_text()
    assert "docker/.env" in gitignore and "docker/secrets/*" in gitignore
    for secret in document["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    text = (DOCKER / "compose.yaml").read_text()
    for variable in re.findall(r"\$\{(\w+)", text):
        assert f"{variable}=" in (DOCKER / ".env.example").read_text(), f"{variable} missing from .env.example"
    for key, value in re.findall(r"(\w*(?:PASSWORD|SECRET\w*)):\s*(\S+)", text):
        assert value.startswith("${"), f"{key} holds a literal value"


def test_published_ports_are_bound_to_loopback():
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_prometheus_and_grafana_get_the_projects_rules_and_dashboards():
    services = compose()["services"]
    assert "./prometheus/rules:/etc/prometheus/rules:ro" in services["prometheus"]["volumes"]
    assert any(v.startswith("./grafana/dashboards:") for v in services["grafana"]["volumes"])
    scrape = yaml.safe_load((DOCKER / "prometheus" / "prometheus.compose.yml").read_text())
    assert {job["job_name"] for job in scrape["scrape_configs"]} >= {"mimamori-pipeline", "mimamori-api",
                                                                    "mimamori-exporter", "milvus"}


def test_the_compose_settings_load_over_the_production_profile():
    settings = load_settings("production", DOCKER / "mimamori.compose.yaml")
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.runner.environment_type == "EXTERNAL" and settings.runner.job_endpoint == "job-server:8099"
    assert settings.milvus.index.index_type == "DISKANN"
