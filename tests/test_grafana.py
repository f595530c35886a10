"""Checks of the Grafana dashboard and its provisioning files.

The dashboard must import into any Grafana: every panel and variable queries the ``datasource`` variable
(the provisioned datasource is only its default), every query is scoped by the ``job`` and ``namespace``
variables, optional rows are collapsed, and each panel has one unit.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "grafana" / "dashboards" / "nlpmon.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "nlpmon.yml"
PROVIDERS = ROOT / "grafana" / "provisioning" / "dashboards" / "nlpmon.yml"
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
# Rows of features that are off on a plain install (re-evaluation, experiments, shadow): collapsed.
OPTIONAL_ROWS = ("Re-evaluation", "Experiments", "Shadow", "Realised accuracy")
# 0/1 gauges: never on one axis with a p-value or a ratio.
FLAG_METRICS = {"nlp_drift_detected", "nlp_drift_detector_detected", "nlp_window_drifted", "nlp_experiment_significant", "nlp_experiment_degraded",
                "nlp_experiment_srm_mismatch", "nlp_experiment_guardrail_breached", "nlp_shadow_agreement_low",
                "nlpmon_ready", "nlpmon_kafka_connected", "nlpmon_db_connected", "nlpmon_consumption_paused", "up"}


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


def rows() -> list[dict]:
    return [p for p in dashboard()["panels"] if p["type"] == "row"]


def variables() -> dict[str, dict]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


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
    found = variables()
    assert {"model", "version"} <= set(found)
    assert "nlp_" in found["model"]["definition"]
    assert "$model" in found["version"]["definition"], "version choices should follow the chosen model"
    for v in (found["model"], found["version"]):
        assert v["datasource"] == DATASOURCE_REF


def test_datasource_variable_defaults_to_the_provisioned_datasource():
    found = variables()
    (first, *_) = dashboard()["templating"]["list"]
    assert first["name"] == "datasource", "the datasource variable comes first: the others query through it"
    assert first["type"] == "datasource" and first["query"] == "prometheus"
    # Provisioned installs select the provisioned datasource; elsewhere Grafana falls back to its default.
    assert found["datasource"]["current"]["value"] == datasource_uid()


def test_every_panel_and_variable_uses_the_datasource_variable():
    assert datasource_uid() not in json.dumps([dashboard()["panels"]]), "a panel pins the provisioned uid"
    for p in panels():
        assert p["datasource"] == DATASOURCE_REF, p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE_REF, p["title"]
    for name, v in variables().items():
        if v["type"] == "query":
            assert v["datasource"] == DATASOURCE_REF, name


def test_job_and_namespace_variables_match_all_by_default():
    found = variables()
    for name in ("job", "namespace"):
        v = found[name]
        assert v["type"] == "query" and v["includeAll"] and v["current"]["value"] == ["$__all"], name
    # `namespace=~".*"` also matches series without a namespace label (a plain, non-Kubernetes install).
    assert found["namespace"]["allValue"] == ".*"
    assert "$job" in found["namespace"]["definition"]
    for name in ("model", "version", "experiment"):
        assert 'job=~"$job"' in found[name]["definition"] and 'namespace=~"$namespace"' in found[name]["definition"]


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, its label matchers) for every series selector of ``expr``."""
    out = []
    for name in helpers.metric_names(expr):
        for m in re.finditer(rf"(?<![\w:]){re.escape(name)}(?![\w:(])\s*(\{{[^}}]*\}})?", expr):
            out.append((name, m.group(1) or ""))
    return out


def test_every_selector_is_scoped_by_job_and_namespace():
    for p in panels():
        for expr in exprs(p):
            found = selectors(expr)
            assert found, f"{p['title']}: no selector in {expr!r}"
            for name, matchers in found:
                assert 'job=~"$job"' in matchers and 'namespace=~"$namespace"' in matchers, (
                    f"{p['title']}: {name} is not scoped by $job/$namespace in {expr!r}")


def test_recording_rules_are_not_queried():
    # The project's recording rules aggregate the job and namespace labels away: $job could not apply.
    recorded = helpers.recording_rule_names()
    for p in panels():
        for expr in exprs(p):
            assert not helpers.metric_names(expr) & recorded, f"{p['title']}: {expr}"


def test_optional_rows_are_collapsed_and_the_others_not():
    found = rows()
    optional = [r for r in found if r["title"].startswith(OPTIONAL_ROWS)]
    assert len(optional) == len(OPTIONAL_ROWS), [r["title"] for r in found]
    for r in found:
        assert r["collapsed"] == (r in optional), r["title"]
        # A collapsed row holds its panels; an expanded one lists none (they follow it at the top level).
        assert bool(r.get("panels")) == r["collapsed"], r["title"]
    nested = {p["title"] for r in optional for p in r["panels"]}
    assert {"Re-evaluation accuracy", "Experiment samples per variant", "Shadow agreement",
            "Realised vs estimated accuracy"} <= nested


def _units(panel: dict) -> set:
    config = panel.get("fieldConfig", {})
    units = {config.get("defaults", {}).get("unit")}
    for override in config.get("overrides", []):
        units |= {prop["value"] for prop in override.get("properties", []) if prop["id"] == "unit"}
    return units - {None}


def test_one_unit_per_panel():
    for p in panels():
        assert len(_units(p)) <= 1, f"{p['title']}: units {sorted(_units(p))}"


def test_flags_and_p_values_or_ratios_are_not_mixed():
    for p in panels():
        names = {n for e in exprs(p) for n in helpers.metric_names(e)}
        if names & FLAG_METRICS:
            assert names <= FLAG_METRICS, f"{p['title']}: 0/1 flags with {sorted(names - FLAG_METRICS)}"


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
    "drift flags over time": _uses("nlp_drift_detector_detected"),
    "re-eval accuracy over time": _uses("nlp_reeval_accuracy_ratio"),
    "estimated vs measured accuracy": _uses("nlp_estimated_accuracy_ratio", "nlp_reeval_accuracy_ratio"),
    "consumer lag": _uses("nlpmon_consumer_lag"),
    "invalid events": _uses("nlpmon_events_invalid_total"),
    # Issue 6: experiments and shadow deployments.
    "experiment samples per variant": _uses("nlp_experiment_samples"),
    "experiment lift and always-valid interval": _uses("nlp_experiment_lift", "nlp_experiment_lift_ci_low",
                                                       "nlp_experiment_lift_ci_high"),
    "experiment always-valid p-value": _uses("nlp_experiment_p_value"),
    # The p-value and the 0/1 mismatch flag, each on a panel of its own (one unit per panel).
    "sample-ratio p-value": _uses("nlp_experiment_srm_p_value"),
    "sample-ratio mismatch": _uses("nlp_experiment_srm_mismatch"),
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


def _as_promql(expr: str, job: str = "nlpmon") -> str:
    """Replace Grafana's variables with values Prometheus accepts (the end-to-end test needs the same).

    ``$job`` becomes the scrape job (the stack end-to-end test's is ``nlpmon``); every other variable its
    ``All`` value, ``.*``, which for ``$namespace`` also matches series without a namespace label.
    """
    for var, value in (("$__rate_interval", "1m"), ("$__interval", "1m"), ("$__range", "1h"), ("$job", job),
                       ("$namespace", ".*"), ("$model", ".*"), ("$version", ".*"), ("$segment", ".*"), ("$experiment", ".*")):
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



@pytest.mark.integration
def test_namespace_all_matches_series_without_a_namespace_label(tmp_path):
    # The selector every panel uses, evaluated by promtool on a plain install's series (no namespace label)
    # and on a Kubernetes one's: All keeps both, a chosen namespace only its own.
    promtool = helpers.tool("promtool")
    scoped = _as_promql('nlp_window_events{job=~"$job",namespace=~"$namespace"}')
    chosen = scoped.replace('namespace=~".*"', 'namespace=~"prod"')
    plain = {"job": "nlpmon", "model": "m", "version": "1"}
    kube = {**plain, "namespace": "prod", "model": "k"}
    other_job = {**plain, "job": "other", "model": "o"}

    def series(labels: dict) -> str:
        return "nlp_window_events{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"

    def sample(labels: dict, value: float) -> dict:
        return {"labels": series(labels), "value": value}

    tests = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": series(plain), "values": "10"}, {"series": series(kube), "values": "20"},
                         {"series": series(other_job), "values": "30"}],
        "promql_expr_test": [
            {"expr": scoped, "eval_time": "0m", "exp_samples": [sample(plain, 10), sample(kube, 20)]},
            {"expr": chosen, "eval_time": "0m", "exp_samples": [sample(kube, 20)]},
        ],
    }]}
    path = tmp_path / "namespace_test.yml"
    path.write_text(yaml.safe_dump(tests), encoding="utf-8")
    result = helpers.run(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
