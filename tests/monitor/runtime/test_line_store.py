"""File and stdin sources with output.store: the Kafka sidecar's schema, each window exactly once (upserted)."""

from __future__ import annotations

import io
import json

import pytest

from monitor.config import load_config
from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.jobs.profile_builder import build_profile
from monitor.ingest.reference import save_profile
from monitor.runtime.checks import preflight
from monitor.runtime.line_daemon import run_line_source
from sinks.sql import SqlStore
from tests.fixtures.databases import _fresh_postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 's.db'}"
        return
    with _fresh_postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


def _config(tmp_path, path, store_url, **over):
    return load_config(env={}, overrides={
        "source.kind": "file", "source.path": str(path), "reference.paths": [str(tmp_path / "p.json")],
        "window.size_seconds": 30, "window.min_events": 50, "window.max_future_seconds": 1e9,
        "output.store": True, "store.url": store_url, "metrics.enabled": False, **over})


def test_a_replayed_file_stores_each_window_once(tmp_path, store_url):
    write_events(tmp_path / "ref.jsonl", generate_events(2000, seed=1, rate_per_s=20))
    save_profile(build_profile(str(tmp_path / "ref.jsonl"))[0], tmp_path / "p.json")
    events = list(generate_events(3000, seed=2, rate_per_s=20, drift_after=1500))
    lines = [json.dumps(e) for e in events]
    lines[100:100] = ["not json", json.dumps({**events[0], "latency_ms": -1})]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    out = io.BytesIO()
    run_line_source(_config(tmp_path, tmp_path / "in.jsonl", store_url), path=str(tmp_path / "in.jsonl"), output=out,
                    serve_metrics=False)
    printed = [json.loads(x) for x in out.getvalue().splitlines()]
    with SqlStore(store_url) as s:
        first = s.history("sentiment")
    assert len(first) == len(printed) >= 5 and first == sorted(printed, key=lambda r: r["window_start"])
    assert any(r["drifted"] for r in first) and sum(r["invalid"] for r in first) == 1
    # Again, with other batch boundaries (as after a crash, or on purpose): the same rows, not twice as many.
    run_line_source(_config(tmp_path, tmp_path / "in.jsonl", store_url, **{"source.batch_size": 7}),
                    path=str(tmp_path / "in.jsonl"), output=None, serve_metrics=False)
    with SqlStore(store_url) as s:
        assert s.history("sentiment") == first


def test_without_output_store_a_replay_writes_no_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_events(tmp_path / "in.jsonl", generate_events(300, seed=2, rate_per_s=20))
    config = load_config(env={}, overrides={"source.kind": "file", "source.path": str(tmp_path / "in.jsonl"),
                                            "metrics.enabled": False, "window.max_future_seconds": 1e9})
    run_line_source(config, path=str(tmp_path / "in.jsonl"), output=None, serve_metrics=False)
    assert not (tmp_path / "nlpmon.db").exists()


def test_reeval_with_a_line_source_is_refused_at_startup(tmp_path):
    (tmp_path / "in.jsonl").write_text("")
    config = load_config(env={}, overrides={"source.kind": "file", "source.path": str(tmp_path / "in.jsonl"),
                                            "reeval.enabled": True, "reeval.model": "m.onnx", "reeval.tokenizer": "t",
                                            "reeval.data": "d.jsonl"})
    problems = preflight(config)
    assert any(p.startswith("reeval.enabled: re-evaluation runs in the Kafka sidecar only") for p in problems)


def test_a_replayed_file_with_label_events_prints_and_stores_labels_results(tmp_path, store_url):
    from sinks.sql.labels import label_results

    write_events(tmp_path / "ref.jsonl", generate_events(2000, seed=1, rate_per_s=20))
    save_profile(build_profile(str(tmp_path / "ref.jsonl"))[0], tmp_path / "p.json")
    write_events(tmp_path / "in.jsonl", generate_events(3000, seed=2, rate_per_s=20, label_event_share=0.5,
                                                         label_delay_ms=(0, 20_000)))
    config = _config(tmp_path, tmp_path / "in.jsonl", store_url, **{"labels.enabled": True,
                                                                    "labels.max_delay_seconds": 15})
    out = io.BytesIO()
    summary = run_line_source(config, path=str(tmp_path / "in.jsonl"), output=out, serve_metrics=False).to_dict()
    printed = [json.loads(x) for x in out.getvalue().splitlines()]
    windows = [r for r in printed if "result_kind" not in r]
    labels = [r for r in printed if r.get("result_kind") == "labels"]
    assert summary["valid"] == 3000 and summary["labels"] >= 1400  # label events are not predictions
    assert len(labels) == len(windows) >= 5 and [r["predictions"] for r in labels] == [w["events"] for w in windows]
    # the last windows' label periods were not over at the end of the file: flushed partial, after the others
    partial = [r["partial"] for r in labels]
    assert partial == sorted(partial) and 1 <= sum(partial) <= 2
    assert sum(r["labelled"] for r in labels) > 1000
    # the devkit's model is always right, except that an error event predicts nothing: labelled and wrong
    for r in labels:
        assert all(c["correct"] == c["predicted"] for c in r["classes"].values())
    with SqlStore(store_url) as s:
        assert label_results(s, "sentiment") == sorted(labels, key=lambda r: r["window_start"])
