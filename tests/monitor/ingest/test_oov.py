"""``oov_rate`` end to end: the hashed vocabulary in the profile (no readable word), the per-event column
tested with the other input features, old profiles without a vocabulary, the Prometheus series."""

from __future__ import annotations

import json
import re

import msgspec
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from detectors.text_features import TEXT_FEATURES
from monitor.config import load_config
from monitor.devkit.synth.encoder import make_subject_texts
from monitor.ingest.oov import HOLDOUT_EVERY, VocabularyBuilder, oov_column
from monitor.jobs.profile_builder import ProfileOptions, build_profile
from monitor.ingest.reference import Profile, load_profile, save_profile
from monitor.pipeline import Pipeline, Record
from sinks.prometheus import PrometheusSink
from tests.factories import replay_windows

T0 = 1_764_000_000_000


def subject_events(n: int, subject: str, *, seed: int, t0: int = T0) -> list[dict]:
    texts = make_subject_texts(n, subject, seed=seed)
    return [{"ts": t0 + i * 100, "model": "m", "version": "1", "prediction": "pos" if i % 3 else "neg",
             "confidence": 0.9, "latency_ms": 10.0, "text": t} for i, t in enumerate(texts)]


def write(path, evs) -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in evs))
    return str(path)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("oov")
    profile, summary = build_profile(write(d / "ref.jsonl", subject_events(5000, "restaurant", seed=1, t0=T0 - 10**9)),
                                     ProfileOptions(batch_size=777))
    save_profile(profile, d / "profile.json")
    return profile, summary, d / "profile.json"


def pipeline(profile: Profile, sink=None) -> Pipeline:
    config = load_config(env={}, overrides={"source.kind": "stdin", "window.size_seconds": 60, "window.lateness_seconds": 0,
                                            "window.min_events": 100, "window.max_future_seconds": 1e9})
    return Pipeline(config, profiles={"m": profile}, sink=sink)


def replay(p: Pipeline, evs: list[dict], batch: int = 500) -> list:
    return [w for w in replay_windows(p, evs, batch) if w.tested]


def oov(w):
    return next(f for f in w.drift.input.features if f.feature == "oov_rate")


def test_the_profile_holds_a_hashed_vocabulary_and_held_out_reference_values(built):
    profile, summary, _ = built
    assert profile.feature_names == TEXT_FEATURES + ("oov_rate",)
    assert 0 < summary.vocabulary_words == profile.oov_vocabulary.__len__() <= 32768
    ref = profile.samples["oov_rate"]
    # one text in HOLDOUT_EVERY is held out of the vocabulary and scored against it
    assert ref.size == len(range(0, 5000, HOLDOUT_EVERY))
    # held out, the Zipf tail of the filler words is partly unseen: not the in-sample zeros
    assert 0.0 < ref.mean() < 0.2 and np.all((ref >= 0) & (ref <= 1))


def test_no_reference_word_is_readable_in_the_profile_file(built):
    _, _, path = built
    raw = path.read_text()
    words = {w.strip(",.!").lower() for e in subject_events(5000, "restaurant", seed=1) for w in e["text"].split()}
    assert len(words) > 100
    doc = json.loads(raw)
    keys = {k for part in re.findall(r'"([a-z_0-9]+)":', raw) for k in part.split("_")}  # "features_version"
    # base64 could spell short words by chance; a word of 6+ letters cannot (64**6 against ~1e5 positions)
    assert not [w for w in words if len(w) >= 6 and w in raw and w not in keys]
    plain = json.dumps({k: v for k, v in doc.items() if k not in ("samples", "confidence", "latency_ms", "probabilities",
                                                                  "vocabulary")}).lower()
    plain += json.dumps({k: v for k, v in doc["vocabulary"].items() if k != "hashes"})
    found = {w for w in words - keys if len(w) >= 3 and re.search(rf"\b{re.escape(w)}\b", plain)}
    assert not found


def test_new_words_at_the_same_shape_flag_oov_rate_and_reference_like_traffic_does_not(built):
    profile, _, _ = built
    same = replay(pipeline(profile), subject_events(3000, "restaurant", seed=2))
    assert len(same) >= 4
    assert not any(oov(w).drifted for w in same)
    assert not any(w.drift.input.drifted for w in same)
    other = replay(pipeline(profile), subject_events(3000, "phone", seed=2))
    assert len(other) >= 4
    assert all(oov(w).drifted and w.drift.input.drifted and w.drifted for w in other)
    # the subject words are paired by length: only oov_rate moves, no shape feature
    assert all({f.feature for f in w.drift.input.features if f.drifted} == {"oov_rate"} for w in other)
    j = other[0].to_dict()["drift"]["input"]["features"]["oov_rate"]
    assert j["drifted"] and j["statistic"] > 0.3 and j["p_value_adjusted"] < 0.01


def test_the_column_matches_the_vocabulary_and_events_without_text_are_nan(built):
    profile, _, _ = built
    vocab = profile.oov_vocabulary
    texts = ["Menu menu zzqqx", None, "", "table table"]
    col = oov_column(texts, vocab)
    assert np.isnan(col[1]) and col[2] == 0.0 and col[3] == 0.0
    assert col[0] == pytest.approx(1 / 3)
    assert np.array_equal(oov_column(["Menu menu zzqqx"], vocab), col[:1])


def test_results_do_not_depend_on_batching_or_restarts(built):
    profile, _, _ = built
    evs = subject_events(2500, "restaurant", seed=4) + subject_events(1500, "phone", seed=5, t0=T0 + 300_000)
    expected = [w.to_dict() for w in replay(pipeline(profile), evs, 1000)]
    assert any(w["drift"]["input"]["features"]["oov_rate"]["drifted"] for w in expected)
    assert [w.to_dict() for w in replay(pipeline(profile), evs, 7)] == expected
    first = pipeline(profile)
    records = [Record(json.dumps(e).encode(), f"l:{i}") for i, e in enumerate(evs)]
    out = [w for w in first.process(records[:2222]).windows]
    second = pipeline(profile)
    second.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(first.state())))
    out += list(second.process(records[2222:]).windows) + list(second.flush().windows)
    assert [w.to_dict() for w in out if w.tested] == expected


def test_a_profile_without_a_vocabulary_still_loads_and_has_no_oov_feature(built, tmp_path):
    profile, _, path = built
    doc = json.loads(path.read_text())
    doc.pop("vocabulary")  # as written before oov_rate
    doc["feature_names"].remove("oov_rate")
    doc["samples"].pop("oov_rate")
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    loaded = load_profile(old)
    assert loaded.vocabulary is None and loaded.oov_vocabulary is None and "oov_rate" not in loaded.stream_features
    windows = replay(pipeline(loaded), subject_events(1500, "phone", seed=6))
    assert windows and all("oov_rate" not in {f.feature for f in w.drift.input.features} for w in windows)


def test_a_producer_feature_named_oov_rate_does_not_replace_the_builders(tmp_path):
    evs = subject_events(1000, "restaurant", seed=7)
    for e in evs:
        e["features"] = {"oov_rate": 5.0, "score": 1.0}
    profile, _ = build_profile(write(tmp_path / "ref.jsonl", evs))
    assert profile.custom_features == ("score",) and profile.feature_names[-2:] == ("score", "oov_rate")
    assert profile.samples["oov_rate"].max() <= 1.0


def test_texts_too_few_for_a_held_out_sample_give_no_vocabulary():
    b = VocabularyBuilder(cap=100, seed=0)
    b.add(["a b c"] * 50 + [None] * 10)
    assert b.finish() is None  # 10 held out < MIN_HELD_OUT
    b.add(["a b d"] * 100)
    vocab_doc, ref = b.finish(key=b"k" * 16)
    assert vocab_doc["size"] == 4 and ref.size == 30


def test_prometheus_has_the_oov_rate_series(built):
    profile, _, _ = built
    reg = CollectorRegistry()
    replay(pipeline(profile, PrometheusSink(reg)), subject_events(1500, "phone", seed=8))
    series = {"model": "m", "version": "1", "detector": "input", "feature": "oov_rate"}
    assert reg.get_sample_value("nlp_drift_detected", series) == 1.0
    assert 0.3 < reg.get_sample_value("nlp_drift_statistic", series) <= 1.0
    assert reg.get_sample_value("nlp_drift_p_value", series) < 0.01


def test_the_reference_sample_does_not_depend_on_the_build_batches(built, tmp_path):
    profile, _, _ = built
    again, _ = build_profile(write(tmp_path / "ref.jsonl", subject_events(5000, "restaurant", seed=1, t0=T0 - 10**9)),
                             ProfileOptions(batch_size=100))
    # same held-out texts, same vocabulary words (the hashes differ: each profile draws its own key)
    assert np.array_equal(again.samples["oov_rate"], profile.samples["oov_rate"])
    assert len(again.oov_vocabulary) == len(profile.oov_vocabulary)
    assert again.vocabulary["key"] != profile.vocabulary["key"]


def test_a_checkpoint_from_before_the_vocabulary_restores_under_the_new_profile(built, tmp_path, caplog):
    profile, _, path = built
    doc = json.loads(path.read_text())
    doc.pop("vocabulary")
    doc["feature_names"].remove("oov_rate")
    doc["samples"].pop("oov_rate")
    old = Profile.from_dict(doc)
    evs = subject_events(1200, "restaurant", seed=9)  # 120 s of events: two 60 s windows
    records = [Record(json.dumps(e).encode(), f"l:{i}") for i, e in enumerate(evs)]
    first = pipeline(old)
    first.process(records[:900])  # the second window is open at the checkpoint, without an oov_rate column
    second = pipeline(profile)
    with caplog.at_level("WARNING", logger="nlpmon.pipeline"):
        second.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(first.state())))
    assert any("checkpointed under another reference profile" in r.getMessage() for r in caplog.records)
    out = list(second.process(records[900:]).windows) + list(second.flush().windows)
    (w,) = [w for w in out if w.tested]
    assert w.events == 600 and not second.stats.internal_errors  # counts kept, nothing raised
    assert oov(w).window_n == 300 and not oov(w).drifted  # the sample restarted at the restart
