"""Re-evaluation inside the real daemon: drift on the broker starts a run of the real worker on a real ONNX model.

The run appears in SQL (``reeval_runs``) and in ``/metrics`` with the figures of the stored result; the
INT8 candidate is compared on the daemon's own sample of logged traffic; ``POST /reeval`` starts another
run whose baseline is the first one. Cooldown, timeout and failure paths are covered with a fake worker in
tests/monitor/reeval/test_reeval_scheduler.py.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.devkit.synth.traffic import generate_events
from sinks.sql import SqlStore

from .harness import DaemonProcess, produce, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def tiny_int8(tiny, tmp_path_factory):
    from monitor.reeval.quantize import quantize_model

    return quantize_model(tiny.model_path, tmp_path_factory.mktemp("int8") / "model_int8.onnx").output


def _runs(url: str) -> list:
    with SqlStore(url) as store:
        return store.reeval_runs("sentiment")


def _samples(port: str) -> dict[tuple[str, tuple], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def _post(port: str, path: str) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_drift_starts_a_stored_and_exported_run_and_post_reeval_another(kafka_broker, profile, tiny, tiny_int8,
                                                                          tmp_path):
    topic = kafka_broker.new_topic(partitions=1)
    store = f"sqlite:///{tmp_path / 'store.db'}"
    # 30 s windows at 20 events/s: two clean windows, then drifted ones.
    events = list(generate_events(2400, seed=5, rate_per_s=20, drift_after=1200))
    cfg = write_config(tmp_path / "nlpmon.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="reeval",
                       store_url=store, profile=profile, extra=(
                           f'[reeval]\nenabled = true\nmodel = "{tiny.model_path}"\ntokenizer = "{tiny.tokenizer_dir}"\n'
                           f'data = "{tiny.heldout_path}"\nmodel_name = "sentiment"\ncooldown_seconds = 3600\n'
                           f'timeout_seconds = 120\ncandidate = "{tiny_int8}"\ntraffic_sample = 200\n'))  # fmt: skip
    produce(kafka_broker.bootstrap, topic, events)
    with DaemonProcess(cfg, tmp_path / "nlpmon.log") as d:
        wait_until(lambda: any(e.get("msg") == "serving metrics" for e in d.logs()), 30, "the HTTP server", d)
        port = next(e["url"].rsplit(":", 1)[1].split("/")[0] for e in d.logs() if e.get("msg") == "serving metrics")
        wait_until(lambda: len(_runs(store)) >= 1, 120,
                   "a drift-triggered re-evaluation run in SQL", d)
        [run] = _runs(store)
        assert (run.trigger, run.outcome, run.version, run.dataset) == ("drift", "success", "1", "heldout"), run.error
        result = run.result
        # The drifted window started it: the stored drift window precedes the run.
        with SqlStore(store) as s:
            drifted = [w for w in s.history("sentiment") if w["drifted"]]
        assert drifted, "a run was triggered but no drifted window is stored"

        # The real model on the real held-out set: the accuracy the fixture measured when it built the model.
        assert result["n"] == tiny.n_heldout
        assert result["accuracy"] == pytest.approx(tiny.heldout_accuracy, abs=1e-9)
        assert run.accuracy == result["accuracy"] and result["accuracy_drop"] is None  # first run: no baseline
        # The candidate, on the held-out data and on the daemon's sample of logged traffic (no text stored).
        traffic = result["candidate"]["traffic"]
        assert traffic["n"] == 200 and 0.0 <= traffic["agreement"] <= 1.0
        assert not any(e["text"] in json.dumps(result) for e in events[-200:])

        labels = (("dataset", "heldout"), ("model", "sentiment"), ("version", "1"))
        wait_until(lambda: ("nlp_reeval_accuracy_ratio", labels) in _samples(port), 10, "the re-evaluation gauges", d)
        m = _samples(port)
        assert m[("nlp_reeval_accuracy_ratio", labels)] == pytest.approx(result["accuracy"])
        assert m[("nlp_reeval_f1", labels)] == pytest.approx(result["macro_f1"])
        assert m[("nlp_reeval_ece", labels)] == pytest.approx(result["ece"])
        assert m[("nlpmon_reeval_runs_total", (("outcome", "success"),))] == 1.0
        assert m[("nlpmon_reeval_running", ())] == 0.0
        # Windows closed before the run get the label-free estimate from its calibration table.
        assert 0.0 <= m[("nlp_estimated_accuracy_ratio", (("model", "sentiment"), ("version", "1")))] <= 1.0

        # On demand, from localhost: a second run, whose baseline is the first stored run.
        code, answer = _post(port, "/reeval")
        assert code == 202 and answer["status"] == "accepted", answer
        wait_until(lambda: len(_runs(store)) == 2, 120, "the on-demand run", d)
        second = _runs(store)[1]
        assert (second.trigger, second.outcome, second.version) == ("on_demand", "success", "unversioned")
        assert second.result["baseline"]["source"] == "first_run" and second.result["baseline"]["run"] == str(run.id)
        assert second.result["accuracy_drop"] == pytest.approx(0.0)  # same model, same data
        estimate = second.result["label_free_estimate"]
        assert estimate["calibration"] == "previous_run" and estimate["calibration_run"] == run.id
        assert estimate["heldout_estimated_accuracy"] == pytest.approx(result["accuracy"])  # its own table
        assert d.stop() == 0, d.log_tail()
    logs = (tmp_path / "nlpmon.log").read_text()
    assert "re-evaluation finished" in logs
    assert not any(e["text"] in logs for e in events if e.get("text"))
