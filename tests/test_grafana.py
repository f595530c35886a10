"""Checks of the Grafana dashboard and its provisioning files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "grafana" / "dashboards" / "nlpmon.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "nlpmon.yml"
PROVIDERS = ROOT / "grafana" / "provisioning" / "dashboards" / "nlpmon.yml"


def _load_alert_helpers():
    """The PromQL name parser and metric inventory live in test_alerts.py; load it by path."""
    spec = importlib.util.spec_from_file_location("_nlpmon_alert_helpers", Path(__file__).with_name("test_alerts.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helpers = _load_alert_helpers()


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels() -> list[dict]:
    """Every non-row panel, including those nested in collapsed rows."""
    out = []
    for p in dashboard()["panels"]:
        if p["type"] == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def exprs(panel: dict) -> list[str]:
    return [t["expr"] for t in panel.get("targets", [])]


def datasource_uid() -> str:
    (source,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    return source["uid"]


def test_dashboard_parses_and_is_provisionable():
    d = dashboard()
    assert d["uid"] and d["title"]
    assert d.get("id") is None, "a provisioned dashboard must not carry a database id"
    assert "__inputs" not in d and "${DS_" not in DASHBOARD.read_text(encoding="utf-8"), (
        "the dashboard must refer to the provisioned datasource by uid, not through import inputs"
    )


def test_template_variables_model_and_version():
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert {"model", "version"} <= set(variables)
    assert "nlp_" in variables["model"]["definition"]
    assert "$model" in variables["version"]["definition"], "version choices should follow the chosen model"
    for v in (variables["model"], variables["version"]):
        assert v["datasource"]["uid"] == datasource_uid()


def test_every_query_uses_the_provisioned_datasource():
    uid = datasource_uid()
    for p in panels():
        assert p["datasource"]["uid"] == uid, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == uid, p["title"]


def test_model_panels_follow_the_template_variables():
    for p in panels():
        for expr in exprs(p):
            names = helpers.metric_names(expr)
            # Experiments are chosen by their own variable; shadow joins are per served model (no version label).
            if any(name.startswith("nlp_experiment_") for name in names):
                assert '$experiment' in expr, f"{p['title']}: {expr}"
            elif any(name.startswith("nlp_shadow_") for name in names):
                assert '$model' in expr, f"{p['title']}: {expr}"
            elif any(name.startswith(("nlp_", "model_version")) for name in names):
                assert '$model' in expr and '$version' in expr, f"{p['title']}: {expr}"


def test_queries_use_only_known_metrics():
    known = (helpers.documented_metric_names() | helpers.PLANNED_METRICS | helpers.PROMETHEUS_METRICS
             | helpers.recording_rule_names())
    for p in panels():
        for expr in exprs(p):
            names = helpers.metric_names(expr)
            assert names, f"{p['title']}: no metric found in {expr!r}"
            assert names <= known, f"{p['title']}: unknown metrics {sorted(names - known)}"


# What issue 5 asks the dashboard to show: a description and a test on one panel's queries.
def _uses(*metrics):
    return lambda qs: all(any(m in q for q in qs) for m in metrics)


REQUIRED_PANELS = {
    "latency p50/p95/p99": lambda qs: all(
        any(f"histogram_quantile({q}," in e and "nlp_prediction_latency_seconds_bucket" in e for e in qs)
        for q in ("0.5", "0.95", "0.99")
    ),
    "predictions per second": lambda qs: any(
        "rate(nlp_predictions_total" in q and "prediction_class" not in q for q in qs
    ),
    "class distribution": lambda qs: any("nlp_predictions_total" in q and "prediction_class" in q for q in qs)
    or _uses("nlp_window_class_ratio")(qs),
    "confidence distribution": _uses("nlp_prediction_confidence_bucket"),
    "input length trend": _uses("nlp_input_length_tokens"),
    "drift statistic per feature": _uses("nlp_drift_statistic"),
    "drift p-value per feature": _uses("nlp_drift_p_value"),
    "drift flags over time": _uses("nlp_drift_detected"),
    "re-eval accuracy over time": _uses("nlp_reeval_accuracy"),
    "estimated vs measured accuracy": _uses("nlp_estimated_accuracy", "nlp_reeval_accuracy"),
    "consumer lag": _uses("nlpmon_consumer_lag"),
    "invalid events": _uses("nlpmon_events_invalid_total"),
    # Issue 6: experiments and shadow deployments.
    "experiment samples per variant": _uses("nlp_experiment_samples"),
    "experiment lift and always-valid interval": _uses("nlp_experiment_lift", "nlp_experiment_lift_ci_low",
                                                       "nlp_experiment_lift_ci_high"),
    "experiment always-valid p-value": _uses("nlp_experiment_p_value"),
    "sample-ratio mismatch": _uses("nlp_experiment_srm_p_value", "nlp_experiment_srm_mismatch"),
    "experiment guardrails": _uses("nlp_experiment_guardrail"),
    "shadow agreement": _uses("nlp_shadow_agreement_ratio"),
}


@pytest.mark.parametrize("name", REQUIRED_PANELS)
def test_required_panel_present(name):
    matches = [p["title"] for p in panels() if REQUIRED_PANELS[name](exprs(p))]
    assert matches, f"no panel shows {name}"


def test_layout_is_sane():
    all_panels = dashboard()["panels"]
    ids = [p["id"] for p in all_panels] + [q["id"] for p in all_panels for q in p.get("panels", [])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    cells = set()
    for p in all_panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))
    for p in panels():
        assert p.get("description"), f"{p['title']}: no description"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), f"{p['title']}: duplicate refIds"


def test_provisioning_files():
    (source,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert source["type"] == "prometheus" and source["url"]
    (provider,) = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def _as_promql(expr: str) -> str:
    """Replace Grafana's variables with values Prometheus accepts (the end-to-end test needs the same)."""
    for var, value in (("$__rate_interval", "1m"), ("$__interval", "1m"), ("$__range", "1h"),
                       ("$model", ".*"), ("$version", ".*"), ("$experiment", ".*")):
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unhandled Grafana variable in {expr!r}"
    return expr


@pytest.mark.integration
def test_queries_parse_as_promql(tmp_path):
    # promtool has no offline "check expression"; a recording rule per query gets every one parsed.
    promtool = helpers.tool("promtool")
    rules = [{"record": f"dashboard:query:{i}", "expr": _as_promql(e)}
             for i, e in enumerate(e for p in panels() for e in exprs(p))]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = helpers.run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr

