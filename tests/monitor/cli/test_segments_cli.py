"""`reference build --by-segment`, replay with window.by_segment, and `history --segment`, end to end."""

import json

import pytest

from monitor.cli import main
from monitor.cli.reference import segment_output
from monitor.devkit.synth.traffic import generate_events, write_events
from sinks.sql import SqlStore

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("output, segment, expected", [
    ("ref.json", "fr", "ref.segment=fr.json"),
    ("ref", "fr", "ref.segment=fr.json"),  # no suffix: .json added
    ("d/ref.json", "a/b c", "d/ref.segment=a%2Fb%20c.json"),  # any segment name is one file name
])
def test_segment_output_names(output, segment, expected):
    assert segment_output(output, segment) == expected


def test_by_segment_profiles_are_built_used_and_stored(tmp_path, capsys):
    events = list(generate_events(6000, seed=2, rate_per_s=20, drift_after=3000, segments={"en": 0.6, "fr": 0.4},
                                  drift_segments=("fr",)))
    write_events(tmp_path / "ref.jsonl", events[:3000])
    write_events(tmp_path / "live.jsonl", events[3000:])
    store_url = f"sqlite:///{tmp_path / 'n.db'}"
    ref = tmp_path / "ref.json"
    assert main(["reference", "build", str(tmp_path / "ref.jsonl"), "-o", str(ref), "--by-segment",
                 "--store", store_url, "--activate"]) == 0
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["segment_outputs"] == [segment_output(str(ref), s) for s in ("en", "fr")]
    en = json.loads(open(segment_output(str(ref), "en")).read())
    assert en["segment"] == "en" and en["model"] == "sentiment" and en["events"] == summary["segments"]["en"]
    assert "segment" not in json.loads(ref.read_text())
    with SqlStore(store_url) as store:
        assert sorted(store.active_profiles()) == ["sentiment", "sentiment#segment=en", "sentiment#segment=fr"]

    out = tmp_path / "results.jsonl"
    refs = [str(ref), segment_output(str(ref), "en"), segment_output(str(ref), "fr")]
    args = ["replay", str(tmp_path / "live.jsonl"), "-o", str(out), "--set", "window.by_segment=true",
            "--set", "window.size_seconds=30", "--set", "window.min_events=100"]
    assert main(args + [a for r in refs for a in ("-r", r)]) == 0
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["segment"] for r in results} == {"en", "fr"}
    tested = [r for r in results if r["tested"]]
    assert any(r["drifted"] for r in tested if r["segment"] == "fr")
    assert not any(r["drifted"] for r in tested if r["segment"] == "en")

    # The results into the store, then history of one segment.
    from monitor.config import load_config
    from monitor.ingest.reference import load_profile
    from monitor.pipeline import Pipeline, Record
    from monitor.windowing.segments import profile_name

    profiles = {profile_name(p.model, p.segment): p for p in map(load_profile, refs)}
    config = load_config(env={}, overrides={"source.kind": "stdin", "window.by_segment": True,
                                            "window.size_seconds": 30, "window.min_events": 100})
    pipeline = Pipeline(config, profiles=profiles)
    records = [Record(line) for line in (tmp_path / "live.jsonl").read_bytes().splitlines()]
    closed = list(pipeline.process(records).windows) + list(pipeline.flush().windows)
    with SqlStore(store_url) as store:
        store.commit("g", results=closed, checkpoints={})
    capsys.readouterr()
    assert main(["history", "--model", "sentiment", "--segment", "fr", "--store", store_url, "--format", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines and {r["segment"] for r in lines} == {"fr"}
    assert len(lines) == sum(r.segment == "fr" for r in closed)
    assert main(["history", "--model", "sentiment", "--store", store_url]) == 0
    table = capsys.readouterr().out
    assert table.startswith("ver/segment") and "1/en" in table and "1/fr" in table
