#!/usr/bin/env python3
"""Render nlpmon's Prometheus rules from their one source, alerts/src/nlpmon.rules.yml (a small mixin).

Standard library only, so it runs wherever the rules are installed (no virtual environment, no jsonnet).

    python3 alerts/render.py                                   # the default, as committed in alerts/
    python3 alerts/render.py --selector 'job="ml/nlpmon"' \\
        --runbook-url https://git.example.org/ml/nlpmon/-/blob/main/docs/runbooks.md \\
        --report-url https://nlpmon-report.ml.example.org -o nlpmon.rules.yml
    python3 alerts/render.py --format prometheusrule --rule-label release=kube-prometheus-stack -o rule.yaml

Options: the selector, the runbook URL, the report server's URL (the model alerts' ``report_url``), the labels every aggregation keeps (--keep-labels, default namespace),
each alert's severity (--severity NAME=LEVEL) and the thresholds (--p99-latency-seconds, --min-confidence,
--error-ratio, --consumer-lag, --stale-seconds, --realised-accuracy-margin, --realised-min-labelled).
``--format prometheusrule`` writes the same rules as a prometheus-operator ``PrometheusRule`` object.

``make generated`` rewrites alerts/nlpmon.rules.yml and the overlay's PrometheusRule with the defaults;
tests/test_alerts.py checks that the committed files equal a fresh default render and that other options pass
``promtool check rules``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["DEFAULT_SELECTOR", "DEFAULT_RUNBOOK_URL", "DEFAULT_REPORT_URL", "DEFAULT_KEEP_LABELS", "DEFAULT_THRESHOLDS", "SEVERITIES",
           "SOURCE", "PROMETHEUS_RULE_OUTPUT", "render", "parse_selector", "prometheus_rule", "alert_severities"]

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "src" / "nlpmon.rules.yml"
DEFAULT_OUTPUT = HERE / "nlpmon.rules.yml"
# The monitoring overlay's copy of the rules as a PrometheusRule (`make generated`).
PROMETHEUS_RULE_OUTPUT = HERE.parent / "deploy" / "kubernetes" / "overlays" / "monitoring" / "prometheusrule.yaml"
DEFAULT_SELECTOR = 'job="nlpmon"'
# A placeholder for where the repository is hosted: installations pass their own (--runbook-url).
DEFAULT_RUNBOOK_URL = "https://github.com/nlpmon/nlpmon/blob/main/docs/runbooks.md"
# Where the on-call's browser reaches `nlpmon report serve` (docs/report.md): the drift and accuracy alerts link
# its report of the alert's model and version. The default fits `kubectl port-forward svc/nlpmon-report 8080`
# and a server run locally; installations pass their ingress (--report-url), as the Grafana dashboard's
# report_url variable.
DEFAULT_REPORT_URL = "http://localhost:8080"
# NlpRealisedAccuracyLow (docs/runbooks.md): how far below its baseline realised accuracy may fall, and how many
# labelled predictions a window needs before it counts (--realised-accuracy-margin, --realised-min-labelled).
DEFAULT_REALISED_MARGIN = 0.05
DEFAULT_REALISED_MIN_LABELLED = 100
# Labels every aggregation keeps besides its own (--keep-labels): the Kubernetes namespace, so that one model
# name in two namespaces stays two alerts. A cluster label (Thanos, federation) is added here when there is one.
DEFAULT_KEEP_LABELS = ("namespace",)
# Thresholds (docs/runbooks.md says how to tune each): NlpHighP99Latency, NlpLowMeanConfidence, NlpHighErrorRate,
# NlpmonConsumerLagHigh, NlpWindowsStale.
DEFAULT_THRESHOLDS = {"p99_latency_seconds": 0.5, "min_confidence": 0.6, "error_ratio": 0.01,
                      "consumer_lag": 10000, "stale_seconds": 900}
SEVERITIES = ("critical", "warning", "info")
# Labels the rules group by already, or that must not be merged into a grouping.
_OWN_LABELS = {"model", "version", "le", "job", "instance", "topic", "partition", "reason", "__name__"}
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# One PromQL label matcher with a double-quoted value: name, operator, value (escapes kept as written).
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\\n]|\\.)*)"\s*')
_PARAM = re.compile(r"\$\{([a-z0-9_]+)\}")


def parse_selector(selector: str) -> list[tuple[str, str, str]]:
    """Return the matchers of ``selector`` (``name="v",other=~"re"``) as (name, op, value); ValueError if bad.

    Values must be double-quoted. ``{{``/``}}`` are refused: the selector is also written into annotation
    text, where Prometheus would read them as a template action.
    """
    if "{{" in selector or "}}" in selector:
        raise ValueError(f"the selector {selector!r} contains '{{{{' or '}}}}', which Prometheus's annotation "
                         "templates would read as an action")
    body = selector.strip()
    if body.startswith("{") and body.endswith("}"):
        raise ValueError(f"give the selector's matchers without braces: {body[1:-1]!r}, not {selector!r}")
    matchers, pos = [], 0
    while True:
        m = _MATCHER.match(body, pos)
        if m is None:
            raise ValueError(f"the selector {selector!r} is not a comma-separated list of label matchers "
                             'with double-quoted values, like job="nlpmon",namespace="ml"')
        matchers.append(m.groups())
        pos = m.end()
        if pos == len(body):
            break
        if body[pos] != ",":
            raise ValueError(f"expected ',' after {body[:pos]!r} in the selector {selector!r}")
        pos += 1
    if all(op in ("!=", "!~") or (op == "=~" and value in ("", ".*")) for _, op, value in matchers):
        raise ValueError(f"the selector {selector!r} matches everything: give at least one matcher that "
                         'selects nlpmon, such as job="nlpmon"')
    return matchers


def _check_runbook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the runbook URL must be absolute (http or https), so that it is a link in Slack "
                         f"and PagerDuty: {url!r}")
    if parts.fragment or url.endswith("#"):
        raise ValueError(f"the runbook URL must have no '#fragment': each alert appends its own ({url!r})")
    if any(c in url for c in ' "\n{}'):
        raise ValueError(f"the runbook URL contains a space, quote or brace: {url!r}")
    return url


def _check_report_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the report URL must be absolute (http or https), so that it is a link in Slack "
                         f"and PagerDuty: {url!r}")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(f"the report URL is the server's base: no '?query' or '#fragment' ({url!r}); each "
                         "alert appends /report?model=...&version=...")
    if any(c in url for c in ' "\n{}\\'):
        raise ValueError(f"the report URL contains a space, quote, backslash or brace: {url!r}")
    return url.rstrip("/")


def _check_realised(margin: float, min_labelled: int) -> dict[str, str]:
    if not 0 < margin < 1:
        raise ValueError(f"the realised-accuracy margin must be between 0 and 1 (a share), got {margin!r}")
    if isinstance(min_labelled, bool) or not isinstance(min_labelled, int) or min_labelled < 1:
        raise ValueError(f"the realised-accuracy minimum labelled count must be an integer >= 1, got {min_labelled!r}")
    return {"realised_accuracy_margin": repr(float(margin)), "realised_min_labelled": str(min_labelled)}


def _check_keep_labels(labels) -> dict[str, str]:
    labels = tuple(labels)
    for label in labels:
        if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
            raise ValueError(f"--keep-labels: {label!r} is not a label name")
        if label in _OWN_LABELS:
            raise ValueError(f"--keep-labels: the rules group by {label!r} already, or must not keep it")
    if len(set(labels)) != len(labels):
        raise ValueError(f"--keep-labels: a label is listed twice in {','.join(labels)!r}")
    return {"keep": "".join(f", {label}" for label in labels),
            "keep_printf": "".join(f",{label}='%s'" for label in labels),
            "keep_args": "".join(f" $labels.{label}" for label in labels)}


def _number(value: float) -> str:
    return f"{value:g}"


def _check_thresholds(thresholds: dict) -> dict[str, str]:
    unknown = set(thresholds) - set(DEFAULT_THRESHOLDS)
    if unknown:
        raise ValueError(f"unknown thresholds {sorted(unknown)}; known: {sorted(DEFAULT_THRESHOLDS)}")
    t = {**DEFAULT_THRESHOLDS, **thresholds}
    for name, value in t.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"the threshold {name} must be a number above 0, got {value!r}")
    if not t["min_confidence"] <= 1:
        raise ValueError(f"the minimum mean confidence must be at most 1, got {t['min_confidence']!r}")
    if not t["error_ratio"] < 1:
        raise ValueError(f"the error ratio must be below 1 (a share, 0.01 is 1%), got {t['error_ratio']!r}")
    if t["consumer_lag"] != int(t["consumer_lag"]):
        raise ValueError(f"the consumer lag is a number of messages, got {t['consumer_lag']!r}")
    latency, stale = t["p99_latency_seconds"], t["stale_seconds"]
    return {
        "latency_p99_seconds": _number(latency),
        "latency_p99_text": f"{latency * 1000:g}ms" if latency < 1 else f"{latency:g}s",
        "min_confidence": _number(t["min_confidence"]), "min_confidence_text": f"{t['min_confidence']:.2f}",
        "error_ratio": _number(t["error_ratio"]), "error_ratio_text": f"{t['error_ratio'] * 100:g}%",
        "consumer_lag": str(int(t["consumer_lag"])),
        "stale_seconds": _number(stale),
        "stale_text": f"{stale / 60:g} minutes" if stale % 60 == 0 else f"{stale:g} seconds",
    }


_ALERT_LINE = re.compile(r"^\s*- alert: (\w+)\s*$")
_SEVERITY_LINE = re.compile(r"^(\s*severity: )(\w+)\s*$")


def alert_severities(rules: str) -> dict[str, str]:
    """Alert name -> its ``severity`` label in the rule file (or source) ``rules``."""
    found, alert = {}, None
    for line in rules.splitlines():
        if m := _ALERT_LINE.match(line):
            alert = m.group(1)
        elif alert and (m := _SEVERITY_LINE.match(line)):
            found[alert] = m.group(2)
            alert = None
    return found


def _set_severities(rules: str, severities: dict[str, str]) -> str:
    known = alert_severities(rules)
    for name, level in severities.items():
        if name not in known:
            raise ValueError(f"--severity: no alert {name!r}; the alerts are {', '.join(sorted(known))}")
        if level not in SEVERITIES:
            raise ValueError(f"--severity {name}={level}: the severity must be one of {', '.join(SEVERITIES)}")
    out, alert = [], None
    for line in rules.splitlines(keepends=True):
        if m := _ALERT_LINE.match(line):
            alert = m.group(1)
        elif alert and (m := _SEVERITY_LINE.match(line)):
            if alert in severities:
                line = f"{m.group(1)}{severities[alert]}\n"
            alert = None
        out.append(line)
    return "".join(out)


def render(source: str, *, selector: str = DEFAULT_SELECTOR, runbook_url: str = DEFAULT_RUNBOOK_URL,
           report_url: str = DEFAULT_REPORT_URL,
           realised_margin: float = DEFAULT_REALISED_MARGIN,
           realised_min_labelled: int = DEFAULT_REALISED_MIN_LABELLED,
           keep_labels=DEFAULT_KEEP_LABELS, severities: dict[str, str] | None = None,
           thresholds: dict[str, float] | None = None) -> str:
    """Return the rule file for ``selector``, ``runbook_url`` and ``report_url`` (and the realised-accuracy
    alert's margin and minimum labelled count, the labels aggregations keep, severities by alert name and the
    thresholds named in DEFAULT_THRESHOLDS) from the text of the source file."""
    matchers = parse_selector(selector)
    promql = ",".join(f'{name}{op}"{value}"' for name, op, value in matchers)
    # Inside a Go template's `printf "..."`: a Go string literal (\ and " escaped) that is a format (% doubled).
    in_printf = promql.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    params = {"selector": promql, "selector_printf": in_printf, "runbook_url": _check_runbook_url(runbook_url),
              "report_url": _check_report_url(report_url),
              **_check_realised(realised_margin, realised_min_labelled), **_check_keep_labels(keep_labels),
              **_check_thresholds(thresholds or {})}

    def substitute(m: re.Match) -> str:
        if m.group(1) not in params:
            raise ValueError(f"unknown parameter ${{{m.group(1)}}} in the rules source")
        return params[m.group(1)]

    start = re.search(r"^groups:", source, flags=re.M)
    if start is None:
        raise ValueError("the rules source has no top-level 'groups:'")
    body = source[start.start():]  # the source's header explains the parameters; the output has its own
    header = (
        "# GENERATED by alerts/render.py from alerts/src/nlpmon.rules.yml -- edit the source, then `make generated`.\n"
        f"#   selector:    {promql}\n"
        f"#   runbook URL: {runbook_url}\n"
        f"#   report URL:  {params['report_url']}\n"
        f"#   kept labels: {', '.join(keep_labels) or '(none)'}\n"
        f"#   thresholds:  {', '.join(f'{k} {v:g}' for k, v in {**DEFAULT_THRESHOLDS, **(thresholds or {})}.items())}\n"
        + (f"#   severities:  {', '.join(f'{k}={v}' for k, v in sorted(severities.items()))}\n" if severities else "")
        +
        "#\n"
        "# nlpmon's Prometheus recording and alerting rules. Load with `rule_files: [\"<repo>/alerts/*.yml\"]`: only\n"
        "# rule files live directly in alerts/ (promtool unit tests: alerts/tests/, the rules' source: alerts/src/,\n"
        "# an Alertmanager example: alerts/alertmanager/alertmanager.yml).\n"
        "# Metric names and labels: docs/metrics.md. Thresholds, how to tune them, severities: docs/runbooks.md.\n"
        "# Severities: critical pages, warning opens a ticket, info notifies no one (alertmanager.yml).\n\n"
    )
    rendered = _PARAM.sub(substitute, body)
    if "${" in rendered:
        line = next(ln for ln in rendered.splitlines() if "${" in ln)
        raise ValueError(f"a parameter is not written ${{name}} in the rules source: {line.strip()!r}")
    return header + _set_severities(rendered, severities or {})


def prometheus_rule(rules: str, *, name: str = "nlpmon", labels: dict[str, str] | None = None) -> str:
    """Return the rule file ``rules`` (a :func:`render` result) as a prometheus-operator ``PrometheusRule``: the
    same groups under ``spec``, its header kept as the object's comment."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
        raise ValueError(f"the PrometheusRule name must be a DNS label (lower case, digits, '-'): {name!r}")
    labels = {"app.kubernetes.io/name": "nlpmon", **(labels or {})}
    for key in labels:
        if not re.fullmatch(r"([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", key):
            raise ValueError(f"not a Kubernetes label key: {key!r}")
    start = re.search(r"^groups:", rules, flags=re.M)
    options = rules[:rules.index("#\n")]  # the GENERATED line and the options of the rendering
    header = options + (
        "#\n# nlpmon's Prometheus recording and alerting rules (alerts/nlpmon.rules.yml) as a PrometheusRule for the\n"
        "# prometheus-operator (`render.py --format prometheusrule`): the same groups under spec. The operator's\n"
        "# Prometheus loads it when its ruleSelector matches the labels below (kube-prometheus-stack: add\n"
        "# release=<its release name> with --rule-label). Thresholds and severities: docs/runbooks.md.\n")
    body = "".join(f"  {line}" if line.strip() else line for line in rules[start.start():].splitlines(keepends=True))
    # json.dumps: a JSON string is a YAML string, so any label value stays a string.
    label_lines = "".join(f"    {key}: {json.dumps(value)}\n" for key, value in sorted(labels.items()))
    return (header + "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n"
            f"  name: {name}\n  labels:\n{label_lines}spec:\n{body}")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render nlpmon's Prometheus rules from alerts/src/nlpmon.rules.yml.")
    parser.add_argument("--selector", default=DEFAULT_SELECTOR,
                        help=f"label matchers selecting nlpmon's series, without braces (default: {DEFAULT_SELECTOR})")
    parser.add_argument("--runbook-url", default=DEFAULT_RUNBOOK_URL,
                        help="absolute URL of docs/runbooks.md; alerts append #<alert name> "
                             f"(default: {DEFAULT_RUNBOOK_URL})")
    parser.add_argument("--report-url", default=DEFAULT_REPORT_URL,
                        help="base URL of nlpmon report serve as the on-call's browser reaches it; the drift and "
                             "accuracy alerts carry report_url = BASE/report?model=M&version=V "
                             f"(default: {DEFAULT_REPORT_URL})")
    parser.add_argument("--realised-accuracy-margin", type=float, default=DEFAULT_REALISED_MARGIN,
                        help="NlpRealisedAccuracyLow fires when realised accuracy is this far below its baseline "
                             f"(default: {DEFAULT_REALISED_MARGIN})")
    parser.add_argument("--realised-min-labelled", type=int, default=DEFAULT_REALISED_MIN_LABELLED,
                        help="... in a window with at least this many labelled predictions "
                             f"(default: {DEFAULT_REALISED_MIN_LABELLED})")
    parser.add_argument("--keep-labels", default=",".join(DEFAULT_KEEP_LABELS),
                        help="comma-separated labels every aggregation keeps besides its own, e.g. namespace,cluster; "
                             f"'' for none (default: {','.join(DEFAULT_KEEP_LABELS)})")
    parser.add_argument("--severity", action="append", type=_key_value, default=[], metavar="ALERT=LEVEL",
                        help="set an alert's severity (critical, warning or info), e.g. NlpInputDrift=warning; "
                             "repeatable (default: the severities in alerts/src/nlpmon.rules.yml, docs/runbooks.md)")
    for name, flag, help_text in (
            ("p99_latency_seconds", "--p99-latency-seconds", "NlpHighP99Latency: p99 latency above this many seconds"),
            ("min_confidence", "--min-confidence", "NlpLowMeanConfidence: mean confidence of a window below this"),
            ("error_ratio", "--error-ratio", "NlpHighErrorRate: share of prediction events with an error above this"),
            ("consumer_lag", "--consumer-lag", "NlpmonConsumerLagHigh: messages behind on a topic above this"),
            ("stale_seconds", "--stale-seconds", "NlpWindowsStale: latest closed window older than this many seconds")):
        kind = int if name == "consumer_lag" else float
        parser.add_argument(flag, dest=name, type=kind, default=DEFAULT_THRESHOLDS[name],
                            help=f"{help_text} (default: {DEFAULT_THRESHOLDS[name]})")
    parser.add_argument("--format", choices=("rules", "prometheusrule"), default="rules",
                        help="a Prometheus rule file, or the same rules as a prometheus-operator PrometheusRule "
                             "object (default: rules)")
    parser.add_argument("--name", default="nlpmon", help="the PrometheusRule's name (default: nlpmon)")
    parser.add_argument("--rule-label", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                        help="a label of the PrometheusRule, e.g. the one your Prometheus' ruleSelector matches "
                             "(kube-prometheus-stack: release=<its release name>); repeatable")
    parser.add_argument("-o", "--output", default=None,
                        help="file to write, '-' for stdout (default: alerts/nlpmon.rules.yml, or with --format "
                             "prometheusrule deploy/kubernetes/overlays/monitoring/prometheusrule.yaml)")
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = str(DEFAULT_OUTPUT if args.format == "rules" else PROMETHEUS_RULE_OUTPUT)
    try:
        text = render(SOURCE.read_text(encoding="utf-8"), selector=args.selector, runbook_url=args.runbook_url,
                      report_url=args.report_url,
                      realised_margin=args.realised_accuracy_margin, realised_min_labelled=args.realised_min_labelled,
                      keep_labels=[label.strip() for label in args.keep_labels.split(",") if label.strip()],
                      severities=dict(args.severity),
                      thresholds={name: getattr(args, name) for name in DEFAULT_THRESHOLDS})
        if args.format == "prometheusrule":
            text = prometheus_rule(text, name=args.name, labels=dict(args.rule_label))
    except ValueError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
