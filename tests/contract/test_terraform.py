"""infra/terraform and infra/helm, checked as far as this machine allows.

``terraform validate`` needs the AWS, Helm and Kubernetes providers, which come from a registry
this machine cannot reach. So every ``.tf`` file is parsed with python-hcl2 and the modules are
checked against each other: every variable declared is used and every one used is declared, every
module call passes exactly the inputs its module declares (all the required ones), every module
output referenced exists, every provider is pinned, every template file exists. ``terraform fmt``
needs no provider and runs when a terraform binary is on the PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest
import yaml

from mimamori.core.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "infra" / "terraform"
CHART = ROOT / "infra" / "helm" / "mimamori"
MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf")


def _modules() -> list[Path]:
    return [TERRAFORM, *sorted(p for p in (TERRAFORM / "modules").iterdir() if p.is_dir())]


def _plain(value):
    """python-hcl2's tree without its markers (``__is_block__``, comments) and quotes."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _parse(module: Path) -> dict[str, list]:
    """All blocks of a module's ``.tf`` files, merged by block type."""
    merged: dict[str, list] = {}
    for path in sorted(module.glob("*.tf")):
        with path.open() as handle:
            for kind, blocks in _plain(hcl2.load(handle)).items():
                merged.setdefault(kind, []).extend(blocks)
    return merged


def _source(module: Path) -> str:
    """The module's code without comments, for reference scanning."""
    text = "\n".join(p.read_text() for p in sorted(module.glob("*.tf")))
    return re.sub(r"(?m)^\s*#.*$|\s+#\s.*$", "", text)


def _names(blocks: list[dict]) -> set[str]:
    return {name for block in blocks for name in block}


def _unquote(name: str) -> str:
    return name.strip('"')


@pytest.mark.parametrize("module", _modules(), ids=lambda p: p.name)
def test_every_module_has_its_files_and_pins_its_providers(module: Path):
    for name in MODULE_FILES:
        assert (module / name).is_file(), f"{module.name}: {name} is missing"
    blocks = _parse(module)
    (terraform,) = blocks["terraform"]
    assert terraform["required_version"].startswith(">= 1.")
    providers = {name: spec for block in terraform["required_providers"] for name, spec in block.items()}
    assert providers, f"{module.name}: no required_providers"
    for name, spec in providers.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", spec["version"]), f"{module.name}: pin {name} exactly"
        assert spec["source"].startswith("hashicorp/")


def test_modules_pin_the_same_provider_versions():
    versions: dict[str, set[str]] = {}
    for module in _modules():
        (terraform,) = _parse(module)["terraform"]
        for block in terraform["required_providers"]:
            for name, spec in block.items():
                versions.setdefault(name, set()).add(spec["version"])
    assert all(len(found) == 1 for found in versions.values()), versions


@pytest.mark.parametrize("module", _modules(), ids=lambda p: p.name)
def test_variables_are_declared_described_and_used(module: Path):
    blocks = _parse(module)
    declared = {_unquote(n) for n in _names(blocks.get("variable", []))}
    used = set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_]*)", _source(module)))
    assert used - declared == set(), f"{module.name}: used but not declared"
    assert declared - used == set(), f"{module.name}: declared but never used"
    for block in blocks.get("variable", []):
        for name, spec in block.items():
            assert spec.get("description"), f"{module.name}: variable {name} has no description"
            assert "type" in spec, f"{module.name}: variable {name} has no type"
    for block in blocks.get("output", []):
        for name, spec in block.items():
            assert spec.get("description"), f"{module.name}: output {name} has no description"


@pytest.mark.parametrize("caller", _modules(), ids=lambda p: p.name)
def test_module_calls_match_the_modules_they_call(caller: Path):
    calls = {_unquote(name): spec for block in _parse(caller).get("module", []) for name, spec in block.items()}
    outputs_of: dict[str, set[str]] = {}
    meta = {"source", "for_each", "count", "depends_on", "providers"}
    for call, spec in calls.items():
        module = (caller / spec["source"]).resolve()
        assert module.is_dir(), f"module {call}: {spec['source']} does not exist"
        blocks = _parse(module)
        variables = {_unquote(name): var for block in blocks.get("variable", []) for name, var in block.items()}
        required = {name for name, var in variables.items() if "default" not in var}
        given = set(spec) - meta
        assert given - set(variables) == set(), f"module {call}: passes inputs it does not declare"
        assert required - given == set(), f"module {call}: required inputs missing"
        outputs_of[call] = {_unquote(n) for n in _names(blocks.get("output", []))}
    for call, output in re.findall(r"\bmodule\.([a-z_]+)(?:\[[^\]]+\])?\.([a-z_]+)", _source(caller)):
        assert call in calls, f"module.{call} is not called"
        assert output in outputs_of[call], f"module.{call}.{output} is not an output of {calls[call]['source']}"


def test_template_files_exist_and_every_template_variable_is_passed():
    source = _source(TERRAFORM / "modules" / "workloads")
    calls = re.findall(r'templatefile\("\$\{path\.module\}/([^"]+)",\s*\{(.*?)\}\)', source, flags=re.S)
    assert len(calls) == 5
    for template, arguments in calls:
        path = TERRAFORM / "modules" / "workloads" / template
        assert path.is_file(), template
        passed = set(re.findall(r"^\s*([a-z_]+)\s*=", arguments, flags=re.M))
        # The names an expression starts from: identifiers that are not function calls or attributes.
        needed = {name for expression in re.findall(r"\$\{([^}]+)\}", path.read_text())
                  for name in re.findall(r"(?<![.\w])([a-z_][a-z0-9_]*)\b(?!\s*\()", expression)}
        assert needed <= passed, f"{template}: not passed {needed - passed}"


def test_nothing_secret_is_committed():
    pattern = re.compile(r"(AKIA[0-9A-Z]{16}|aws_secret_access_key|password\s*=\s*\"[^\"]+\"|BEGIN [A-Z ]*PRIVATE KEY)")
    for path in [*TERRAFORM.rglob("*"), *CHART.rglob("*")]:
        if path.is_file():
            assert not pattern.search(path.read_text()), f"{path}: looks like a secret"
    example = _plain(hcl2.loads((TERRAFORM / "terraform.tfvars.example").read_text()))
    declared = {_unquote(n) for n in _names(_parse(TERRAFORM)["variable"])}
    assert set(example) <= declared, set(example) - declared


def _render(template: Path, values: dict[str, object]) -> str:
    """Terraform's ``templatefile`` for the plain ``${name}`` / ``${name.key}`` references used here."""
    def value(match: re.Match) -> str:
        head, *rest = match.group(1).split(".")
        found = values[head]
        for key in rest:
            found = found[key]  # type: ignore[index]
        return str(found)

    return re.sub(r"\$\{([a-z_.]+)\}", value, template.read_text())


def _chart_values() -> str:
    """The chart's values as Terraform renders them, with example account values."""
    return _render(TERRAFORM / "modules" / "workloads" / "values" / "mimamori.yaml.tftpl", {
        "region": "eu-central-1",
        "images": {kind: f"123456789012.dkr.ecr.eu-central-1.amazonaws.com/mimamori-prod/{kind}:0.1.0"
                   for kind in ("cpu", "api", "gpu")},
        "role_arns": {name: f"arn:aws:iam::123456789012:role/mimamori-prod-{name}"
                      for name in ("pipeline", "api", "exporter", "init", "flink")},
        "buckets": {kind: f"example-mimamori-prod-{kind}"
                    for kind in ("media", "crops", "references", "milvus", "flink")},
        "kafka_bootstrap": "b-1.example.kafka.eu-central-1.amazonaws.com:9098",
        "milvus_uri": "http://milvus.milvus.svc.cluster.local:19530",
        "milvus_health_url": "http://milvus.milvus.svc.cluster.local:9091/healthz",
        "task_managers": 2,
    })


def test_the_chart_values_from_terraform_load_as_mimamori_settings(tmp_path):
    """The settings that Terraform hands the chart are valid settings of the production profile."""
    values = yaml.safe_load(_chart_values())
    chart_defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(chart_defaults), "values the chart does not know"
    config = tmp_path / "mimamori.yaml"
    config.write_text(yaml.safe_dump(values["config"]))
    settings = load_settings("production", config)
    assert settings.kafka.client_options()["sasl_mechanism"] == "AWS_MSK_IAM"
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.minio.credentials_provider == "aws_iam"
    assert settings.milvus.index.index_type == "DISKANN"
    assert all(bucket.expire_days is None for bucket in settings.minio.buckets.all())


def test_chart_templates_refer_only_to_values_that_exist():
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for template in (CHART / "templates").iterdir():
        for path in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", template.read_text()):
            node = defaults
            for key in path.split("."):
                assert isinstance(node, dict) and key in node, f"{template.name}: .Values.{path} is not in values.yaml"
                node = node[key]


def test_service_accounts_in_the_chart_are_the_ones_iam_trusts():
    accounts = set(yaml.safe_load((CHART / "values.yaml").read_text())["serviceAccounts"])
    trusted = set(re.findall(r'"mimamori/mimamori-([a-z]+)"', (TERRAFORM / "iam.tf").read_text()))
    assert trusted == accounts


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary here")
def test_terraform_fmt(tmp_path):
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(tmp_path / "none.tfrc"), "CHECKPOINT_DISABLE": "1"}
    (tmp_path / "none.tfrc").write_text("")
    result = subprocess.run(["terraform", "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


HELM = os.environ.get("MIMAMORI_HELM") or shutil.which("helm")


@pytest.mark.skipif(HELM is None, reason="no helm binary here (set MIMAMORI_HELM to one)")
def test_the_chart_lints_and_renders(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(_chart_values())
    lint = subprocess.run([HELM, "lint", str(CHART), "-f", str(values)], capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = subprocess.run([HELM, "template", "mimamori", str(CHART), "-f", str(values)],
                              capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(rendered.stdout) if doc)
    assert kinds.count("Deployment") == 5 and "FlinkDeployment" in kinds and "NetworkPolicy" in kinds
