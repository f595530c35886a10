"""The whole stack end to end: traffic on Kafka -> nlpmon -> Prometheus (project rules) -> Alertmanager -> webhook.

Live traffic, stamped with the wall clock, is produced to the test broker: clean for CLEAN_S seconds, then
drifted. ``nlpmon run`` consumes it with windows of WINDOW_S seconds; a real Prometheus (Debian package
``prometheus``) scrapes it every second and evaluates the project's rules, with the drift persistence range
shortened in a checked copy (monitor.devkit.stack.shorten_drift_persistence), and sends alerts to a real Alertmanager
(``prometheus-alertmanager``) running the project's routing, whose receivers point at a webhook server here.

Re-evaluation runs in the daemon on the tiny real ONNX model: once on demand (``POST /reeval``) at the start,
then on drift, with the first run as its baseline.

Asserted through Prometheus' HTTP API and the webhook: every dashboard query returns data (except those listed
in NO_DATA_EXPECTED, each with its reason); NlpInputDrift fires and reaches the page receiver after the drift
starts; no drift alert fires, and nothing is notified, during the clean part.

Without the binaries the test is skipped, except under CI=true, where it fails: CI must not pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from monitor.devkit.stack import (
    DRIFT_ALERTS,
    INSTALL_HINT,
    PERSISTENCE_RULE,
    find_binaries,
    local_alertmanager_config,
    shorten_drift_persistence,
    start_local_stack,
)  # fmt: skip
from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.jobs.profile_builder import build_profile
from monitor.ingest.reference import save_profile
from tests.monitor.runtime.harness import DaemonProcess, wait_until, write_config
from tests.stack.live_traffic import LiveTraffic
from tests.stack.prometheus_api import PrometheusAPI
from tests.stack.webhook import webhook_receiver
from tests.test_grafana import _as_promql, panels

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "alerts"

WINDOW_S = 3  # event-time window of the daemon
RATE_PER_S = 200  # events a second: 600 a window, min_events 200
PERSISTENCE_S = 2 * WINDOW_S  # the rules' [6m] for 300 s windows: more than one window plus a scrape
CLEAN_S = 24  # clean traffic while Prometheus watches: 8 windows
DRIFT_ALERT_TIMEOUT_S = 45  # needs two drifted windows (plus the one straddling the switch) + PERSISTENCE_S
DRIFT_ALERTS_RE = "Nlp.*Drift|NlpConfidenceShift|NlpPredictionClassShift|NlpClassProbabilityShift"

# Dashboard queries that cannot return data here, each with the reason. Keep this minimal: a query listed
# here that does return data fails the test, so the list shrinks as the features land.
NO_DATA_EXPECTED: dict[tuple[str, str], str] = {}
# The traffic logs a (stand-in) embedding per event, so the embedding-drift panels have data too.
EMBEDDING_DIM = 24

# An A/A experiment (an even a/b split of the same model) and shadow predictions for 10% of requests, so the
# experiment and shadow panels have data (docs/experiments.md). Their alerts need minutes (`for:`), so they
# cannot notify during the clean part.
# Label events for 30% of the predictions, a fraction of a second later, joined with a short delay so that
# labels results close during the test and the realised-accuracy panels have data (docs/results.md).
_LABELS = '[labels]\nenabled = true\nmax_delay_seconds = 2\n'
_EXPERIMENT = ('[shadow]\nenabled = true\nttl_seconds = 2\n'
               '[[experiments]]\nname = "e2e-ab"\nmodel = "sentiment"\nvariants = {a = 50, b = 50}\n'
               'metric = "confidence"\nmde = 0.01\n'
               '[[experiments.guardrails]]\nmetric = "latency_p99_ms"\ntolerance = 0.5\nrelative = true\n'
               '[[experiments.guardrails]]\nmetric = "error_rate"\ntolerance = 0.01\n')


@pytest.fixture(scope="session")
def stack_binaries() -> None:
    """Skip (or fail under CI=true) before the broker starts when Prometheus or Alertmanager is missing."""
    prometheus, alertmanager = find_binaries()
    missing = [name for name, path in (("prometheus", prometheus), ("prometheus-alertmanager", alertmanager))
               if path is None]
    if missing:
        message = f"{' and '.join(missing)} not installed ({INSTALL_HINT}; `make test` installs them as root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {message}: the end-to-end stack test must run in CI", pytrace=False)
        pytest.skip(message)


def _short_rules(into: Path) -> str:
    """Copy alerts/*.yml into ``into`` with the drift persistence shortened; return the rule_files glob."""
    into.mkdir()
    rewritten = 0
    for path in sorted(ALERTS.glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        if PERSISTENCE_RULE in text:
            # Raises unless [6m] appears exactly where expected and the drift alerts have no `for:`.
            text = shorten_drift_persistence(text, PERSISTENCE_S)
            assert f"[{PERSISTENCE_S}s]" in text
            rewritten += 1
        (into / path.name).write_text(text, encoding="utf-8")
    assert rewritten == 1, f"{PERSISTENCE_RULE} must be defined in exactly one file of alerts/, not {rewritten}"
    return str(into / "*.yml")


def _profile(tmp_path: Path) -> Path:
    write_events(tmp_path / "ref.jsonl", generate_events(4000, seed=99, rate_per_s=RATE_PER_S, label_share=0.2,
                                                         embedding_dim=EMBEDDING_DIM))
    profile, _ = build_profile(str(tmp_path / "ref.jsonl"))
    save_profile(profile, tmp_path / "profile.json")
    return tmp_path / "profile.json"


def _metrics_port(daemon: DaemonProcess) -> int:
    wait_until(lambda: any(e.get("msg") == "serving metrics" for e in daemon.logs()), 30, "the metrics server",
               daemon)
    url = next(e["url"] for e in daemon.logs() if e.get("msg") == "serving metrics")
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _reeval_section(tiny) -> str:
    # Cooldown shorter than the clean part, so the drift starts a second run (baseline: the first).
    return (f'[reeval]\nenabled = true\nmodel = "{tiny.model_path}"\ntokenizer = "{tiny.tokenizer_dir}"\n'
            f'data = "{tiny.heldout_path}"\nmodel_name = "sentiment"\nmodel_version = "1"\n'
            f'cooldown_seconds = 5\ntimeout_seconds = 60\n')


def _post_reeval(port: int, *, timeout_s: float = 60) -> int:
    """POST /reeval, again while the daemon answers 503 (still starting: the scheduler comes after the broker)."""
    deadline = time.monotonic() + timeout_s
    while True:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/reeval", data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            if e.code != 503 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def test_traffic_to_webhook_end_to_end(stack_binaries, kafka_broker, tiny, tmp_path):
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    rules_glob = _short_rules(tmp_path / "rules")
    profile = _profile(tmp_path)
    topic = kafka_broker.new_topic()
    config = write_config(tmp_path / "nlpmon.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="e2e",
                          store_url=f"sqlite:///{tmp_path / 'store.db'}", profile=profile,
                          extra=_reeval_section(tiny) + _EXPERIMENT + _LABELS)
    env = {"NLPMON_WINDOW_SIZE_SECONDS": str(WINDOW_S), "NLPMON_WINDOW_LATENESS_SECONDS": "0.5",
           "NLPMON_WINDOW_MIN_EVENTS": "200", "NLPMON_LOGGING_LEVEL": "info"}

    with contextlib.ExitStack() as stack:
        hook = stack.enter_context(webhook_receiver())
        daemon = stack.enter_context(DaemonProcess(config, tmp_path / "nlpmon.log", env=env))
        traffic = LiveTraffic(kafka_broker.bootstrap, topic, rate_per_s=RATE_PER_S, seed=1, label_share=0.2,
                              variants={"a": 0.5, "b": 0.5}, shadow_share=0.1, embedding_dim=EMBEDDING_DIM,
                              label_event_share=0.3).start()
        stack.callback(traffic.stop)
        port = _metrics_port(daemon)
        assert _post_reeval(port) == 202  # the first re-evaluation: the baseline of the drift-triggered one
        servers = stack.enter_context(start_local_stack(
            [f"127.0.0.1:{port}"], tmp_path / "stack", rules_glob, scrape_interval_s=1, evaluation_interval_s=1,
            alertmanager_config=local_alertmanager_config(ALERTS / "alertmanager" / "alertmanager.yml",
                                                          webhook_url=hook.url, group_wait_s=1, group_interval_s=2),
        ))
        assert servers is not None and servers.alertmanager, "binaries were found, so both servers must run"
        prom = PrometheusAPI(servers.prometheus)
        watched_from = time.time()
        timings["setup"] = time.monotonic() - t0

        def progress(predicate, timeout, what):
            def check():
                traffic.check()
                return predicate()
            wait_until(check, timeout, what, daemon)

        # Clean part: Prometheus scrapes tested windows of clean traffic; one late event for the late counter.
        progress(lambda: (prom.value('sum(nlp_windows_tested_total{job="nlpmon"})') or 0) >= 1, 30,
                 "Prometheus to scrape a first tested window")
        late = next(generate_events(1, seed=7))
        traffic.send(dict(late, ts=int((time.time() - 10 * WINDOW_S) * 1000), request_id="late-1"))
        tested_before = prom.value('sum(nlp_windows_tested_total{job="nlpmon"})')
        progress(lambda: time.time() >= watched_from + CLEAN_S, CLEAN_S + 5, "the clean part to pass")
        drift_at = traffic.start_drift()
        timings["clean"] = drift_at - watched_from

        # Drift: NlpInputDrift must fire and reach the page receiver (routing by severity).
        progress(lambda: hook.first_firing("NlpInputDrift") is not None, DRIFT_ALERT_TIMEOUT_S,
                 "NlpInputDrift to reach the webhook")
        fired = hook.first_firing("NlpInputDrift")
        timings["drift_to_webhook"] = fired.received_at - drift_at

        # The clean part: windows were tested while Prometheus watched, no drift alert was even pending, and
        # nothing was notified.
        tested_clean = prom.value('sum(nlp_windows_tested_total{job="nlpmon"})', at=drift_at) - tested_before
        assert tested_clean >= CLEAN_S / WINDOW_S - 3, f"only {tested_clean:.0f} windows tested in the clean part"
        during_clean = prom.query_range(f'ALERTS{{alertname=~"{DRIFT_ALERTS_RE}"}}', watched_from, drift_at)
        assert not during_clean, f"drift alerts during the clean part: {[s['metric'] for s in during_clean]}"
        assert not [n for n in hook.notifications if n.received_at < drift_at], "notified during the clean part"

        # The input-drift notification: after the drift, on the page receiver, grouped by model, with values.
        assert fired.path == "/page", f"NlpInputDrift (severity critical) went to {fired.path}"
        assert fired.payload["groupLabels"] == {"model": "sentiment"}
        (alert,) = [a for a in fired.alerts() if a["labels"]["alertname"] == "NlpInputDrift"]
        assert alert["labels"]["severity"] == "critical" and alert["labels"]["version"] == "1"
        description = alert["annotations"]["description"]
        assert "Drifted features: " in description and "Largest KS statistic: " in description, description

        # The drift-triggered re-evaluation, compared with the on-demand one (the accuracy-drop panel).
        progress(lambda: prom.value('count(nlp_reeval_accuracy_drop{job="nlpmon"})') is not None, 60,
                 "Prometheus to scrape the drift-triggered re-evaluation")
        runs = prom.value('sum(nlpmon_reeval_runs_total{job="nlpmon",outcome="success"})')
        assert runs >= 2, f"{runs} successful re-evaluation runs"
        assert prom.value('max(nlp_reeval_accuracy_drop{job="nlpmon"})') == pytest.approx(0.0, abs=1e-9)

        # The live scrape, now carrying every family (windows, drift, re-evaluation, experiments, shadow,
        # daemon, process): promtool check metrics finds nothing to complain about.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            scrape = r.read()
        for family in (b"nlp_window_events", b"nlp_drift_detector_detected", b"nlp_reeval_accuracy_ratio",
                       b"nlp_experiment_samples", b"nlp_shadow_pairs", b"nlpmon_events_consumed_total",
                       b"process_cpu_seconds_total"):
            assert b"\n" + family in scrape, f"{family.decode()} missing from the live scrape"
        lint = subprocess.run([shutil.which("promtool"), "check", "metrics"], input=scrape, capture_output=True,
                              timeout=60)
        assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), (lint.stdout + lint.stderr).decode()

        # Dashboard: every panel query returns data, now that clean and drifted windows were both scraped.
        empty, unexpected = [], []
        for panel in panels():
            for target in panel["targets"]:
                key = (panel["title"], target["refId"])
                result = prom.query(_as_promql(target["expr"]))
                if key in NO_DATA_EXPECTED:
                    if result:
                        unexpected.append(f"{key}: {target['expr']}")
                elif not result:
                    empty.append(f"{key}: {target['expr']}")
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
        assert not unexpected, ("these queries return data now: remove them from NO_DATA_EXPECTED\n"
                                + "\n".join(unexpected))
        timings["total"] = time.monotonic() - t0
        print("stack e2e timings (s):", {k: round(v, 1) for k, v in timings.items()})


def test_no_data_exceptions_are_real_dashboard_queries():
    targets = {(p["title"], t["refId"]): t["expr"] for p in panels() for t in p["targets"]}
    assert set(NO_DATA_EXPECTED) <= set(targets), sorted(set(NO_DATA_EXPECTED) - set(targets))
    for key in NO_DATA_EXPECTED:
        assert "reeval" in targets[key] or "estimated_accuracy" in targets[key], (key, targets[key])
    assert all(re.fullmatch(DRIFT_ALERTS_RE, name) for name in DRIFT_ALERTS)
