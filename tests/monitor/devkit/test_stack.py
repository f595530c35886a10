"""monitor.devkit.stack: the local Prometheus/Alertmanager of ``make demo``, and the config rewrites for short runs."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from monitor.devkit.stack import (
    DRIFT_ALERTS,
    PERSISTENCE_RULE,
    find_binaries,
    local_alertmanager_config,
    shorten_drift_persistence,
    start_local_stack,
)  # fmt: skip

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "alerts" / "nlpmon.rules.yml"
ALERTMANAGER_CONFIG = ROOT / "alerts" / "alertmanager" / "alertmanager.yml"


def _rules(text: str) -> dict:
    return {r.get("record") or r.get("alert"): r for g in yaml.safe_load(text)["groups"] for r in g["rules"]}


def _alertmanagers(prometheus: str) -> list[str]:
    body = json.load(urllib.request.urlopen(prometheus + "/api/v1/alertmanagers", timeout=5))
    return [a["url"] for a in body["data"]["activeAlertmanagers"]]


def test_without_binaries_yields_none_and_starts_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert find_binaries() == (None, None)
    with start_local_stack(["127.0.0.1:1"], tmp_path / "stack", "alerts/*.yml") as stack:
        assert stack is None
    assert not (tmp_path / "stack").exists()


def test_finds_debian_and_upstream_alertmanager_names(tmp_path):
    for name in ("prometheus", "alertmanager"):
        exe = tmp_path / name
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    assert find_binaries(str(tmp_path)) == (str(tmp_path / "prometheus"), str(tmp_path / "alertmanager"))


@pytest.mark.integration
def test_starts_prometheus_and_alertmanager_when_installed(tmp_path):
    prometheus, alertmanager = find_binaries()
    if prometheus is None or alertmanager is None:
        message = "prometheus and prometheus-alertmanager are not installed (apt-get install prometheus prometheus-alertmanager)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    glob = str(ROOT / "alerts" / "*.yml")
    with start_local_stack(["127.0.0.1:1"], tmp_path, glob, scrape_interval_s=1) as stack:
        assert stack is not None and stack.alertmanager
        for url in (stack.prometheus, stack.alertmanager):
            assert urllib.request.urlopen(url + "/-/ready", timeout=5).status == 200
        rules = json.load(urllib.request.urlopen(stack.prometheus + "/api/v1/rules", timeout=5))
        loaded = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert set(_rules(RULES.read_text())) <= loaded, "the project's rule files were not all loaded"
        wanted, deadline = [stack.alertmanager + "/api/v2/alerts"], time.monotonic() + 10
        while _alertmanagers(stack.prometheus) != wanted and time.monotonic() < deadline:
            time.sleep(0.2)  # Prometheus discovers its Alertmanagers asynchronously
        assert _alertmanagers(stack.prometheus) == wanted
        assert "Prometheus:" in stack.describe() and stack.alertmanager in stack.describe()
    for url in (stack.prometheus, stack.alertmanager):
        with pytest.raises(OSError):
            urllib.request.urlopen(url + "/-/ready", timeout=2)


def test_shorten_drift_persistence_touches_only_the_persistence_rule():
    text = RULES.read_text(encoding="utf-8")
    short = shorten_drift_persistence(text, 6)
    before, after = _rules(text), _rules(short)
    assert set(before) == set(after)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {PERSISTENCE_RULE}
    assert after[PERSISTENCE_RULE]["expr"].count("[6s]") == 3 and "[6m]" not in short
    assert all(not after[a].get("for") for a in DRIFT_ALERTS)


@pytest.mark.parametrize(
    "edit, complaint",
    [
        (lambda t: t.replace("[6m]", "[10m]", 1), "exactly 3 times"),  # one range changed on its own
        (lambda t: t + "\n# sum_over_time(x[6m])\n", "exactly 3 times"),  # a fourth use elsewhere
        (lambda t: t.replace("expr: model_version_detector:nlp_drift_detector_detected:persistent6m{detector=\"input\"} == 1",
                             "expr: model_version_detector:nlp_drift_detector_detected:persistent6m{detector=\"input\"} == 1\n"
                             "        for: 5m"), "for: 5m"),
        (lambda t: t.replace("record: model_version_detector:nlp_drift_detector_detected:persistent6m", "record: x:y:z"),
         "no recording rule"),
    ],
)
def test_shorten_drift_persistence_refuses_rules_of_another_shape(edit, complaint):
    edited = edit(RULES.read_text(encoding="utf-8"))
    with pytest.raises(ValueError, match=complaint):
        shorten_drift_persistence(edited, 6)


def test_local_alertmanager_config_keeps_routing_and_points_receivers_at_the_webhook():
    original = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    local = local_alertmanager_config(ALERTMANAGER_CONFIG, webhook_url="http://127.0.0.1:9/hook", group_wait_s=1,
                                      group_interval_s=2)
    assert local["inhibit_rules"] == original["inhibit_rules"]
    assert [r["name"] for r in local["receivers"]] == [r["name"] for r in original["receivers"]]
    for r in local["receivers"]:
        assert r["webhook_configs"] == [{"url": f"http://127.0.0.1:9/hook/{r['name']}", "send_resolved": True}]
    routes = [local["route"], *local["route"]["routes"]]
    assert all(r["group_wait"] == "1s" and r["group_interval"] == "2s" for r in routes)
    assert [r.get("matchers") for r in routes] == [r.get("matchers") for r in [original["route"], *original["route"]["routes"]]]
    silent = local_alertmanager_config(ALERTMANAGER_CONFIG)
    assert all(set(r) == {"name"} for r in silent["receivers"])
