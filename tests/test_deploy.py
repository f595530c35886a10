"""Checks that the deployment examples in deploy/ parse and agree with what the daemon serves."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from monitor.config import SECTIONS, MetricsConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS_K8S = DEPLOY / "prometheus" / "prometheus.yml"
PROMETHEUS_LOCAL = DEPLOY / "prometheus" / "prometheus-local.yml"
DEFAULT_METRICS_PORT = 9108


def k8s_objects() -> list[dict]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                objects.append(doc)
    return objects


def k8s_object(kind: str, name: str | None = None) -> dict:
    found = [o for o in k8s_objects() if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/kubernetes, found {len(found)}"
    return found[0]


def pod_spec() -> dict:
    return k8s_object("Deployment")["spec"]["template"]["spec"]


def nlpmon_container() -> dict:
    (container,) = [c for c in pod_spec()["containers"] if c["name"] == "nlpmon"]
    return container


def nlpmon_toml() -> dict:
    config_map = k8s_object("ConfigMap", "nlpmon-config")
    return tomllib.loads(config_map["data"]["nlpmon.toml"])


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def probe_port(probe: dict, container: dict) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return number


# -- manifests ----------------------------------------------------------------------------------------------


def test_manifests_parse():
    objects = k8s_objects()
    assert {o["kind"] for o in objects} >= {"Deployment", "ConfigMap", "Secret"}
    for o in objects:
        assert o.get("apiVersion"), o
        if o["kind"] != "Kustomization":
            assert o["metadata"].get("name"), o


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_the_pod_runs_nlpmon_beside_a_serving_container():
    names = [c["name"] for c in pod_spec()["containers"]]
    assert "nlpmon" in names and len(names) >= 2


def test_probes_use_healthz_and_readyz_on_the_metrics_port():
    container = nlpmon_container()
    metrics_port = nlpmon_toml()["metrics"]["port"]
    assert metrics_port == DEFAULT_METRICS_PORT == MetricsConfig().port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        if kind in container:
            assert probe_port(container[kind], container) == metrics_port, kind


def test_config_comes_from_the_config_map_at_the_path_the_image_reads():
    container = nlpmon_container()
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if "configMap" in volumes[m["name"]]]
    assert volumes[mount["name"]]["configMap"]["name"] == "nlpmon-config"
    items = volumes[mount["name"]]["configMap"].get("items")
    file_name = items[0]["path"] if items else "nlpmon.toml"
    mounted_at = f"{mount['mountPath'].rstrip('/')}/{file_name}"
    entrypoint = json.loads(dict(dockerfile_instructions())["ENTRYPOINT"])
    assert entrypoint[entrypoint.index("--config") + 1] == mounted_at


def test_secrets_come_from_the_secret_through_the_environment():
    secret = k8s_object("Secret")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    env = nlpmon_container()["env"]
    refs = [e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in e.get("valueFrom", {})]
    assert any(r["key"] == "kafka-sasl-password" for r in refs), "the Kafka SASL password must come from the Secret"
    for ref in refs:
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in keys
    assert "password" not in k8s_object("ConfigMap", "nlpmon-config")["data"]["nlpmon.toml"].split("#")[0].lower()


def test_every_container_has_resource_limits():
    for container in pod_spec()["containers"]:
        limits = container.get("resources", {}).get("limits", {})
        assert {"cpu", "memory"} <= set(limits), container["name"]


def test_nlpmon_runs_as_non_root():
    security = nlpmon_container()["securityContext"]
    assert pod_spec()["securityContext"]["runAsNonRoot"] is True
    assert security["runAsUser"] != 0 and security["allowPrivilegeEscalation"] is False


def test_config_map_is_accepted_by_the_loader(tmp_path):
    if "kafka" not in SECTIONS:
        pytest.skip("monitor.config has no [kafka] section yet (issue 3); the example configures Kafka")
    path = tmp_path / "nlpmon.toml"
    path.write_text(k8s_object("ConfigMap", "nlpmon-config")["data"]["nlpmon.toml"], encoding="utf-8")
    config = load_config(path, env={"NLPMON_KAFKA_SASL_PASSWORD": "x", "NLPMON_STORE_URL": "sqlite://"})
    assert config.metrics.port == DEFAULT_METRICS_PORT


# -- Dockerfile ---------------------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_nlpmon_image():
    instructions = dockerfile_instructions()
    froms = [args for op, args in instructions if op == "FROM"]
    assert froms and all(f.split()[0] == "python:3.11-slim" for f in froms)
    assert any(op == "RUN" and re.search(r"pip install \S*\.", args) for op, args in instructions)
    user = [args for op, args in instructions if op == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    entrypoint = json.loads(dict(instructions)["ENTRYPOINT"])
    assert entrypoint[:2] == ["nlpmon", "run"]
    assert f"EXPOSE {DEFAULT_METRICS_PORT}" in {f"{op} {args}" for op, args in instructions}


def test_dockerfile_copies_what_the_package_build_needs():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    copied = " ".join(args for op, args in dockerfile_instructions() if op == "COPY")
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert f"{package}/" in copied, f"package {package} is not copied into the build stage"
    assert pyproject["project"]["readme"] in copied


# -- Prometheus scrape configuration ------------------------------------------------------------------------


def test_kubernetes_scrape_job_targets_the_metrics_port():
    config = yaml.safe_load(PROMETHEUS_K8S.read_text(encoding="utf-8"))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "nlpmon"]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    (rule,) = [r for r in keep if "__meta_kubernetes_pod_container_port_number" in r["source_labels"]]
    values = dict(zip(rule["source_labels"], rule["regex"].split(";")))
    assert values["__meta_kubernetes_pod_container_port_number"] == str(nlpmon_toml()["metrics"]["port"])
    assert values["__meta_kubernetes_pod_container_name"] == nlpmon_container()["name"]
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_local_scrape_job_targets_the_default_port_and_loads_the_rules():
    config = yaml.safe_load(PROMETHEUS_LOCAL.read_text(encoding="utf-8"))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "nlpmon"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets and all(t.rsplit(":", 1)[1] == str(DEFAULT_METRICS_PORT) for t in targets)
    globs = [(PROMETHEUS_LOCAL.parent / g).resolve() for g in config["rule_files"]]
    assert any((ROOT / "alerts" / "nlpmon.rules.yml") in g.parent.glob(g.name) for g in globs)


@pytest.mark.integration
def test_promtool_accepts_the_local_prometheus_config():
    # Debian's promtool is built without Kubernetes service discovery, so only the local config is checked
    # here; prometheus.yml is checked structurally above.
    helpers = _alert_helpers()
    result = helpers.run(helpers.tool("promtool"), "check", "config", str(PROMETHEUS_LOCAL))
    assert result.returncode == 0, result.stdout + result.stderr


def _alert_helpers():
    spec = importlib.util.spec_from_file_location("_nlpmon_alert_helpers", Path(__file__).with_name("test_alerts.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
