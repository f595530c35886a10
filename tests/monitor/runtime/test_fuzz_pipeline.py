"""Hostile records through the whole pipeline: file source -> decode -> features -> windows -> sinks -> store.

Hypothesis mixes arbitrary bytes, arbitrary JSON values, mutated valid events and odd Unicode into valid
traffic, at arbitrary batch sizes. Nothing may raise, every record is accounted for (valid + invalid =
records), the windows are still tested, and what the store holds is what the replay printed. The same
property on the real broker is in test_fuzz_daemon.py.
"""

from __future__ import annotations

import io
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import load_config
from monitor.devkit.synth.hostile import hostile_records
from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.jobs.profile_builder import build_profile
from monitor.ingest.reference import save_profile
from monitor.runtime.line_daemon import run_line_source
from sinks.sql import SqlStore
from tests.monitor.ingest.test_fuzz_decode import VALID, json_values, odd_text

FUZZ = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _mutations(draw_base: bytes):
    return st.one_of(
        st.integers(0, len(draw_base)).map(lambda i: draw_base[:i]),
        st.tuples(st.integers(0, len(draw_base) - 1), st.integers(0, 255)).map(
            lambda t: draw_base[: t[0]] + bytes([t[1]]) + draw_base[t[0] + 1 :]),
        st.sampled_from(sorted(VALID)).flatmap(lambda k: json_values.map(lambda v: json.dumps({**VALID, k: v}).encode())),
        odd_text.map(lambda s: json.dumps({**VALID, "text": s}).encode()),
        st.sampled_from([b'{"ts": 1e999, "model": "m", "prediction": "p"}', b"[" * 5000 + b"]" * 5000,
                         b'{"ts": 1764000000000, "model": "sentiment", "prediction": "p", "latency_ms": 1' + b"0" * 400 + b"}"]),
    )


hostile = st.one_of(st.binary(min_size=1, max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                    _mutations(orjson.dumps(VALID)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    write_events(d / "ref.jsonl", generate_events(3000, seed=1, rate_per_s=20))
    profile, _ = build_profile(str(d / "ref.jsonl"))
    save_profile(profile, d / "profile.json")
    valid = [orjson.dumps(e) for e in generate_events(800, seed=2, rate_per_s=20)]
    return d, valid


def _line(raw: bytes) -> bytes:
    # One record per line in a file: a newline inside a hostile record would make it two.
    raw = raw.replace(b"\n", b" ").replace(b"\r", b" ")
    return raw if raw.strip() else b"?"


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 799), hostile), min_size=1, max_size=40), st.sampled_from([1, 7, 64, 1000]))
def test_hostile_records_through_the_file_source_and_store(setup, tmp_path_factory, inserts, batch):
    d, valid = setup
    lines = list(valid)
    for at, raw in sorted(inserts, key=lambda t: -t[0]):
        lines.insert(at, _line(raw))
    work = tmp_path_factory.mktemp("run")
    (work / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    store = f"sqlite:///{work / 's.db'}"
    config = load_config(env={}, overrides={
        "source.kind": "file", "source.path": str(work / "in.jsonl"), "source.batch_size": batch,
        "reference.paths": [str(d / "profile.json")], "window.size_seconds": 20, "window.min_events": 50,
        "window.max_future_seconds": 1e9, "output.store": True, "store.url": store, "metrics.enabled": False})
    out = io.BytesIO()
    summary = run_line_source(config, path=str(work / "in.jsonl"), output=out, serve_metrics=False).to_dict()
    assert summary["lines"] == len(lines)
    assert summary["valid"] + summary["invalid"] == len(lines)
    assert summary["valid"] >= len(valid)  # mutations may be valid events too, never fewer
    printed = [json.loads(x) for x in out.getvalue().splitlines()]
    assert any(r["tested"] for r in printed)
    with SqlStore(store) as s:
        stored = [r for m in sorted({r["model"] for r in printed}) for r in s.history(m)]
    key = lambda r: (r["model"], r["version"], r["window_start"])  # noqa: E731
    assert sorted(stored, key=key) == sorted(printed, key=key)


def test_the_hostile_generator_through_the_file_source(setup, tmp_path):
    d, _ = setup
    raws = [_line(r) for r in hostile_records(5000, seed=4)]
    (tmp_path / "h.jsonl").write_bytes(b"\n".join(raws) + b"\n")
    config = load_config(env={}, overrides={
        "source.kind": "file", "source.path": str(tmp_path / "h.jsonl"), "reference.paths": [str(d / "profile.json")], "window.size_seconds": 20,
        "window.min_events": 50, "window.max_future_seconds": 1e9, "metrics.enabled": False})
    out = io.BytesIO()
    summary = run_line_source(config, path=str(tmp_path / "h.jsonl"), output=out, serve_metrics=False).to_dict()
    assert summary["lines"] == len(raws) and summary["valid"] + summary["invalid"] == len(raws)
    assert summary["invalid"] > 2000 and any(json.loads(x)["tested"] for x in out.getvalue().splitlines())
