"""Checks that the deployment examples in deploy/ parse, build, validate and agree with what the daemon serves.

Building the kustomizations needs `kubectl` (`kubectl kustomize`, offline; Debian: kubernetes-client, installed
by .ci/system-deps.sh): without it those tests skip, except under CI=true, where they fail."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from monitor.config import SECTIONS, MetricsConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes" / "base"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS_K8S = DEPLOY / "prometheus" / "prometheus.yml"
PROMETHEUS_LOCAL = DEPLOY / "prometheus" / "prometheus-local.yml"
DEFAULT_METRICS_PORT = 9108


MONITORING = DEPLOY / "kubernetes" / "overlays" / "monitoring"
GPU = DEPLOY / "kubernetes" / "overlays" / "gpu"
DOCKERFILE_GPU = DEPLOY / "Dockerfile.gpu"
KUSTOMIZATIONS = sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))
CRD_SCHEMAS = Path(__file__).resolve().parent / "fixtures" / "crds"
# The Kubernetes minor version the manifests are validated against (kubernetes-validate ships its schemas).
KUBERNETES_VERSION = "1.31"


def k8s_objects(directory: Path = K8S) -> list[dict]:
    objects = []
    for path in sorted(directory.glob("*.yaml")):
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


def dockerfile_instructions(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
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


def test_the_pod_mounts_no_service_account_token():
    assert pod_spec()["automountServiceAccountToken"] is False


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_the_pod_runs_nlpmon_beside_a_serving_container():
    names = [c["name"] for c in pod_spec()["containers"]]
    assert "nlpmon" in names and len(names) >= 2


def strict_readiness_probe() -> dict:
    """The stricter mode's readinessProbe, carried as a comment in deployment.yaml, uncommented and parsed."""
    text = (K8S / "deployment.yaml").read_text(encoding="utf-8")
    block = re.search(r"^( *)# readinessProbe:\n((?:\1#   .*\n)+)", text, flags=re.M)
    assert block, "deployment.yaml should show the stricter mode's readinessProbe in a comment"
    indent = block.group(1)
    lines = [line[len(indent) + 2:] for line in block.group(0).splitlines()]
    return yaml.safe_load("\n".join(lines))["readinessProbe"]


def test_probes_use_healthz_and_readyz_on_the_metrics_port():
    container = nlpmon_container()
    metrics_port = nlpmon_toml()["metrics"]["port"]
    assert metrics_port == DEFAULT_METRICS_PORT == MetricsConfig().port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # By default nlpmon does not gate the serving container: no readinessProbe (a pod is Ready only when all
    # its containers are). The stricter mode is documented next to it.
    assert "readinessProbe" not in container
    container = {**container, "readinessProbe": strict_readiness_probe()}
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
    command = json.loads(dict(dockerfile_instructions())["CMD"])
    assert command[command.index("--config") + 1] == mounted_at


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
    # ENTRYPOINT the program, CMD its default arguments: `docker run IMG reference build ...` runs that command.
    assert json.loads(dict(instructions)["ENTRYPOINT"]) == ["nlpmon"]
    assert json.loads(dict(instructions)["CMD"])[0] == "run"
    assert f"EXPOSE {DEFAULT_METRICS_PORT}" in {f"{op} {args}" for op, args in instructions}


def healthcheck_url(env: dict[str, str]) -> str:
    """The URL the image's HEALTHCHECK opens in a container with ``env``: its Python, run with urlopen stubbed."""
    (args,) = [a for op, a in dockerfile_instructions() if op == "HEALTHCHECK"]
    command = json.loads(args[args.index(" CMD ") + len(" CMD "):])
    assert command[:2] == ["python", "-c"]
    opened = []
    import urllib.request

    real_environ = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(urllib.request, "urlopen", lambda url, timeout: opened.append(url))
            exec(command[2], {})
    finally:
        os.environ.clear()
        os.environ.update(real_environ)
    (url,) = opened
    return url


def test_healthcheck_port_follows_the_metrics_port_variable(tmp_path):
    assert healthcheck_url({}) == f"http://127.0.0.1:{DEFAULT_METRICS_PORT}/healthz"
    assert healthcheck_url({"NLPMON_METRICS_PORT": "9200"}) == "http://127.0.0.1:9200/healthz"
    # ... the variable the config loader reads for [metrics] port, so probe and daemon agree.
    (tmp_path / "c.toml").write_text('[source]\npath = "events.jsonl"\n', encoding="utf-8")
    assert load_config(tmp_path / "c.toml", env={"NLPMON_METRICS_PORT": "9200"}).metrics.port == 9200
    # The image must not set it: it would override the port of a mounted config file.
    assert not any(op == "ENV" and "NLPMON_METRICS_PORT" in a for op, a in dockerfile_instructions())


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


# -- schema validation ---------------------------------------------------------------------------------------
def _kubernetes_validate():
    try:
        import kubernetes_validate
    except ImportError:  # pragma: no cover - part of the test extras
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and kubernetes-validate is not installed (pip install -e '.[test]')")
        pytest.skip("kubernetes-validate is not installed (pip install -e '.[test]')")
    return kubernetes_validate


def _core_objects() -> list[dict]:
    return [o for o in k8s_objects() if o["kind"] != "Kustomization"]


@pytest.mark.parametrize("obj", _core_objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_manifests_match_the_kubernetes_schemas(obj):
    kv = _kubernetes_validate()
    # Strict: unknown fields (a typo such as `enableServiceLink`) are errors too.
    assert kv.validate(obj, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION


def test_the_strict_readiness_probe_matches_the_schema():
    kv = _kubernetes_validate()
    deployment = copy.deepcopy(k8s_object("Deployment"))
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "nlpmon"]
    container["readinessProbe"] = strict_readiness_probe()
    kv.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(("path", "value"), [
    (("spec", "template", "spec", "enableServiceLink"), False),  # a misspelt field
    (("spec", "replicas"), "two"),  # a wrong type
])  # fmt: skip
def test_the_schema_check_catches_mistakes(path, value):
    kv = _kubernetes_validate()
    broken = copy.deepcopy(k8s_object("Deployment"))
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, KUBERNETES_VERSION, strict=True)


def test_service_links_are_off():
    assert pod_spec()["enableServiceLinks"] is False


def test_scrape_annotations_name_the_metrics_port_and_path():
    annotations = k8s_object("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(nlpmon_toml()["metrics"]["port"])
    assert annotations["prometheus.io/path"] == "/metrics"
    ports = {p["containerPort"] for p in nlpmon_container()["ports"]}
    assert int(annotations["prometheus.io/port"]) in ports


def crd_schema(kind: str) -> dict:
    """The vendored openAPIV3Schema of a prometheus-operator CRD (tests/fixtures/crds/, source and version in
    each file), every object that lists its properties closed, as `kubectl apply --validate=strict` is."""
    schema = yaml.safe_load((CRD_SCHEMAS / f"monitoring.coreos.com_{kind.lower()}s.schema.yaml").read_text(encoding="utf-8"))

    def close(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    schema = copy.deepcopy(schema)
    close(schema)
    return schema


CRD_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}


def validate_crd_object(obj: dict) -> None:
    """Validate ``obj`` against its CRD's schema; jsonschema.ValidationError if it does not match."""
    import jsonschema

    assert obj["apiVersion"] == "monitoring.coreos.com/v1", obj["apiVersion"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"]), obj["metadata"]
    jsonschema.Draft202012Validator(crd_schema(obj["kind"])).validate(obj)


def podmonitor() -> dict:
    (found,) = [o for o in k8s_objects(MONITORING) if o["kind"] == "PodMonitor"]
    return found


def test_podmonitor_matches_its_schema_and_scrapes_the_nlpmon_port():
    import jsonschema

    monitor = podmonitor()
    validate_crd_object(monitor)
    with pytest.raises(jsonschema.ValidationError):  # closed: a typo fails
        validate_crd_object({**monitor, "spec": {**monitor["spec"], "podMetricEndpoints": []}})
    with pytest.raises(jsonschema.ValidationError):  # ... in a nested object too
        endpoint = {**monitor["spec"]["podMetricsEndpoints"][0], "scrapeTimout": "10s"}
        validate_crd_object({**monitor, "spec": {**monitor["spec"], "podMetricsEndpoints": [endpoint]}})
    pod_labels = k8s_object("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (port,) = [p for p in nlpmon_container()["ports"] if p["name"] == endpoint["port"]]
    assert port["containerPort"] == nlpmon_toml()["metrics"]["port"]
    assert endpoint.get("path", "/metrics") == "/metrics"
    for container in pod_spec()["containers"]:  # the port name must pick the nlpmon container only
        if container["name"] != "nlpmon":
            assert endpoint["port"] not in {p.get("name") for p in container.get("ports", [])}


def test_monitoring_overlay_adds_its_objects_to_the_base():
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text(encoding="utf-8"))
    manifests = {p.name for p in MONITORING.glob("*.yaml")} - {"kustomization.yaml"}
    assert kustomization["bases"] == ["../../base"]  # under `bases:`, which Debian's kubectl 1.20 also reads
    assert set(kustomization["resources"]) == manifests


# -- every kustomization builds, and what it builds validates -----------------------------------------------


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        message = "kubectl is not installed (Debian: apt-get install -y kubernetes-client; or bash .ci/system-deps.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {message}: the manifests must be built in CI")
        pytest.skip(message)
    return path


def kustomize_build(directory: Path) -> list[dict]:
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {directory.relative_to(ROOT)}: {result.stderr}"
    return [o for o in yaml.safe_load_all(result.stdout) if o is not None]


def test_the_kustomizations_are_found():
    assert {p.relative_to(DEPLOY).as_posix() for p in KUSTOMIZATIONS} == {
        "kubernetes/base", "kubernetes/overlays/monitoring", "kubernetes/overlays/gpu",
        "kubernetes/overlays/db-admin", "kubernetes/report"}


@pytest.mark.integration
def test_the_gpu_overlay_runs_nlpmon_on_one_gpu_with_provider_cuda(tmp_path):
    built = {(o["kind"], o["metadata"]["name"]): o for o in kustomize_build(GPU)}
    base = {(o["kind"], o["metadata"]["name"]): o for o in kustomize_build(K8S)}
    assert built.keys() == base.keys()
    pod = built[("Deployment", "sentiment")]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    nlpmon = containers["nlpmon"]
    assert nlpmon["image"] == "registry.example.com/nlpmon:0.1.0-gpu"
    assert nlpmon["resources"]["limits"] == {**nlpmon_container()["resources"]["limits"], "nvidia.com/gpu": 1}
    assert "nvidia.com/gpu" not in containers["serving"]["resources"].get("limits", {})
    # The variables override the config map's file: both encoder and re-evaluation on CUDA.
    env = {e["name"]: e["value"] for e in nlpmon["env"] if "value" in e}
    (tmp_path / "c.toml").write_text(built[("ConfigMap", "nlpmon-config")]["data"]["nlpmon.toml"], encoding="utf-8")
    config = load_config(tmp_path / "c.toml", env=env)
    assert (config.embedding.provider, config.reeval.provider) == ("cuda", "cuda")
    # Everything else is the base's: the probes, the security context, the mounts.
    for key in ("livenessProbe", "startupProbe", "securityContext", "volumeMounts", "ports"):
        assert nlpmon[key] == {c["name"]: c for c in base[("Deployment", "sentiment")]["spec"]["template"]["spec"][
            "containers"]}["nlpmon"][key]


def test_the_gpu_image_swaps_onnxruntime_for_onnxruntime_gpu():
    gpu = dockerfile_instructions(DOCKERFILE_GPU)
    runs = [args for op, args in gpu if op == "RUN"]
    (swap,) = [r for r in runs if "onnxruntime-gpu" in r or "ONNXRUNTIME_GPU" in r]
    # CPU build out first, GPU build in, then proof that the CUDA provider is built in.
    assert swap.index("pip uninstall -y onnxruntime") < swap.index("pip install") < swap.index("CUDAExecutionProvider")
    assert runs.index(swap) > next(i for i, r in enumerate(runs) if re.search(r"pip install \S*\.", r))
    # Otherwise the image behaves as deploy/Dockerfile's: same user, ports, probe, entrypoint and command.
    for op in ("USER", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD", "WORKDIR"):
        assert [a for o, a in gpu if o == op][-1] == [a for o, a in dockerfile_instructions() if o == op][-1], op
    copied = {a for o, a in gpu if o == "COPY" and not a.startswith("--from")}
    assert copied == {a for o, a in dockerfile_instructions() if o == "COPY" and not a.startswith("--from")}


@pytest.mark.integration
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_kustomization_builds_and_validates(directory):
    kv = _kubernetes_validate()
    objects = kustomize_build(directory)
    assert objects, "the build is empty"
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), f"duplicate objects: {names}"
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            validate_crd_object(obj)
        else:
            # Strict: unknown fields are errors; a kind without a schema raises too (nothing passes unchecked).
            assert kv.validate(obj, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION


@pytest.mark.integration
def test_the_monitoring_overlay_is_the_base_plus_the_operator_objects():
    base = kustomize_build(K8S)
    overlay = kustomize_build(MONITORING)
    extra = [o for o in overlay if o not in base]
    assert all(o in overlay for o in base), "the overlay changes an object of the base"
    assert sorted(o["kind"] for o in extra) == sorted(
        yaml.safe_load(p.read_text(encoding="utf-8"))["kind"] for p in MONITORING.glob("*.yaml")
        if p.name != "kustomization.yaml")


# -- kube-prometheus objects: generated from the plain files, and equal to them --------------------------------

RULES_FILE = ROOT / "alerts" / "nlpmon.rules.yml"
DASHBOARD_FILE = ROOT / "grafana" / "dashboards" / "nlpmon.json"
REGENERATE = "regenerate with `make generated` (alerts/render.py --format prometheusrule, grafana/configmap.py)"


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"_nlpmon_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def overlay_object(kind: str) -> dict:
    (found,) = [o for o in k8s_objects(MONITORING) if o["kind"] == kind and o["metadata"]["name"] != "nlpmon-config"]
    return found


def test_generated_manifests_are_up_to_date():
    render = _load_script(ROOT / "alerts" / "render.py")
    configmap = _load_script(ROOT / "grafana" / "configmap.py")
    rule = render.prometheus_rule(render.render(render.SOURCE.read_text(encoding="utf-8")))
    assert render.PROMETHEUS_RULE_OUTPUT.read_text(encoding="utf-8") == rule, f"prometheusrule.yaml is stale: {REGENERATE}"
    dashboard = configmap.dashboard_configmap(DASHBOARD_FILE.read_text(encoding="utf-8"))
    assert configmap.OUTPUT.read_text(encoding="utf-8") == dashboard, f"grafana-dashboard.yaml is stale: {REGENERATE}"
    assert {render.PROMETHEUS_RULE_OUTPUT.parent, configmap.OUTPUT.parent} == {MONITORING}


def test_prometheus_rule_carries_the_rules_file():
    rule = overlay_object("PrometheusRule")
    validate_crd_object(rule)
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))


def test_dashboard_config_map_carries_the_dashboard_for_the_grafana_sidecar():
    config_map = overlay_object("ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"  # a string: label values are strings
    (text,) = config_map["data"].values()
    assert text == DASHBOARD_FILE.read_text(encoding="utf-8")  # byte for byte, not only the same JSON
    assert json.loads(text)["uid"] == "nlpmon-overview"


def test_the_podmonitor_gives_the_job_the_rules_select():
    render = _load_script(ROOT / "alerts" / "render.py")
    ((name, op, job),) = [m for m in render.parse_selector(render.DEFAULT_SELECTOR) if m[0] == "job"]
    relabel = [r for r in podmonitor()["spec"]["podMetricsEndpoints"][0]["relabelings"] if r.get("targetLabel") == "job"]
    assert op == "=" and [r.get("replacement") for r in relabel] == [job]


def test_prometheus_rule_options():
    render = _load_script(ROOT / "alerts" / "render.py")
    rules = render.render(render.SOURCE.read_text(encoding="utf-8"), severities={"NlpInputDrift": "warning"})
    obj = yaml.safe_load(render.prometheus_rule(rules, name="ml-nlpmon", labels={"release": "kube-prometheus-stack", "x": "1"}))
    assert obj["metadata"] == {"name": "ml-nlpmon", "labels": {
        "app.kubernetes.io/name": "nlpmon", "release": "kube-prometheus-stack", "x": "1"}}
    assert obj["spec"] == yaml.safe_load(rules)
    validate_crd_object(obj)
    with pytest.raises(ValueError, match="DNS label"):
        render.prometheus_rule(rules, name="NLPmon")
    with pytest.raises(ValueError, match="label key"):
        render.prometheus_rule(rules, labels={"bad key": "x"})


def test_dashboard_config_map_refuses_what_it_cannot_carry():
    configmap = _load_script(ROOT / "grafana" / "configmap.py")
    with pytest.raises(ValueError):
        configmap.dashboard_configmap("{not json")
    with pytest.raises(ValueError, match="trailing whitespace"):
        configmap.dashboard_configmap('{"a": 1} \n')
    assert yaml.safe_load(configmap.dashboard_configmap('{"a":\n  1}'))["data"]["nlpmon.json"] == '{"a":\n  1}'


@pytest.mark.integration
def test_the_built_overlay_carries_the_plain_files():
    built = {(o["kind"], o["metadata"]["name"]): o for o in kustomize_build(MONITORING)}
    assert built[("PrometheusRule", "nlpmon")]["spec"] == yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    assert built[("ConfigMap", "nlpmon-dashboard")]["data"]["nlpmon.json"] == DASHBOARD_FILE.read_text(encoding="utf-8")


# -- user-facing files name no internal work items ------------------------------------------------------------


def test_user_facing_files_name_no_internal_work_items():
    paths = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *DEPLOY.rglob("*"), *(ROOT / "alerts").rglob("*"),
             *(ROOT / "grafana").rglob("*")]
    found = []
    for path in paths:
        if path.is_file() and path.suffix in {".md", ".yaml", ".yml", ".json", ".py", ".sh", ""}:
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"\b(issues? \d+|phase \d+ of)", line, flags=re.I):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "internal work items in user-facing files:\n" + "\n".join(found)
