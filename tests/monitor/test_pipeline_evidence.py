"""The evidence kept with every window (docs/evidence.md): deterministic whatever the batching and across a
restart, bounded, and holding no text but tokens over the privacy floor."""

from __future__ import annotations

import json
import logging

import msgspec
import numpy as np
import pytest

from monitor.config import load_config
from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.jobs.profile_builder import build_profile
from monitor.pipeline import Pipeline, Record

MARKER = "Zyxmarkerq"  # in a few texts of each window: fewer than the floor


def cfg(**over):
    base = {"source.kind": "stdin", "window.size_seconds": 60, "window.lateness_seconds": 10, "window.min_events": 100,
            "window.max_future_seconds": 1e9, "window.reservoir_size": 500}
    base.update(over)
    return load_config(env={}, overrides=base)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    d = tmp_path_factory.mktemp("evidence")
    events = list(generate_events(7000, seed=3, rate_per_s=20, drift_after=5500))
    write_events(d / "ref.jsonl", events[:3000])
    profile, _ = build_profile(str(d / "ref.jsonl"))
    live = events[3000:]
    for i in range(0, len(live), 600):  # 2 events of each 1200-event window carry the marker
        live[i] = dict(live[i], text=f"{live[i]['text']} {MARKER}")
    records = [Record(json.dumps(e).encode(), f"events.jsonl:{i + 1}") for i, e in enumerate(live)]
    rng = np.random.default_rng(0)  # bounded disorder within lateness, as in test_pipeline
    order = np.argsort(np.arange(len(records)) + rng.integers(0, 20, len(records)))
    return profile, [records[i] for i in order]


def _run(pipeline, records, batch):
    out = []
    for lo in range(0, len(records), batch):
        out += pipeline.process(records[lo : lo + batch]).windows
    return out


def _evidence(results):
    return [(r.window_start_ms, r.evidence.to_dict()) for r in results]


def test_profile_holds_reference_tokens_over_the_floor(traffic):
    profile, _ = traffic
    tokens = profile.tokens
    assert tokens["source"] == "words" and tokens["min_events"] == 5 and tokens["events"] > 2900
    assert tokens["counts"] and min(tokens["counts"].values()) >= 5
    again = type(profile).from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again.tokens == tokens
    old = profile.to_dict()
    del old["tokens"]  # a profile built before the evidence: no token shifts
    assert type(profile).from_dict(old).tokens is None


@pytest.mark.parametrize("batch", [7, 1000])
def test_evidence_does_not_depend_on_batching(traffic, batch):
    profile, records = traffic
    one = Pipeline(cfg(), profiles={profile.model: profile})
    expected = _evidence(_run(one, records, 1) + list(one.flush().windows))
    other = Pipeline(cfg(), profiles={profile.model: profile})
    got = _evidence(_run(other, records, batch) + list(other.flush().windows))
    assert got == expected
    docs = [d for _, d in expected]
    assert len(docs) >= 3 and all(d["exemplars"] and d["exemplar_score"] == "features" for d in docs)
    assert all(len(d["exemplars"]) == 10 and d["exemplars"][0]["position"].startswith("events.jsonl:") for d in docs)
    assert any(d["tokens_rising"] for d in docs) and all(d["token_source"] == "words" for d in docs)
    assert {"feature:char_length", "feature:oov_rate", "confidence", "probability:positive"} <= set(docs[0]["distributions"])
    assert docs[0]["embedding_points"] == []


def test_evidence_survives_a_restart_mid_window(traffic):
    profile, records = traffic
    steady = Pipeline(cfg(), profiles={profile.model: profile})
    expected = _evidence(_run(steady, records, 500) + list(steady.flush().windows))
    first = Pipeline(cfg(), profiles={profile.model: profile})
    got = _run(first, records[:2345], 500)
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(first.state()))  # as the checkpoint stores it
    second = Pipeline(cfg(), profiles={profile.model: profile})
    second.restore(state)
    got += _run(second, records[2345:], 333) + list(second.flush().windows)
    assert _evidence(got) == expected


def test_old_checkpoint_without_evidence_restores(traffic):
    profile, records = traffic
    first = Pipeline(cfg(), profiles={profile.model: profile})
    _run(first, records[:700], 350)
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(first.state()))
    for stream in state["streams"]:
        for acc in stream["open"]:
            del acc["evidence"]  # written before the evidence
    second = Pipeline(cfg(), profiles={profile.model: profile})
    second.restore(state)
    results = _run(second, records[700:], 500) + list(second.flush().windows)
    assert results and all(r.evidence is not None for r in results)


def test_explain_off_keeps_no_evidence(traffic):
    profile, records = traffic
    p = Pipeline(cfg(**{"explain.enabled": False}), profiles={profile.model: profile})
    results = _run(p, records[:3000], 1000) + list(p.flush().windows)
    assert results and all(r.evidence is None for r in results)
    p = Pipeline(cfg(**{"explain.tokens": False}), profiles={profile.model: profile})
    results = _run(p, records[:3000], 1000) + list(p.flush().windows)
    assert all(r.evidence.token_source is None and not r.evidence.tokens_rising for r in results)


def test_no_text_below_the_floor_reaches_store_checkpoint_or_log(traffic, store_url, caplog):
    from sinks.sql import SqlStore

    profile, records = traffic
    floor = 5
    p = Pipeline(cfg(), profiles={profile.model: profile})
    with caplog.at_level(logging.DEBUG):
        results = _run(p, records, 1000)
        checkpoint = msgspec.msgpack.encode(p.state())
        results += list(p.flush().windows)
    with SqlStore(store_url) as store:
        store.create_schema()
        store.commit("g", results=results, checkpoints={("events", 0): (len(records), checkpoint)})
        stored = store.window_evidence(profile.model)
        with store.engine.connect() as conn:
            import sqlalchemy as sa

            dump = json.dumps([list(map(str, row)) for t in ("window_results", "window_evidence", "checkpoints")
                               for row in conn.execute(sa.text(f"SELECT * FROM {t}"))])
    assert len(stored) == len(results) and all(ev is not None for _, ev in stored)
    for needle in (MARKER, MARKER.lower()):
        assert needle not in dump and needle.encode() not in checkpoint and needle not in caplog.text
    for _, ev in stored:
        for t in ev.tokens_rising:
            assert t.window_events >= floor
        for t in ev.tokens_falling:  # a token that fell is the profile's: over the floor there
            assert t.window_events >= floor or profile.tokens["counts"].get(t.token, 0) >= floor


def test_stored_evidence_size(traffic, store_url):
    """Bytes per stored window_evidence row (target <= 16 KB per stream and window; docs/evidence.md)."""
    profile, records = traffic
    p = Pipeline(cfg(), profiles={profile.model: profile})
    results = _run(p, records, 1000) + list(p.flush().windows)
    sizes = [len(json.dumps(r.evidence.to_dict(), separators=(",", ":"))) for r in results]
    assert max(sizes) <= 16 * 1024, sizes


def test_token_ids_are_the_tokenizers(tiny):
    from transformers import AutoTokenizer

    from monitor.ingest.tokenizer import TokenizerFeaturizer

    texts = ["great phone", "", "zzqx unseen wordsss ✨", "Hello,   World!! 12:30", "great phone"]
    tok = AutoTokenizer.from_pretrained(str(tiny.tokenizer_dir))
    expected = [set(tok(t)["input_ids"]) - set(tok.all_special_ids) for t in texts]
    def sets(texts):
        ids, lengths = f.token_ids(texts)
        ends = np.cumsum(lengths)
        return [set(ids[e - n : e].tolist()) for n, e in zip(lengths.tolist(), ends.tolist())]

    f = TokenizerFeaturizer(tiny.tokenizer_dir)
    f.features(texts)
    assert f.chunk_cache and sets(texts) == expected
    f.chunk_cache = False  # the per-text path (byte-level BPE tokenizers)
    f.features(texts)
    assert sets(texts) == expected and sets(["not seen before"]) == [
        set(tok("not seen before")["input_ids"]) - set(tok.all_special_ids)]
    assert f.tokens([tok.convert_tokens_to_ids("great")]) == ["great"]


def test_tokenizer_source_evidence_does_not_depend_on_batching(tiny, tmp_path):
    from monitor.ingest.tokenizer import TokenizerFeaturizer

    tokenizer = TokenizerFeaturizer(tiny.tokenizer_dir)
    events = list(generate_events(4000, seed=9, rate_per_s=20, drift_after=3000))
    write_events(tmp_path / "ref.jsonl", events[:2000])
    profile, _ = build_profile(str(tmp_path / "ref.jsonl"), tokenizer=tokenizer)
    assert profile.tokens["source"] == "tokenizer" and min(profile.tokens["counts"].values()) >= 5
    records = [Record(json.dumps(e).encode(), f"t/0@{i}") for i, e in enumerate(events[2000:])]
    config = cfg(**{"tokenizer.path": str(tiny.tokenizer_dir)})
    runs = []
    for batch in (1, 7, 1000):
        p = Pipeline(config, profiles={profile.model: profile}, tokenizer=TokenizerFeaturizer(tiny.tokenizer_dir))
        runs.append(_evidence(_run(p, records, batch) + list(p.flush().windows)))
    assert runs[0] == runs[1] == runs[2]
    docs = [d for _, d in runs[0]]
    assert docs and all(d["token_source"] == "tokenizer" for d in docs)
    drifted = docs[-1]
    assert drifted["tokens_rising"] and all(t["window_events"] >= 5 for t in drifted["tokens_rising"])
    assert "feature:token_count" in drifted["distributions"] and drifted["exemplars"][0]["position"].startswith("t/0@")


def test_explain_config_from_env_and_flags_and_validated():
    from monitor.config import ConfigError

    c = load_config(env={"NLPMON_EXPLAIN_TOKENS": "false", "NLPMON_EXPLAIN_MIN_TOKEN_EVENTS": "8"},
                    overrides={"source.kind": "stdin", "explain.top_tokens": 5})
    assert (c.explain.tokens, c.explain.min_token_events, c.explain.top_tokens) == (False, 8, 5)
    with pytest.raises(ConfigError, match="min_token_events"):
        load_config(env={}, overrides={"source.kind": "stdin", "explain.min_token_events": 1})  # a floor of 1 keeps every word


def test_reference_build_without_tokens(tmp_path):
    from monitor.config import ExplainConfig
    from monitor.jobs.profile_builder import ProfileOptions

    write_events(tmp_path / "ref.jsonl", generate_events(300, seed=2))
    profile, _ = build_profile(str(tmp_path / "ref.jsonl"), ProfileOptions(explain=ExplainConfig(tokens=False)))
    assert profile.tokens is None
    floored, _ = build_profile(str(tmp_path / "ref.jsonl"), ProfileOptions(explain=ExplainConfig(min_token_events=50)))
    assert floored.tokens["min_events"] == 50 and min(floored.tokens["counts"].values()) >= 50


def test_reference_build_takes_the_floor_from_the_config(tmp_path, capsys):
    from monitor.cli import main

    write_events(tmp_path / "e.jsonl", generate_events(600, seed=4))
    config = tmp_path / "nlpmon.toml"
    config.write_text("[explain]\nmin_token_events = 40\n", encoding="utf-8")
    out = tmp_path / "p.json"
    assert main(["reference", "build", str(tmp_path / "e.jsonl"), "-o", str(out), "--config", str(config)]) == 0
    tokens = json.loads(out.read_text())["tokens"]
    assert tokens["min_events"] == 40 and tokens["counts"] and min(tokens["counts"].values()) >= 40
    capsys.readouterr()
