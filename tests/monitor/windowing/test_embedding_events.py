"""Embedding drift from the events' precomputed ``embedding`` field, end to end, with a real ONNX encoder
(the devkit's tiny one, run through OnnxEncoder) on a corpus whose subject changes at the same shape."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitor.config import load_config
from monitor.devkit.synth.encoder import build_tiny_encoder, make_subject_texts
from monitor.jobs.profile_builder import build_profile
from monitor.ingest.reference import Profile
from monitor.pipeline import Pipeline, Record
from monitor.onnx.encoder import OnnxEncoder
from sinks.prometheus import PrometheusSink
from sinks.sql.windows import drift_rows
from tests.factories import replay_windows

T0 = 1_764_000_000_000
WINDOW_MS = 60_000
PER_WINDOW = 300


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("embedding")
    built = build_tiny_encoder(d / "encoder", seed=0)
    encoder = OnnxEncoder(built.model_path, built.tokenizer_dir, output=built.pooled_output, provider="cpu", batch_size=64)
    texts = {
        "reference": make_subject_texts(3000, "restaurant", seed=10),
        "restaurant": make_subject_texts(3000, "restaurant", seed=11),
        "phone": make_subject_texts(1200, "phone", seed=12),
    }
    vectors = {k: encoder.embed(v) for k, v in texts.items()}
    ref = [event(T0 - 10**9 + i * 200, t, e) for i, (t, e) in enumerate(zip(texts["reference"], vectors["reference"]))]
    path = d / "ref.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in ref))
    profile, summary = build_profile(str(path))
    return profile, summary, texts, vectors, built.dim


def event(ts_ms: int, text: str, embedding: np.ndarray | None, **kw) -> dict:
    e = {"ts": ts_ms, "model": "m", "version": "1", "prediction": "pos", "probabilities": {"pos": 0.8, "neg": 0.2},
         "latency_ms": 10.0, "text": text}
    if embedding is not None:
        e["embedding"] = [float(v) for v in embedding]  # repr round-trips float32 values exactly
    e.update(kw)
    return e


def stream(corpus, windows_restaurant: int, windows_phone: int) -> list[dict]:
    _, _, texts, vectors, _ = corpus
    out = []
    for w in range(windows_restaurant + windows_phone):
        subject = "restaurant" if w < windows_restaurant else "phone"
        base = (w if subject == "restaurant" else w - windows_restaurant) * PER_WINDOW
        for i in range(PER_WINDOW):
            j = (base + i) % len(texts[subject])
            out.append(event(T0 + w * WINDOW_MS + i * (WINDOW_MS // PER_WINDOW), texts[subject][j], vectors[subject][j]))
    return out


def pipeline(profile: Profile, sink=None, **over) -> Pipeline:
    base = {"source.kind": "stdin", "window.size_seconds": WINDOW_MS / 1000, "window.lateness_seconds": 0,
            "window.min_events": 100, "window.reservoir_size": 1000, "window.max_future_seconds": 1e9}
    base.update(over)
    return Pipeline(load_config(env={}, overrides=base), profiles={"m": profile}, sink=sink)



def test_reference_build_fits_the_projection_from_the_events(corpus):
    profile, summary, _, _, dim = corpus
    assert summary.embedding_components == 16 and profile.embedding["dim"] == dim
    assert profile.embedding_reference.shape == (1500, 16)  # the held-out half of the 3,000, projected
    assert profile.embedding_projection.dim == dim
    again = Profile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert np.array_equal(again.embedding_reference, profile.embedding_reference)
    # the profile stores components, never the raw embeddings
    assert "embedding" not in json.dumps(profile.to_dict()["samples"])
    assert set(profile.embedding) == {"source", "dim", "projection", "reference", "seed", "settings"}


def test_a_subject_switch_at_the_same_shape_is_flagged_by_embedding_drift_only(corpus):
    profile = corpus[0]
    windows = [w for w in replay_windows(pipeline(profile), stream(corpus, 3, 3)) if w.tested]  # the last one flushed
    assert len(windows) == 6 and all(w.events == PER_WINDOW for w in windows)
    before, after = windows[:3], windows[3:]
    for w in before:
        assert not w.drift.embedding.drifted and not w.drifted
        assert w.drift.embedding.window_n == 256  # embedding.sample_size of the 300 events
    for w in after:  # the first full window after the switch already
        assert w.drift.embedding.drifted and w.drifted
        # no shape feature moves; oov_rate does, the phone words are not in the restaurant vocabulary
        assert {f.feature for f in w.drift.input.features if f.drifted} == {"oov_rate"}
        rows = [r for r in drift_rows(w.drift) if r["detector"] == "embedding"]
        assert rows and all(r["feature"].startswith("pc") or r["feature"] == "mmd" for r in rows)
    d = after[0].to_dict()["drift"]["embedding"]
    assert list(d) == ["drifted", "correction", "alpha", "min_effect", "drifted_share", "components", "multivariate",
                       "window_n", "reference_n"]


def test_results_do_not_depend_on_batching_or_restarts(corpus):
    profile = corpus[0]
    evs = stream(corpus, 2, 2)
    over = {"embedding.sample_size": 64, "embedding.permutations": 200}
    expected = [w.to_dict() for w in replay_windows(pipeline(profile, **over), evs, 1000)]
    assert any(w["drift"]["embedding"] and w["drift"]["embedding"]["drifted"] for w in expected)
    for batch in (1, 7):
        assert [w.to_dict() for w in replay_windows(pipeline(profile, **over), evs, batch)] == expected
    records = [Record(json.dumps(e).encode(), f"l:{i}") for i, e in enumerate(evs)]
    first = pipeline(profile, **over)
    out = [w.to_dict() for w in first.process(records[:777]).windows]
    state = msgspec.msgpack.encode(first.state())
    # the checkpoint holds components, not embeddings: 64 rows x 16 floats for the open window's sample
    (acc,) = first.state()["streams"][0]["open"]
    assert acc["embeddings"]["width"] == 16 and acc["embeddings"]["capacity"] == 64
    second = pipeline(profile, **over)
    second.restore(msgspec.msgpack.decode(state))
    out += [w.to_dict() for w in list(second.process(records[777:]).windows) + list(second.flush().windows)]
    assert out == expected


def test_wrong_embeddings_are_named_rejections(corpus):
    profile, _, texts, vectors, dim = corpus
    p = pipeline(profile)
    good = event(T0, texts["restaurant"][0], vectors["restaurant"][0])
    bad = [event(T0 + 1, "x", np.zeros(dim + 1)), {**event(T0 + 2, "x", None), "embedding": [1.0, "a"]},
           {**event(T0 + 3, "x", None), "embedding": []}]
    records = [Record(json.dumps(e).encode()) for e in [good, *bad]]
    records.append(Record(json.dumps(good).replace(json.dumps(good["embedding"][0]), "1e999", 1).encode()))
    p.process(records)
    assert dict(p.stats.invalid) == {"embedding_length_mismatch": 1, "wrong_type": 2, "non_finite": 1}
    assert p.stats.valid == 1


def test_prometheus_gauges(corpus):
    reg = CollectorRegistry()
    replay_windows(pipeline(corpus[0], PrometheusSink(reg)), stream(corpus, 1, 1)[: 2 * PER_WINDOW])
    lab = {"model": "m", "version": "1"}
    assert reg.get_sample_value("nlp_drift_detector_detected", {**lab, "detector": "embedding"}) == 1.0
    assert reg.get_sample_value("nlp_embedding_mmd_statistic", lab) > 0
    assert 0 < reg.get_sample_value("nlp_embedding_mmd_p_value", lab) < 0.01
    assert 0 < reg.get_sample_value("nlp_embedding_drifted_components_ratio", lab) <= 1
    assert reg.get_sample_value("nlp_drift_p_value", {**lab, "detector": "embedding", "feature": "pc1"}) is not None


def test_no_drift_stream_of_100_windows_has_few_false_alarms(corpus):
    profile, _, texts, vectors, _ = corpus
    rng = np.random.default_rng(7)
    n_windows, per = 100, 140
    pick = rng.integers(0, len(texts["restaurant"]), n_windows * per)
    evs = [event(T0 + (k // per) * WINDOW_MS + (k % per) * 400, texts["restaurant"][j], vectors["restaurant"][j])
           for k, j in enumerate(pick.tolist())]
    over = {"embedding.sample_size": 128, "embedding.permutations": 500, "embedding.max_mmd_n": 128}
    windows = [w for w in replay_windows(pipeline(profile, **over), evs, 2000) if w.tested and w.drift.embedding]
    assert len(windows) >= 100
    alarms = sum(w.drift.embedding.drifted for w in windows)
    alpha = 0.01
    # alpha plus three binomial standard deviations over the windows
    assert alarms <= alpha * len(windows) + 3 * np.sqrt(len(windows) * alpha * (1 - alpha)), alarms
