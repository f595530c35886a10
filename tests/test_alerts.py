"""Checks of the Prometheus rules, their promtool unit tests, the Alertmanager example and the runbooks.

The promtool/amtool checks need the Debian packages ``prometheus`` (promtool) and
``prometheus-alertmanager`` (amtool). Without them these checks are skipped, except under ``CI=true``,
where a missing tool is a failure: CI must not pass by skipping the alerting checks.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "alerts"
RULE_FILES = sorted(ALERTS.glob("*.yml"))
TEST_FILES = sorted((ALERTS / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = ALERTS / "alertmanager" / "alertmanager.yml"
RULES_SOURCE = ALERTS / "src" / "nlpmon.rules.yml"
SEVERITIES = ("critical", "warning", "info")
RUNBOOKS = ROOT / "docs" / "runbooks.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"

INSTALL_HINT = "apt-get install -y prometheus prometheus-alertmanager"

# Metrics that other issues add and docs/metrics.md does not list yet: re-evaluation (issue 4) and the
# Kafka daemon (issue 3). Once docs/metrics.md documents them, these entries are redundant but harmless.
PLANNED_METRICS = {
    "nlp_reeval_accuracy_ratio", "nlp_reeval_f1", "nlp_reeval_ece", "nlp_reeval_accuracy_drop",
    "nlp_reeval_duration_seconds", "nlp_reeval_last_run_timestamp_seconds", "nlp_estimated_accuracy_ratio",
    "nlpmon_reeval_runs_total", "nlpmon_kafka_connected", "nlpmon_consumer_lag", "nlpmon_db_connected",
    "nlpmon_ready",
}
# Series Prometheus itself writes for every target.
PROMETHEUS_METRICS = {"up"}

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                 "bool", "offset", "inf", "nan", "atan2"}


def _load_renderer():
    spec = importlib.util.spec_from_file_location("_nlpmon_alert_render", ALERTS / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _load_renderer()


def tool(name: str) -> str:
    """Return the path of ``name``; skip the test without it, or fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: {INSTALL_HINT})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {message}: the alerting checks must run in CI")
        pytest.skip(message)
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


def documented_metric_names() -> set[str]:
    """Metric names in the tables of docs/metrics.md; histograms also give _bucket, _sum and _count."""
    names = set()
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|([^|]*)\|", line)
        if m:
            names.add(m.group(1))
            if m.group(2).strip().startswith("histogram"):
                names.update(m.group(1) + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def metric_names(expr: str) -> set[str]:
    """Names of the series a PromQL expression selects (functions, keywords and label names left out)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)  # label lists
    e = re.sub(r"\$\{?\w+\}?", "", e)  # Grafana variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        if m.start() and (e[m.start() - 1].isdigit() or e[m.start() - 1] == "."):
            continue  # part of a number (1e3) or duration (5m)
        if e[m.end():].lstrip().startswith("(") or m.group(0).lower() in _PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def load_rules() -> list[dict]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(group["rules"])
    return rules


def alert_rules() -> list[dict]:
    return [r for r in load_rules() if "alert" in r]


def recording_rule_names() -> set[str]:
    return {r["record"] for r in load_rules() if "record" in r}


def github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def runbook_anchors() -> dict[str, str]:
    """Anchor -> heading text, for the level-2 sections of docs/runbooks.md."""
    text = RUNBOOKS.read_text(encoding="utf-8")
    return {github_anchor(h): h for h in re.findall(r"^## (.+)$", text, flags=re.MULTILINE)}


# -- the rule files themselves ---------------------------------------------------------------------------


def test_alerts_dir_holds_only_rule_files():
    # Prometheus loads `rule_files: [alerts/*.yml]` directly; anything else there would stop it starting.
    assert RULE_FILES, "no rule files in alerts/"
    for path in RULE_FILES:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(doc, dict) and set(doc) == {"groups"}, f"{path.name} is not a Prometheus rule file"


def test_required_alerts_exist():
    names = {r["alert"] for r in alert_rules()}
    required = {
        "NlpHighP99Latency", "NlpLowMeanConfidence", "NlpInputDrift", "NlpConfidenceShift",
        "NlpPredictionClassShift", "NlpReevalAccuracyDrop", "NlpHighErrorRate", "NlpmonHighInvalidEventRate",
        "NlpModelNoTraffic", "NlpmonConsumerLagHigh", "NlpmonDown", "NlpmonAbsent", "NlpEmbeddingDrift",
        # issue 11
        "NlpWindowsStale", "NlpmonLabelValuesFolded", "NlpmonConsumptionPaused", "NlpmonReevalFailures",
        "NlpmonDeadLetterRateHigh",
        # sends to the Kafka sidecar's output and dead-letter topics keep failing
        "NlpmonPublishErrors",
        # issue 10
        "NlpClassProbabilityShift",
    }
    assert required <= names, f"missing alerts: {sorted(required - names)}"
    assert len(names) == len(alert_rules()), "duplicate alert names"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_has_severity_summary_description_and_runbook(rule):
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    assert annotations.get("summary"), "no summary"
    description = annotations.get("description", "")
    if not rule["expr"].startswith("absent("):  # absent() has neither a value nor labels beyond the selector
        assert "$value" in description or "$labels" in description, "description shows no value or label"
    url = annotations.get("runbook_url", "")
    path, _, anchor = url.partition("#")
    # Absolute, so that it is a link in Slack and PagerDuty; the default render uses the default base URL.
    assert path == render.DEFAULT_RUNBOOK_URL, f"runbook_url {url!r} does not point at the runbooks"
    assert anchor == github_anchor(rule["alert"]), f"runbook anchor {anchor!r} is not the alert's name"
    assert anchor in runbook_anchors(), f"docs/runbooks.md has no section '## {rule['alert']}'"


def test_runbook_sections_state_each_alerts_severity():
    text = RUNBOOKS.read_text(encoding="utf-8")
    for rule in alert_rules():
        section = re.search(rf"^## {rule['alert']}\n+(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
        assert section, f"no section for {rule['alert']}"
        stated = re.search(r"\*\*Severity\*\* (\w+)", section.group(1))
        assert stated and stated.group(1) == rule["labels"]["severity"], (
            f"{rule['alert']}: docs/runbooks.md says {stated and stated.group(1)!r}, "
            f"the rule {rule['labels']['severity']!r}")


def test_every_runbook_alert_section_has_an_alert():
    names = {r["alert"] for r in alert_rules()}
    sections = [h for h in runbook_anchors().values() if re.fullmatch(r"Nlp\w+", h)]
    assert set(sections) == names, "runbook sections and alert rules differ"


def test_rule_expressions_use_known_metrics():
    known = documented_metric_names() | PLANNED_METRICS | PROMETHEUS_METRICS | recording_rule_names()
    for rule in load_rules():
        exprs = [rule["expr"]]
        # queries run from annotation templates: {{ with printf "<query>" ... | query }}
        for text in rule.get("annotations", {}).values():
            exprs += re.findall(r'printf "((?:[^"\\]|\\.)*)"[^|}]*\|\s*query', text)
        for expr in exprs:
            unknown = metric_names(expr) - known
            assert not unknown, f"{rule.get('alert') or rule.get('record')}: unknown metrics {sorted(unknown)}"


def test_drift_persistence_range_is_in_one_place():
    # Tests with short windows load a copy of the rules with this range shortened (docs/runbooks.md).
    ranges = {r.get("record") or r.get("alert"): re.findall(r"\[6m\]", r["expr"]) for r in load_rules()}
    with_range = {name for name, found in ranges.items() if found}
    assert with_range == {"model_version_detector:nlp_drift_detector_detected:persistent6m"}


def test_metric_name_parser():
    expr = ('histogram_quantile(0.99, sum by (le, model) (rate(nlp_prediction_latency_seconds_bucket'
            '{model=~"$model"}[$__rate_interval]))) > 1e3 and on (model) up offset 5m '
            'or label_replace(nlp_x, "a", "$1", "b", "(.*)") / ignoring(q) group_left(model) c:d:e')
    assert metric_names(expr) == {"nlp_prediction_latency_seconds_bucket", "up", "nlp_x", "c:d:e"}


# -- the mixin: one source, rendered --------------------------------------------------------------------------

OTHER_SELECTOR = 'job="ml/nlpmon",namespace="ml",app=~"senti.*|100%"'
OTHER_RUNBOOKS = "https://wiki.example.org/ml/nlpmon/runbooks.md"
OTHER_REPORTS = "https://nlpmon-report.ml.example.org"
# The alerts whose report_url opens the report server on their model, version and segment (docs/runbooks.md).
REPORT_ALERTS = {"NlpLowMeanConfidence", "NlpInputDrift", "NlpConfidenceShift", "NlpPredictionClassShift",
                 "NlpEmbeddingDrift", "NlpClassProbabilityShift", "NlpRealisedAccuracyLow", "NlpEstimatedAccuracyLow"}
# Raw metric names in the rules (recording-rule names contain ':', so the look-arounds leave them out).
_RAW_METRIC = re.compile(r"(?<![\w:$])(up|nlp_\w+|nlpmon_\w+)(?![\w:])(\{[^}]*\})?")


def rendered_rules(selector: str = OTHER_SELECTOR, runbook_url: str = OTHER_RUNBOOKS) -> list[dict]:
    text = render.render(RULES_SOURCE.read_text(encoding="utf-8"), selector=selector, runbook_url=runbook_url,
                         report_url=OTHER_REPORTS + "/")
    return [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]


def annotation_queries(rule: dict) -> list[str]:
    """The PromQL of each ``{{ ... printf "<query>" ... | query }}``, as Go would unquote and format it."""
    queries = []
    for text in rule.get("annotations", {}).values():
        for q in re.findall(r'printf "((?:[^"\\]|\\.)*)"[^|}]*\|\s*query', text):
            queries.append(q.replace('\\"', '"').replace("\\\\", "\\").replace("%%", "%"))
    return queries


def test_committed_rules_are_the_default_render():
    fresh = render.render(RULES_SOURCE.read_text(encoding="utf-8"))
    assert (ALERTS / "nlpmon.rules.yml").read_text(encoding="utf-8") == fresh, (
        "alerts/nlpmon.rules.yml is not the rendering of alerts/src/nlpmon.rules.yml: run `make generated`")


def test_selector_reaches_every_raw_metric_selector():
    checked = 0
    for rule in rendered_rules():
        name = rule.get("alert") or rule.get("record")
        for expr in [rule["expr"], *annotation_queries(rule)]:
            for m in _RAW_METRIC.finditer(expr):
                assert m.group(2) and m.group(2)[1:].startswith(OTHER_SELECTOR), (
                    f"{name}: {m.group(0)} in {expr!r} lacks the selector")
                checked += 1
    assert checked > 40  # the rules' every selector, not a parse that found nothing


def test_rendered_runbook_links_are_absolute_and_anchored():
    for rule in rendered_rules():
        if "alert" in rule:
            assert rule["annotations"]["runbook_url"] == f"{OTHER_RUNBOOKS}#{rule['alert'].lower()}"
    assert 'up{job="ml/nlpmon"' in next(r["expr"] for r in rendered_rules() if r.get("alert") == "NlpmonAbsent")


def test_drift_and_accuracy_alerts_link_the_report_of_their_model_version_and_segment():
    linked = {r["alert"] for r in rendered_rules() if "report_url" in r.get("annotations", {})}
    assert linked == REPORT_ALERTS
    for rule in rendered_rules():
        if rule.get("alert") in REPORT_ALERTS:
            # The base's trailing "/" is dropped; the labels are URL-escaped by Go's urlquery. The segment only
            # when the alert has one (window.by_segment): an alert of one segment opens that segment's report,
            # one without opens the whole stream's (alerts/tests/model_test.yml checks both, rendered).
            assert rule["annotations"]["report_url"] == (
                f"{OTHER_REPORTS}/report?model={{{{ $labels.model | urlquery }}}}"
                "&version={{ $labels.version | urlquery }}"
                "{{ with $labels.segment }}&segment={{ . | urlquery }}{{ end }}"), rule["alert"]


@pytest.mark.parametrize("report_url, message", [
    ("nlpmon-report:8080", "absolute"),
    (OTHER_REPORTS + "/?x=1", "no '[?]query'"),
    (OTHER_REPORTS + "#top", "no '[?]query' or '#fragment'"),
    ('http://a"b', "quote"),
])
def test_render_refuses_a_bad_report_url(report_url, message):
    with pytest.raises(ValueError, match=message):
        render.render(RULES_SOURCE.read_text(encoding="utf-8"), report_url=report_url)


@pytest.mark.parametrize("selector, runbook_url, message", [
    ("{job=\"x\"}", OTHER_RUNBOOKS, "without braces"),
    ("job='x'", OTHER_RUNBOOKS, "double-quoted"),
    ('job!="x"', OTHER_RUNBOOKS, "matches everything"),
    ('job="x" namespace="y"', OTHER_RUNBOOKS, "expected ','"),
    ('job="{{ x }}"', OTHER_RUNBOOKS, "template"),
    ('job="x"', "docs/runbooks.md", "absolute"),
    ('job="x"', OTHER_RUNBOOKS + "#top", "fragment"),
])
def test_render_refuses_bad_parameters(selector, runbook_url, message):
    with pytest.raises(ValueError, match=message):
        render.render(RULES_SOURCE.read_text(encoding="utf-8"), selector=selector, runbook_url=runbook_url)


def test_render_refuses_an_unknown_parameter():
    with pytest.raises(ValueError, match=r"\$\{selektor\}"):
        render.render("groups:\n  - expr: up{${selektor}}\n")


_OTHER_RENDER_TEST = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - name: NlpmonAbsent takes the rendered selector's job and namespace (the default job does not count)
    interval: 1m
    input_series:
      - series: 'up{job="nlpmon",instance="pod-a:9108"}'
        values: '1x20'
    alert_rule_test:
      - eval_time: 12m
        alertname: NlpmonAbsent
        exp_alerts:
          - exp_labels: {severity: critical, job: ml/nlpmon, namespace: ml}
            exp_annotations:
              summary: "No nlpmon target is known to Prometheus"
              description: "Prometheus has had no target matching up{job=\\"ml/nlpmon\\",namespace=\\"ml\\",app=~\\"senti.*|100%\\"} for 10 minutes: nlpmon is not deployed, or service discovery or the scrape configuration lost it (or the alert selector does not match the job label your scrape setup gives). Every nlpmon alert is blind."
              runbook_url: https://wiki.example.org/ml/nlpmon/runbooks.md#nlpmonabsent
  - name: the annotation queries carry the selector through Go's printf (quotes, %)
    interval: 1m
    input_series:
      - series: 'nlp_windows_tested_total{job="ml/nlpmon",namespace="ml",app="sentiment",model="s",version="1"}'
        values: '1x4 2x4 3x4'
      - series: 'nlp_drift_detector_detected{job="ml/nlpmon",namespace="ml",app="sentiment",model="s",version="1",detector="input"}'
        values: '1x14'
      - series: 'nlp_drift_detected{job="ml/nlpmon",namespace="ml",app="sentiment",model="s",version="1",detector="input",feature="f1"}'
        values: '1x14'
      - series: 'nlp_drift_statistic{job="ml/nlpmon",namespace="ml",app="sentiment",model="s",version="1",detector="input",feature="f1"}'
        values: '0.3x14'
      # another installation's copy of the same model, outside the selector: neither alerts nor is counted
      - series: 'nlp_windows_tested_total{job="ml/nlpmon",namespace="staging",app="sentiment",model="s",version="1"}'
        values: '1x4 2x4 3x4'
      - series: 'nlp_drift_detector_detected{job="ml/nlpmon",namespace="staging",app="sentiment",model="s",version="1",detector="input"}'
        values: '1x14'
      - series: 'nlp_drift_detected{job="ml/nlpmon",namespace="staging",app="sentiment",model="s",version="1",detector="input",feature="f2"}'
        values: '1x14'
      - series: 'nlp_drift_statistic{job="ml/nlpmon",namespace="staging",app="sentiment",model="s",version="1",detector="input",feature="f2"}'
        values: '0.9x14'
    alert_rule_test:
      - eval_time: 7m
        alertname: NlpInputDrift
        exp_alerts:
          - exp_labels: {severity: critical, job: ml/nlpmon, namespace: ml, app: sentiment, model: s, version: "1", detector: input}
            exp_annotations:
              summary: "Input drift on s 1 in consecutive windows (namespace ml)"
              description: "The input-drift test of model s version 1 flagged drift in at least two consecutive windows. Drifted features: 1. Largest KS statistic: f1 = 0.300."
              runbook_url: https://wiki.example.org/ml/nlpmon/runbooks.md#nlpinputdrift
              report_url: https://nlpmon-report.ml.example.org/report?model=s&version=1
"""


@pytest.mark.integration
def test_rules_rendered_for_another_installation_pass_promtool(tmp_path):
    promtool = tool("promtool")
    text = render.render(RULES_SOURCE.read_text(encoding="utf-8"), selector=OTHER_SELECTOR,
                         runbook_url=OTHER_RUNBOOKS, report_url=OTHER_REPORTS)
    (tmp_path / "rules.yml").write_text(text, encoding="utf-8")
    (tmp_path / "rules_test.yml").write_text(_OTHER_RENDER_TEST, encoding="utf-8")
    result = run(promtool, "check", "rules", str(tmp_path / "rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run(promtool, "test", "rules", str(tmp_path / "rules_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_cli_writes_the_file(tmp_path):
    out = tmp_path / "nlpmon.rules.yml"
    result = run("python3", str(ALERTS / "render.py"), "--selector", 'job="x"', "--runbook-url", OTHER_RUNBOOKS,
                 "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "up{job=\"x\"}" in out.read_text(encoding="utf-8")
    result = run("python3", str(ALERTS / "render.py"), "--selector", "job=x", "-o", str(out))
    assert result.returncode == 2 and "double-quoted" in result.stderr


# -- promtool unit tests: coverage --------------------------------------------------------------------------


def test_every_alert_has_a_firing_and_a_quiet_promtool_case():
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc.get("rule_files"), f"{path.name} loads no rule files"
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names <= firing, f"alerts never expected to fire: {sorted(names - firing)}"
    assert names <= quiet, f"alerts never expected to stay quiet: {sorted(names - quiet)}"
    assert not (firing | quiet) - names, f"tests name unknown alerts: {sorted((firing | quiet) - names)}"


# -- promtool and amtool --------------------------------------------------------------------------------


@pytest.mark.integration
def test_promtool_check_rules():
    result = run(tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_promtool_unit_tests_pass():
    assert TEST_FILES, "no promtool tests in alerts/tests/"
    result = run(tool("promtool"), "test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_amtool_check_config():
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    "labels, receiver",
    [
        (["severity=critical", "alertname=NlpInputDrift", "model=sentiment"], "page"),
        (["severity=warning", "alertname=NlpConfidenceShift", "model=sentiment"], "ticket"),
        (["severity=critical", "alertname=NlpmonDown"], "page"),
        (["severity=info", "alertname=NlpmonLabelValuesFolded"], "info"),
        # a daemon alert without a model label: a ticket, like every warning
        (["severity=warning", "alertname=NlpmonPublishErrors", "topic_kind=output", "namespace=ml"], "ticket"),
    ],
)
def test_alertmanager_routes_by_severity(labels, receiver):
    result = run(tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
                 f"--verify.receivers={receiver}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_groups_by_model_within_its_namespace():
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    assert {"model", "namespace"} <= set(config["route"]["group_by"])
    severities = {m for route in config["route"]["routes"] for m in route["matchers"]}
    assert severities == {f'severity="{s}"' for s in SEVERITIES}
    # every severity the rules use has a route
    assert {r["labels"]["severity"] for r in alert_rules()} <= set(SEVERITIES)


def test_render_sets_the_realised_accuracy_margin_and_minimum():
    text = render.render(RULES_SOURCE.read_text(encoding="utf-8"), realised_margin=0.1, realised_min_labelled=500)
    [rule] = [r for g in yaml.safe_load(text)["groups"] for r in g["rules"] if r.get("alert") == "NlpRealisedAccuracyLow"]
    assert ") > 0.1\n" in rule["expr"] and ">= 500" in rule["expr"] and "margin 0.1," in rule["annotations"]["description"]
    for margin, minimum, message in ((0, 100, "margin"), (1.5, 100, "margin"), (0.05, 0, "labelled"), (0.05, 2.5, "labelled")):
        with pytest.raises(ValueError, match=message):
            render.render(RULES_SOURCE.read_text(encoding="utf-8"), realised_margin=margin, realised_min_labelled=minimum)


def test_inhibition_stays_within_one_segment_and_namespace():
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    (rule,) = config["inhibit_rules"]
    # Drift of segment A must not mute segment B's tickets, nor one namespace's those of another.
    assert {"model", "version", "segment", "namespace"} <= set(rule["equal"])


# -- render options: kept labels, severities, thresholds -----------------------------------------------------

_GROUPING = re.compile(r"\b(by|on)\s*\(([^)]*)\)")


def rule_groupings(text: str) -> list[tuple[str, set[str]]]:
    """(rule name, labels) of every `by (...)`/`on (...)` in the rules' expressions (not annotation queries)."""
    found = []
    for group in yaml.safe_load(text)["groups"]:
        for rule in group["rules"]:
            for m in _GROUPING.finditer(rule["expr"]):
                found.append((rule.get("alert") or rule["record"], {x.strip() for x in m.group(2).split(",") if x.strip()}))
    return found


def test_every_aggregation_keeps_namespace_by_default():
    groupings = rule_groupings((ALERTS / "nlpmon.rules.yml").read_text(encoding="utf-8"))
    assert len(groupings) >= 15
    for name, labels in groupings:
        assert "namespace" in labels, f"{name}: by/on ({', '.join(sorted(labels))}) drops namespace"


def test_keep_labels_adds_cluster_everywhere_and_to_the_annotation_queries():
    text = render.render(RULES_SOURCE.read_text(encoding="utf-8"), keep_labels=["namespace", "cluster"])
    for name, labels in rule_groupings(text):
        assert {"namespace", "cluster"} <= labels, name
    rules = [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]
    (drift,) = [r for r in rules if r.get("alert") == "NlpInputDrift"]
    assert ("namespace='%s',cluster='%s',model='%s'" in drift["annotations"]["description"]
            and "$labels.namespace $labels.cluster $labels.model" in drift["annotations"]["description"])
    # none: today's grouping, nothing else changes
    bare = render.render(RULES_SOURCE.read_text(encoding="utf-8"), keep_labels=[])
    assert "sum by (model, version) (rate(nlp_predictions_total" in bare and "namespace='%s'" not in bare


@pytest.mark.parametrize("labels, message", [
    (["model"], "already"), (["job"], "already"), (["name space"], "not a label"), (["__x"], "not a label"),
    (["cluster", "cluster"], "twice")])
def test_keep_labels_refuses_bad_names(labels, message):
    with pytest.raises(ValueError, match=message):
        render.render(RULES_SOURCE.read_text(encoding="utf-8"), keep_labels=labels)


def test_severity_option_changes_one_alert_only():
    source = RULES_SOURCE.read_text(encoding="utf-8")
    default = render.alert_severities(render.render(source))
    assert default["NlpInputDrift"] == "critical" and len(default) == len(alert_rules())
    changed = render.alert_severities(render.render(source, severities={"NlpInputDrift": "warning"}))
    assert changed == {**default, "NlpInputDrift": "warning"}
    with pytest.raises(ValueError, match="no alert 'NlpInputDirft'"):
        render.render(source, severities={"NlpInputDirft": "warning"})
    with pytest.raises(ValueError, match="critical, warning, info"):
        render.render(source, severities={"NlpInputDrift": "page"})


def test_thresholds_default_to_todays_values():
    assert render.DEFAULT_THRESHOLDS == {"p99_latency_seconds": 0.5, "min_confidence": 0.6, "error_ratio": 0.01,
                                         "consumer_lag": 10000, "stale_seconds": 900}
    rules = {r.get("alert"): r for r in alert_rules()}
    assert rules["NlpHighP99Latency"]["expr"].rstrip().endswith(") > 0.5")
    assert "< 0.6" in rules["NlpLowMeanConfidence"]["expr"]
    assert rules["NlpHighErrorRate"]["expr"].endswith("> 0.01")
    assert rules["NlpmonConsumerLagHigh"]["expr"].endswith("> 10000")
    assert ") > 900\n" in rules["NlpWindowsStale"]["expr"]


def test_threshold_options_reach_expression_and_description():
    text = render.render(RULES_SOURCE.read_text(encoding="utf-8"), thresholds={
        "p99_latency_seconds": 1.5, "min_confidence": 0.75, "error_ratio": 0.005, "consumer_lag": 50000,
        "stale_seconds": 1800})
    rules = {r.get("alert"): r for g in yaml.safe_load(text)["groups"] for r in g["rules"]}

    def both(alert, in_expr, in_description):
        assert in_expr in rules[alert]["expr"], rules[alert]["expr"]
        assert in_description in rules[alert]["annotations"]["description"], rules[alert]["annotations"]["description"]

    both("NlpHighP99Latency", ") > 1.5", "above 1.5s for 10 minutes")
    both("NlpLowMeanConfidence", "< 0.75", "below 0.75 for 15 minutes")
    both("NlpHighErrorRate", "> 0.005", "threshold 0.5%")
    both("NlpmonConsumerLagHigh", "> 50000", "threshold 50000")
    both("NlpWindowsStale", ") > 1800\n", "threshold 30 minutes")
    for bad, message in (({"error_ratio": 1.0}, "below 1"), ({"min_confidence": 1.5}, "at most 1"),
                         ({"stale_seconds": 0}, "above 0"), ({"consumer_lag": 10.5}, "messages"),
                         ({"latency": 1}, "unknown")):
        with pytest.raises(ValueError, match=message):
            render.render(RULES_SOURCE.read_text(encoding="utf-8"), thresholds=bad)


@pytest.mark.integration
def test_rules_rendered_with_every_option_pass_promtool(tmp_path):
    text = render.render(RULES_SOURCE.read_text(encoding="utf-8"), selector=OTHER_SELECTOR, runbook_url=OTHER_RUNBOOKS,
                         keep_labels=["namespace", "cluster"], severities={"NlpInputDrift": "warning"},
                         thresholds={"p99_latency_seconds": 0.75, "stale_seconds": 1234})
    (tmp_path / "rules.yml").write_text(text, encoding="utf-8")
    result = run(tool("promtool"), "check", "rules", str(tmp_path / "rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_cli_takes_the_options(tmp_path):
    out = tmp_path / "rules.yml"
    result = run("python3", str(ALERTS / "render.py"), "--keep-labels", "namespace,cluster", "--severity",
                 "NlpInputDrift=warning", "--error-ratio", "0.02", "--consumer-lag", "500", "-o", str(out))
    assert result.returncode == 0, result.stderr
    rules = {r.get("alert"): r for g in yaml.safe_load(out.read_text(encoding="utf-8"))["groups"] for r in g["rules"]}
    assert rules["NlpInputDrift"]["labels"]["severity"] == "warning"
    assert rules["NlpHighErrorRate"]["expr"].endswith("> 0.02") and rules["NlpmonConsumerLagHigh"]["expr"].endswith("> 500")
    assert "sum by (topic, namespace, cluster)" in out.read_text(encoding="utf-8")
    result = run("python3", str(ALERTS / "render.py"), "--severity", "NlpInputDrift", "-o", str(out))
    assert result.returncode == 2 and "NAME=VALUE" in result.stderr
