"""Embedding drift with the encoder nlpmon runs itself ([embedding] model), end to end: the devkit's tiny real
ONNX encoder (2-D pooled and 3-D token outputs), a worker thread, the barriers, restarts, failures."""

from __future__ import annotations

import json
import logging
import threading
import time

import msgspec
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitor.cli.main import main as nlpmon
from monitor.config import ConfigError, load_config
from monitor.devkit.synth.encoder import build_tiny_encoder, make_subject_texts
from monitor.jobs.profile_builder import build_profile
from monitor.ingest.reference import Profile, ProfileError, load_profile
from monitor.ingest.tokenizer import TokenizerFeaturizer
from monitor.pipeline import Pipeline, Record
from monitor.onnx.encoder import OnnxEncoder
from monitor.runtime.embedding_worker import EmbeddingWorker
from monitor.runtime.line_daemon import run_line_source
from sinks.prometheus import PrometheusSink
from tests.factories import replay_windows

T0 = 1_764_000_000_000
WINDOW_MS = 60_000
PER_WINDOW = 300
MAX_LENGTH = 64
SECRET = "Qzxwvutsr"  # a word no generated text has: must never leave the process in any form


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("encoder"), seed=0, max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def texts():
    return {"reference": make_subject_texts(3000, "restaurant", seed=10),
            "restaurant": make_subject_texts(3000, "restaurant", seed=11),
            "phone": make_subject_texts(1200, "phone", seed=12)}


@pytest.fixture(scope="module")
def tokenizer(built):
    return TokenizerFeaturizer(built.tokenizer_dir, max_length=MAX_LENGTH)


def encoder(built, output: str = "pooled", batch_size: int = 32) -> OnnxEncoder:
    name = built.pooled_output if output == "pooled" else built.token_output
    return OnnxEncoder(built.model_path, built.tokenizer_dir, output=name, provider="cpu", batch_size=batch_size,
                       max_length=MAX_LENGTH, intra_op_threads=1)


def event(ts_ms: int, text: str | None, **kw) -> dict:
    e = {"ts": ts_ms, "model": "m", "version": "1", "prediction": "pos", "probabilities": {"pos": 0.8, "neg": 0.2},
         "latency_ms": 10.0, "text": text}
    e.update(kw)
    return e


@pytest.fixture(scope="module")
def ref_path(tmp_path_factory, texts):
    path = tmp_path_factory.mktemp("ref") / "ref.jsonl"
    ref = [event(T0 - 10**9 + i * 200, t if i % 500 else f"{t} {SECRET}") for i, t in enumerate(texts["reference"])]
    path.write_text("".join(json.dumps(e) + "\n" for e in ref))
    return path


@pytest.fixture(scope="module", params=["pooled", "token"])
def profiled(request, built, ref_path, tokenizer):
    """(output kind, profile built with that output of the encoder)."""
    profile, summary = build_profile(str(ref_path), tokenizer=tokenizer, encoder=encoder(built, request.param))
    assert summary.embedding_components == 16
    return request.param, profile


def stream(texts, windows_restaurant: int, windows_phone: int, per: int = PER_WINDOW) -> list[dict]:
    out = []
    for w in range(windows_restaurant + windows_phone):
        subject = "restaurant" if w < windows_restaurant else "phone"
        base = (w if subject == "restaurant" else w - windows_restaurant) * per
        for i in range(per):
            text = texts[subject][(base + i) % len(texts[subject])]
            out.append(event(T0 + w * WINDOW_MS + i * (WINDOW_MS // per), text if i % 50 else f"{text} {SECRET}"))
    return out


def config(**over):
    base = {"source.kind": "stdin", "window.size_seconds": WINDOW_MS / 1000, "window.lateness_seconds": 0,
            "window.min_events": 100, "window.reservoir_size": 1000, "window.max_future_seconds": 1e9,
            "tokenizer.path": "x", "tokenizer.max_length": MAX_LENGTH, "embedding.model": "x"}
    base.update(over)
    return load_config(env={}, overrides=base)


def pipeline(profile: Profile, tokenizer, embedder, sink=None, **over) -> Pipeline:
    return Pipeline(config(**over), profiles={"m": profile}, tokenizer=tokenizer, sink=sink, embedder=embedder)


def worker(enc) -> EmbeddingWorker:
    return EmbeddingWorker(enc, components=16, whiten=False)



def test_the_profile_holds_the_encoders_identity_and_projected_floats_only(profiled, built):
    output, profile = profiled
    emb = profile.embedding
    assert emb["source"] == "encoder" and emb["settings"] == {"components": 16, "whiten": False}
    ident = emb["encoder"]
    assert ident["output"] == (built.pooled_output if output == "pooled" else built.token_output)
    assert ident["pooling"] == ("none" if output == "pooled" else "mean") and ident["dim"] == built.dim
    assert len(ident["model_sha256"]) == 64 and ident["max_length"] == MAX_LENGTH
    assert profile.embedding_reference.shape == (1500, 16)  # the held-out half of the 3,000 texts, projected
    doc = json.dumps(profile.to_dict())
    assert SECRET not in doc and SECRET.lower() not in doc.lower()


def test_the_two_subject_corpus_flags_the_switch_with_the_encoder(profiled, built, texts, tokenizer):
    output, profile = profiled
    w = worker(encoder(built, output))
    try:
        windows = [r for r in replay_windows(pipeline(profile, tokenizer, w), stream(texts, 3, 3)) if r.tested]
    finally:
        w.close()
    assert len(windows) == 6 and all(r.events == PER_WINDOW for r in windows)
    for r in windows[:3]:
        assert r.drift.embedding is not None and not r.drift.embedding.drifted and not r.drifted
        assert r.drift.embedding.window_n == 256  # embedding.sample_size of the 300 texts
    for r in windows[3:]:  # the first full window after the switch already
        assert r.drift.embedding.drifted and r.drifted
        # no shape feature moves; oov_rate does, the phone words are not in the restaurant vocabulary
        assert {f.feature for f in r.drift.input.features if f.drifted} == {"oov_rate"}
    assert w.texts >= 6 * 256 and w.failures == 0


class _Slow:
    """An encoder whose calls take a while: the barriers, not luck, must make the results complete."""

    def __init__(self, enc, delay_s: float):
        self.enc, self.delay_s = enc, delay_s
        self.path, self.calls = enc.path, 0

    def embed(self, texts):
        time.sleep(self.delay_s)
        self.calls += 1
        return self.enc.embed(texts)

    def batch_independent(self, texts):
        return self.enc.batch_independent(texts)

    def info(self):
        return self.enc.info()


def test_results_do_not_depend_on_batching_job_composition_timing_or_restarts(built, texts, tokenizer, ref_path):
    profile, _ = build_profile(str(ref_path), tokenizer=tokenizer, encoder=encoder(built, "pooled"))
    evs = stream(texts, 2, 2)
    over = {"embedding.sample_size": 64, "embedding.permutations": 200}
    w = worker(encoder(built, "pooled", batch_size=64))
    expected = [r.to_dict() for r in replay_windows(pipeline(profile, tokenizer, w, **over), evs, 1000)]
    w.close()
    assert any(r["drift"]["embedding"] and r["drift"]["embedding"]["drifted"] for r in expected)
    # Other process() batches make other jobs (other texts embedded together, in other encoder batches of
    # another size), and a slow encoder makes the barriers wait: the same results, bit for bit.
    for batch, enc_batch, delay in ((1, 3, 0.0), (7, 32, 0.0), (333, 5, 0.02)):
        w = worker(_Slow(encoder(built, "pooled", batch_size=enc_batch), delay))
        try:
            assert [r.to_dict() for r in replay_windows(pipeline(profile, tokenizer, w, **over), evs, batch)] == expected
        finally:
            w.close()
    # A restart from a checkpoint: the state holds projected floats (the barrier ran), never a text.
    records = [Record(json.dumps(e).encode(), f"l:{i}") for i, e in enumerate(evs)]
    w = worker(_Slow(encoder(built, "pooled"), 0.01))
    first = pipeline(profile, tokenizer, w, **over)
    out = [r.to_dict() for r in first.process(records[:777]).windows]
    state = msgspec.msgpack.encode(first.state())
    assert first.texts.pending == 0 and first.texts.barriers >= 1
    decoded = msgspec.msgpack.decode(state)
    (acc,) = decoded["streams"][0]["open"]
    rows = np.frombuffer(acc["embeddings"]["rows"], dtype=np.float64)
    assert acc["embeddings"]["width"] == 16 and rows.size == 64 * 16 and np.isfinite(rows).all()
    assert SECRET.encode() not in state and not any(isinstance(v, str) and len(v) > 40 for v in _leaves(decoded))
    second = pipeline(profile, tokenizer, w, **over)
    second.restore(decoded)
    out += [r.to_dict() for r in list(second.process(records[777:]).windows) + list(second.flush().windows)]
    w.close()
    assert out == expected


def _leaves(x):
    if isinstance(x, dict):
        for k, v in x.items():
            yield k
            yield from _leaves(v)
    elif isinstance(x, list):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


def test_the_daemon_keeps_consuming_while_the_worker_embeds(built, texts, tokenizer, ref_path):
    profile, _ = build_profile(str(ref_path), tokenizer=tokenizer, encoder=encoder(built, "pooled"))
    gate = threading.Event()

    class Gated(_Slow):
        def embed(self, texts):
            gate.wait(30)
            return self.enc.embed(texts)

    w = worker(_Slow(encoder(built, "pooled"), 0.0))
    w.encoder = Gated(encoder(built, "pooled"), 0.0)  # after the start probe: jobs block until the gate opens
    p = pipeline(profile, tokenizer, w)
    records = [Record(json.dumps(e).encode(), f"l:{i}") for i, e in enumerate(stream(texts, 1, 0))]
    p.process(records[:200])
    p.process(records[200:280])  # returns although no job can finish: the hot path does not wait
    assert p.texts.pending > 0 and p.stats.valid == 280
    gate.set()
    p.state()  # the barrier waits for them
    assert p.texts.pending == 0
    w.close()


class _Failing(_Slow):
    """Fails on any batch holding the marker text (and on that text alone)."""

    def embed(self, texts):
        if any(SECRET in t for t in texts):
            raise RuntimeError(f"cannot embed {[t for t in texts if SECRET in t]}")  # quotes the input
        return self.enc.embed(texts)


def test_an_encoder_failure_skips_the_windows_embedding_test_and_the_daemon_goes_on(built, texts, tokenizer,
                                                                                    ref_path, caplog):
    profile, _ = build_profile(str(ref_path), tokenizer=tokenizer, encoder=encoder(built, "pooled"))
    w = worker(_Failing(encoder(built, "pooled"), 0.0))
    reg = CollectorRegistry()
    caplog.set_level(logging.DEBUG)
    try:
        windows = replay_windows(pipeline(profile, tokenizer, w, PrometheusSink(reg), **{"embedding.sample_size": 300}),
                         stream(texts, 2, 0))
    finally:
        w.close()
    assert len(windows) == 2 and all(r.tested for r in windows)
    for r in windows:  # every window's 300 texts are all sampled, the marked ones (1 in 50) among them
        assert r.drift.embedding is None and r.drift.input is not None
        assert r.to_dict()["drift"]["embedding_skipped"] == "encoder_error"
    assert w.failures == 12 and w.texts == 600 - 12
    from monitor.runtime.embedding_worker import set_embedding_gauges

    set_embedding_gauges(PrometheusSink(gauges := CollectorRegistry()), w, [])
    assert gauges.get_sample_value("nlpmon_embedding_encoder_failures_total") == 12.0
    assert "encoder_error" not in json.dumps(windows[0].to_dict()["drift"]["input"])
    logged = " ".join(str(rec.__dict__) for rec in caplog.records) + generate_latest(reg).decode()
    assert "RuntimeError" in logged and SECRET not in logged


def test_a_mismatched_profile_is_refused(built, ref_path, tokenizer, profiled):
    output, profile = profiled
    other = "token" if output == "pooled" else "pooled"
    w = worker(encoder(built, other))
    try:
        with pytest.raises(ProfileError, match="another encoder: its output is"):
            pipeline(profile, tokenizer, w)
        with pytest.raises(ProfileError, match="components = 16, whiten = false.*components = 8"):
            Pipeline(config(**{"embedding.components": 8}), profiles={"m": profile}, tokenizer=tokenizer,
                     embedder=worker(encoder(built, output)))
    finally:
        w.close()
    with pytest.raises(ProfileError, match="no embedding.model is configured"):
        Pipeline(config(**{"embedding.model": ""}), profiles={"m": profile}, tokenizer=tokenizer)


def test_a_profile_of_precomputed_embeddings_is_refused_with_an_encoder(built, texts, tokenizer, tmp_path):
    enc = encoder(built, "pooled")
    vectors = enc.embed(texts["reference"][:400])
    path = tmp_path / "ref.jsonl"
    path.write_text("".join(json.dumps(event(T0 + i, t, embedding=[float(x) for x in v])) + "\n"
                            for i, (t, v) in enumerate(zip(texts["reference"], vectors))))
    from_events, _ = build_profile(str(path), tokenizer=tokenizer)
    assert from_events.embedding_source == "event"
    w = worker(enc)
    try:
        with pytest.raises(ProfileError, match="precomputed `embedding` field, but embedding.model is configured"):
            pipeline(from_events, tokenizer, w)
    finally:
        w.close()
    # ... and accepted without one (the existing path).
    Pipeline(config(**{"embedding.model": ""}), profiles={"m": from_events}, tokenizer=tokenizer)


def test_embedding_model_requires_the_tokenizer():
    with pytest.raises(ConfigError, match=r"embedding.model: requires tokenizer.path"):
        load_config(env={}, overrides={"source.kind": "stdin", "embedding.model": "enc.onnx"})


def test_reference_build_and_replay_read_embedding_from_the_config(built, ref_path, texts, tmp_path, capsys):
    cfg = tmp_path / "nlpmon.toml"
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in stream(texts, 1, 1)))
    out = tmp_path / "results.jsonl"
    cfg.write_text(f'[source]\nkind = "file"\npath = "{events}"\n'
                   f'[window]\nsize_seconds = 60\nlateness_seconds = 0\nmin_events = 100\nmax_future_seconds = 1e9\n'
                   f'[tokenizer]\npath = "{built.tokenizer_dir}"\nmax_length = {MAX_LENGTH}\n'
                   f'[embedding]\nmodel = "{built.model_path}"\noutput = "{built.token_output}"\nprovider = "cpu"\n'
                   f'components = 8\nwhiten = true\nreference_size = 500\n'
                   f'[metrics]\nenabled = false\n[output]\nresults_path = "{out}"\n')
    profile_path = tmp_path / "profile.json"
    assert nlpmon(["reference", "build", str(ref_path), "-o", str(profile_path), "--config", str(cfg)]) == 0
    profile = load_profile(profile_path)
    assert profile.embedding["encoder"]["output"] == built.token_output
    assert profile.embedding["settings"] == {"components": 8, "whiten": True}
    assert profile.embedding_reference.shape == (500, 8) and profile.embedding_projection.whiten
    cfg.write_text(cfg.read_text() + f'[reference]\npaths = ["{profile_path}"]\n')
    conf = load_config(cfg, env={})
    run_line_source(conf, path=str(events), output=out.open("wb"), serve_metrics=False)
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["drift"]["embedding"]["drifted"] for r in results] == [False, True]
    assert SECRET not in out.read_text()
    # Another projection in the daemon's config: refused at the start, naming both settings.
    bad = load_config(cfg, env={}, overrides={"embedding.whiten": False})
    with pytest.raises(ProfileError, match="whiten = true.*whiten = false"):
        run_line_source(bad, path=str(events), output=None, serve_metrics=False)
    assert threading.active_count() < 20  # the workers were closed


def test_check_config_names_the_encoder_and_the_profile(built, ref_path, tokenizer, tmp_path):
    from monitor.runtime.checks import preflight

    profile, _ = build_profile(str(ref_path), tokenizer=tokenizer, encoder=encoder(built, "pooled"))
    from monitor.ingest.reference import save_profile

    save_profile(profile, tmp_path / "p.json")
    base = {"source.kind": "stdin", "tokenizer.path": str(built.tokenizer_dir), "tokenizer.max_length": MAX_LENGTH,
            "reference.paths": [str(tmp_path / "p.json")], "embedding.provider": "cpu"}
    ok = load_config(env={}, overrides={**base, "embedding.model": str(built.model_path),
                                        "embedding.output": built.pooled_output})
    assert preflight(ok) == []
    other = load_config(env={}, overrides={**base, "embedding.model": str(built.model_path),
                                           "embedding.output": built.token_output})
    (problem,) = preflight(other)
    assert problem.startswith("reference.paths") and "another encoder: its output is" in problem
    missing = load_config(env={}, overrides={**base, "embedding.model": str(tmp_path / "nope.onnx")})
    assert preflight(missing) == [f"embedding.model: {tmp_path / 'nope.onnx'} is not a readable file"]
    (problem,) = preflight(load_config(env={}, overrides=base))
    assert "no embedding.model is configured" in problem
