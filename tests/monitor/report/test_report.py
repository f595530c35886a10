"""The report: its data read from a real store, the sentences it opens with, the page it renders."""

from __future__ import annotations

import dataclasses
import html
import re

import pytest

from detectors.evidence import quantile_sketch
from monitor.ingest.reference import save_profile
from monitor.report import NotFound, ReportData, load_report, render_report
from monitor.report.summary import headline, sentences
from sinks.sql import SqlStore
from tests.fixtures import report_data
from tests.fixtures.report_data import HOSTILE_TOKEN, MODEL, fill_store


def lead(page: str) -> str:
    return html.unescape(re.search(r'<p class="lead[^"]*" id="lead">(.*?)</p>', page).group(1))


def test_the_lead_says_what_changed_since_when_and_by_how_much(drifted):
    store, info = drifted
    data = load_report(store, model=MODEL)
    assert data.version == "3" and len(data.windows) == 48 and data.segment is None
    assert data.windows[data.focus][0]["window_start"] == info["last"]  # the newest drifted window
    text = lead(render_report(data))
    since = info["first_drifted"][11:16]
    assert text.startswith(f"Input drift since {since} (confidence, input flagged): texts are longer (char_length median ")
    ref, now = re.search(r"char_length median ([\d.]+) -> ([\d.]+)", text).groups()
    assert float(now) > 1.8 * float(ref)  # the window's texts are 2.3x longer
    assert "tokens battery, headset, charger up 36x" in text
    assert "tokens food, waiter, dessert down 11x" in text
    assert "confidence down 0.06 (0.88 -> 0.82)" in text
    assert "realised accuracy 0.81 vs 0.90 baseline" in text


def test_a_quiet_window_says_so(drifted):
    store, info = drifted
    data = load_report(store, model=MODEL, window=report_data.START_MS)
    assert data.drift_onset() is None
    assert headline(data) == "No drift in the window of 10:00."
    assert not any("tokens" in s for s in sentences(data))


def test_the_page_is_self_contained_escaped_and_every_chart_has_data(drifted):
    store, _ = drifted
    page = render_report(load_report(store, model=MODEL))
    # Nothing is fetched: no tag loads anything from anywhere (plotly.js is inlined).
    assert re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=", page) == []
    assert page.count("<script>") == 2 and len(page) < 6_000_000
    # A hostile token is shown as text, never run: escaped in the table, \u003c-escaped in the chart JSON.
    assert HOSTILE_TOKEN not in page
    assert html.escape(HOSTILE_TOKEN) in page and "\\u003cscript\\u003e" in page
    charts = re.findall(r'<div class="chart" id="chart\d+" data-traces="(\d+)" data-points="(\d+)">', page)
    assert len(charts) == int(re.search(r'data-charts="(\d+)"', page).group(1)) >= 10
    assert all(int(t) > 0 and int(p) > 0 for t, p in charts)
    # The exemplars: pointers and the command that fetches them, exactly.
    assert f"nlpmon examples --model sentiment --window {load_report(store, model=MODEL).windows[-1][0]['window_start']}" in page
    assert "prediction-logs/0@" in page
    # The segments table: the drift is in segment fr only.
    row = re.search(r"<tr><td>fr</td><td class=\"n\">48</td><td class=\"n\">(\d+)</td><td>([^<]*)</td>", page)
    assert row.groups() == ("12", "char_length, word_count, oov_rate, confidence")


def test_a_segment_report_and_a_period(drifted):
    store, info = drifted
    fr = load_report(store, model=MODEL, segment="fr")
    assert fr.segment == "fr" and fr.segments == {} and fr.labels == ()
    assert fr.windows[fr.focus][1] is None  # segments carry no evidence here: the page says so
    assert "has no stored evidence" in render_report(fr)
    start = report_data.START_MS + 10 * report_data.FIVE_MIN
    part = load_report(store, model=MODEL, since=start, until=start + 5 * report_data.FIVE_MIN)
    assert len(part.windows) == 5 and len(part.labels) == 5


@pytest.mark.parametrize("kwargs, error, match", [
    ({"model": "nope"}, NotFound, "no stored windows for model 'nope'"),
    ({"model": MODEL, "version": "9"}, NotFound, r"version '9' \(stored: 3\)"),
    ({"model": MODEL, "segment": "zz"}, NotFound, "segment 'zz'"),
    ({"model": MODEL, "window": "2025-11-25T10:02:00Z"}, NotFound, "no window starting at"),
    ({"model": MODEL, "since": "2030-01-01T00:00:00Z"}, NotFound, "in this period"),
    ({"model": MODEL, "window": "2025-11-25T10:00:00Z", "since": "1h"}, ValueError, "not both"),
    ({"model": MODEL, "since": "yesterday"}, ValueError, "since 'yesterday' is not a time"),
    ({"model": MODEL, "since": 1_764_064_800_000, "until": 1_764_064_800_000}, ValueError, "until must be after"),
    ({"model": ""}, ValueError, "model is required"),
])  # fmt: skip
def test_unknown_things_are_not_found_and_bad_parameters_are_value_errors(drifted, kwargs, error, match):
    store, _ = drifted
    with pytest.raises(error, match=match):
        load_report(store, **kwargs)


def test_without_a_store_profile_the_file_is_the_reference_else_the_window_side_only(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'x.db'}")
    store.create_schema()
    w = report_data.window(0, drifted=True)
    store.commit("g", results=[w], checkpoints={})
    alone = load_report(store, model=MODEL)
    assert alone.reference == {} and "No reference profile: the window side only." in render_report(alone)
    save_profile(report_data.profile(), tmp_path / "ref.json")
    given = load_report(store, model=MODEL, profile=tmp_path / "ref.json")
    assert given.reference["feature:char_length"].n == 5000 and given.reference_note == "profile file ref.json"
    assert len(given.reference_points) == 600
    with pytest.raises(ValueError, match="reference profile not found"):
        load_report(store, model=MODEL, profile=tmp_path / "missing.json")
    store.close()


def test_a_notebook_builds_the_same_report_from_plain_objects():
    """The second door: result dicts, evidence and a profile, no store."""
    windows = [report_data.window(i, drifted=i >= 2) for i in range(4)]
    quiet = dataclasses.replace(windows[0].evidence, distributions={"confidence": quantile_sketch([])})
    pairs = [(w.to_dict(), w.evidence) for w in windows[1:]] + [(windows[0].to_dict(), quiet)]
    data = ReportData.build(MODEL, pairs, profile=report_data.profile(), reference_note="a notebook's profile")
    assert [r["window_start"] for r, _ in data.windows] == sorted(r["window_start"] for r, _ in pairs)
    assert data.focus == 3 and data.drift_onset()["window_start"] == windows[2].to_dict()["window_start"]
    page = render_report(data, script="/static/plotly.js")
    assert '<script src="/static/plotly.js"></script>' in page and "Reference: a notebook&#x27;s profile." in page
    with pytest.raises(ValueError, match="no window starting at"):
        ReportData.build(MODEL, pairs, focus_start="1999-01-01T00:00:00.000Z")


def test_without_a_version_a_window_is_described_in_its_own_version(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'v.db'}")
    store.create_schema()
    old, new = report_data.window(0, drifted=False), report_data.window(1, drifted=True)
    store.commit("g", results=[old, dataclasses.replace(new, version="4")], checkpoints={})
    assert load_report(store, model=MODEL, window=old.window_start_ms).version == "3"
    newest = load_report(store, model=MODEL)
    assert newest.version == "4" and [r["version"] for r, _ in newest.windows] == ["4"]
    assert newest.notes == ("Version 4 (the newest window's); also stored in this period: 3.",)
    store.close()
