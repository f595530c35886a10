"""Labels results (realised accuracy) in ``nlpmon history`` and ``replay --format table``; none: output unchanged."""

from __future__ import annotations

import dataclasses
import json

import pytest

from monitor.cli import main
from monitor.cli.table import COMPACT_COLUMNS, STREAM_WIDTH, labels_row, stream_cell, window_header
from monitor.devkit.synth.traffic import generate_events, write_events
from sinks.sql import SqlStore
from tests import factories

pytestmark = pytest.mark.integration

LABELS = ["--set", "labels.enabled=true", "--set", "labels.max_delay_seconds=10",
          "--set", "labels.refresh_calibration=true"]


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    d = tmp_path_factory.mktemp("labels")
    write_events(d / "ev.jsonl", generate_events(1500, seed=5, rate_per_s=20, label_event_share=0.5,
                                                 label_delay_ms=(0, 5_000)))
    return d / "ev.jsonl"


def replay(events, tmp_path, name: str, *extra: str) -> tuple[str, list[dict]]:
    """Replay ``events`` into a new SQLite store; return its URL and the results replay wrote."""
    url, out = f"sqlite:///{tmp_path / name}.db", tmp_path / f"{name}.jsonl"
    assert main(["replay", str(events), "-o", str(out), "--window-seconds", "20", "--set", "output.store=true",
                 "--set", f"store.url={url}", *extra]) == 0
    return url, [json.loads(line) for line in out.read_text().splitlines()]


def history(capsys, url: str, *argv: str) -> list[str]:
    capsys.readouterr()
    assert main(["history", "--model", "sentiment", "--store", url, *argv]) == 0
    return capsys.readouterr().out.splitlines()


def test_history_shows_each_windows_labels_result_after_it(events, tmp_path, capsys):
    url, replayed = replay(events, tmp_path, "with", *LABELS)
    stored_labels = [r for r in replayed if r.get("result_kind") == "labels"]
    assert len(stored_labels) == 4 and all(r["labelled"] > 0 for r in stored_labels)
    as_json = [json.loads(line) for line in history(capsys, url, "--format", "json")]
    # Every result replay wrote, each once: window results and labels results alike.
    assert sorted(map(json.dumps, as_json)) == sorted(map(json.dumps, replayed))
    starts = [r["window_start"] for r in as_json]
    assert starts == sorted(starts)
    for i, r in enumerate(as_json):  # a labels result right after its window's own result
        if r.get("result_kind") == "labels":
            assert i > 0 and as_json[i - 1].get("result_kind") is None
            assert as_json[i - 1]["window_start"] == r["window_start"]

    table = history(capsys, url)
    assert table[0] == stream_cell("version") + window_header(wide=False)
    label_lines = [line for line in table if line[STREAM_WIDTH + 1:].split()[2:3] == ["labels"]]
    assert label_lines == [stream_cell("1") + labels_row(r, wide=False) for r in stored_labels]
    assert len(table) == 1 + len(replayed) and max(map(len, table)) <= COMPACT_COLUMNS
    first = stored_labels[0]
    assert (f"labelled={first['labelled']} accuracy={first['accuracy']:.3f} est={first['estimated_accuracy']:.3f} "
            f"[{first['estimated_accuracy_low']:.3f}-{first['estimated_accuracy_high']:.3f}] reliable=") in table[2]
    wide = history(capsys, url, "--wide")
    assert f"predictions={first['predictions']} expired={first['expired']} labelled=" in wide[2]

    # --limit and --since apply to the labels results too; --segment leaves them out (they are per version).
    last = history(capsys, url, "--limit", "1", "--format", "json")
    assert [json.loads(x) for x in last] == [r for r in replayed if r["window_start"] == starts[-1]]
    since = history(capsys, url, "--since", starts[-1], "--format", "json")
    assert since == last
    segment = [json.loads(x) for x in history(capsys, url, "--segment", "", "--format", "json")]
    assert segment and not any(r.get("result_kind") == "labels" for r in segment)


def test_history_without_labels_results_is_the_window_history(events, tmp_path, capsys):
    url, replayed = replay(events, tmp_path, "without")
    assert replayed and not any(r.get("result_kind") for r in replayed)
    with SqlStore(url) as store:
        stored = store.history("sentiment")
    assert [json.loads(line) for line in history(capsys, url, "--format", "json")] == stored
    table = history(capsys, url)
    assert len(table) == 1 + len(stored) and not any(" labels " in line for line in table)


def test_replay_table_has_a_labels_line_per_labels_result(events, tmp_path):
    out = tmp_path / "table.txt"
    assert main(["replay", str(events), "-o", str(out), "--window-seconds", "20", "--format", "table", *LABELS]) == 0
    header, *rows = out.read_text().splitlines()
    labels = [r for r in rows if r.startswith("sentiment/1") and r[STREAM_WIDTH + 1:].split()[2:3] == ["labels"]]
    assert len(rows) == 8 and len(labels) == 4 and max(len(x) for x in [header, *rows]) <= COMPACT_COLUMNS
    assert all("labelled=" in r and " est=" in r for r in labels)


@pytest.mark.parametrize("kw, interval, expected", [
    # An estimate without interval or reliability (made before either existed): only the estimate.
    ({}, {}, "labelled=40 accuracy=0.900 est=0.850"),
    # With its interval, and unreliable: inputs shifted and few labels supported the table.
    ({}, {"estimated_accuracy_low": 0.8, "estimated_accuracy_high": 0.9, "estimate_reliable": False},
     "labelled=40 accuracy=0.900 est=0.850 [0.800-0.900] reliable=no"),
    # No labelled prediction and no estimate: dashes, and a partial result says so.
    ({"accuracy": None, "labelled": 0, "estimate": None, "partial": True}, {}, "labelled=0 accuracy=- est=- partial"),
])
def test_labels_row(kw, interval, expected):
    result = dataclasses.replace(factories.labels(1_764_000_000_000, **kw), **interval)
    line = labels_row(result.to_dict(), wide=False)
    assert line == "2025-11-24 16:00:00 labels  " + expected
