"""The report server's manifests (deploy/kubernetes/report): `nlpmon report serve` read-only over the store,
ready on /healthz, behind the Service the dashboard and alert links reach; built with `kubectl kustomize` like
every kustomization (tests/test_deploy.py builds and validates each)."""

from __future__ import annotations

import pytest

from tests.test_deploy import DEPLOY, K8S, kustomize_build, nlpmon_container

REPORT = DEPLOY / "kubernetes" / "report"


@pytest.fixture(scope="module")
def built() -> dict:
    return {(o["kind"], o["metadata"]["name"]): o for o in kustomize_build(REPORT)}


@pytest.mark.integration
def test_the_report_kustomization_shares_no_object_with_the_base(built):
    # Applied next to the base or any overlay: an object of both would be overwritten by the last apply.
    assert set(built) == {("Deployment", "nlpmon-report"), ("Service", "nlpmon-report"), ("Secret", "nlpmon-report")}
    assert not set(built) & {(o["kind"], o["metadata"]["name"]) for o in kustomize_build(K8S)}


@pytest.mark.integration
def test_the_report_server_serves_the_store_read_only_on_8080(built):
    pod = built[("Deployment", "nlpmon-report")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # The store URL (a password) from the environment only, never in the arguments (`ps` shows them).
    assert container["args"] == ["report", "serve", "--host", "0.0.0.0", "--port", "8080"]
    (env,) = container["env"]
    assert env["name"] == "NLPMON_STORE_URL"
    assert env["valueFrom"]["secretKeyRef"] == {"name": "nlpmon-report", "key": "store-url"}
    # Its own database user, one that may only read: not the daemon's Secret.
    url = built[("Secret", "nlpmon-report")]["stringData"]["store-url"]
    assert url.startswith("postgresql+psycopg://nlpmon_report:")
    # The daemon's image, user and hardening.
    assert container["image"] == nlpmon_container()["image"]
    assert container["securityContext"] == nlpmon_container()["securityContext"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.integration
def test_readiness_is_healthz_on_the_port_the_service_targets(built):
    (container,) = built[("Deployment", "nlpmon-report")]["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    service = built[("Service", "nlpmon-report")]["spec"]
    (port,) = service["ports"]
    assert (port["port"], port["targetPort"]) == (8080, "http")
    assert service["selector"] == built[("Deployment", "nlpmon-report")]["spec"]["selector"]["matchLabels"]
    assert service["selector"].items() <= built[("Deployment", "nlpmon-report")]["spec"]["template"]["metadata"][
        "labels"].items()


def test_the_report_command_takes_the_manifest_arguments(monkeypatch):
    """`nlpmon report serve` parses the manifest's arguments, and takes the store from NLPMON_STORE_URL."""
    import yaml

    from monitor.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]
    docs = yaml.safe_load_all((REPORT / "deployment.yaml").read_text(encoding="utf-8"))
    (container,) = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"]
    parsed = build_parser().parse_args(container["args"])
    assert (parsed.host, parsed.port, parsed.store) == ("0.0.0.0", 8080, None)
    from monitor.cli.common import config_from_args

    monkeypatch.setenv("NLPMON_STORE_URL", "postgresql+psycopg://r@db/n")  # what the Secret gives the pod
    config = config_from_args(parsed, {"source.kind": "stdin"})
    assert config.store.url == "postgresql+psycopg://r@db/n"
