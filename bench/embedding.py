"""Speed of semantic input drift on one CPU core: the encoder, the per-window test, the OOV rate.

    .venv/bin/python bench/embedding.py                 # defaults: sample_size 256, tiny devkit encoder
    .venv/bin/python bench/embedding.py --repeats 9 --sample-size 512

Everything runs in one process on seeded data, pinned to one CPU when the OS allows, with onnxruntime on one
intra-op thread; figures are medians over --repeats, and each section prints ratios against a baseline
measured in the same process:

1. Encoder texts/s (tiny devkit encoder, pooled output) by batching: ``exact_length`` (the default: grouped
   by exact token count, no padding, batch-independent bits), ``sorted`` (length-sorted, padded) and
   ``unsorted`` (input order, padded; the baseline).
2. Per-window EmbeddingDrift at ``--sample-size`` embeddings: the KS part (16 components) and the MMD part
   (``max_mmd_n`` rows a side, ``permutations``) separately, against KSDrift over the 9 text features of the
   same window (the per-window input-drift test that runs today).
3. Cost per window: embedding ``--sample-size`` texts plus the test, and the largest sample size that keeps
   one core under ``--budget-s`` per window at the measured encoder speed.
4. OOV rate texts/s of a 32,768-word HashedVocabulary against ``text_features`` (the baseline), and the
   measured false-positive rate over 10^6 unseen words.
5. The pipeline's events/s with embedding drift on vs off on the same stream (``--pipeline-events`` events
   with text, probabilities and a precomputed ``embedding`` of the tiny encoder, ``--window-events`` a
   window, batches of 1000): *off* is a reference profile without a projection (the embedding field is
   still decoded and validated), *on* the same profile with one (projection at arrival, the window's
   sample, EmbeddingDrift at close with the daemon's defaults). Target: on >= 0.8x off.
6. The same with the encoder nlpmon runs ([embedding] model): events with text and probabilities only,
   tokenizer features on in both runs; *off* a profile without a projection, *on* the profile built with the
   tiny encoder's pooled output and its worker thread (each window's sampled texts embedded off the hot path,
   ``Pipeline.state()`` every ``--checkpoint-events`` events as the Kafka daemon's checkpoints). Prints
   events/s (alternating runs, medians), texts embedded per window (more than sample_size: a text displaced
   from the sample after its job started was embedded for nothing) and the barrier wait per checkpoint.
   With ``--cores 1`` (the default, like the sections above) the worker shares the pipeline's core, so the
   ratio is the whole CPU cost; ``--cores 2`` lets the worker run beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from detectors.embedding import EmbeddingDrift, fit_reference  # noqa: E402
from detectors.ks import KSDrift  # noqa: E402
from detectors.text_features import TEXT_FEATURES, text_features  # noqa: E402
from detectors.vocabulary import HashedVocabulary  # noqa: E402


def median_s(fns: dict[str, object], *, repeats: int) -> dict[str, float]:
    """Median wall time in seconds per function; the functions take turns within each repeat."""
    for fn in fns.values():
        fn()
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    return {name: statistics.median(r) for name, r in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sample-size", type=int, default=256, help="texts embedded per window")
    parser.add_argument("--texts", type=int, default=2048, help="texts per encoder timing")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--budget-s", type=float, default=1.0, help="one core's budget per window")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--pipeline-events", type=int, default=50_000)
    parser.add_argument("--window-events", type=int, default=5_000, help="events per (time) window in section 5")
    parser.add_argument("--checkpoint-events", type=int, default=20_000, help="Pipeline.state() every N events (6)")
    parser.add_argument("--cores", type=int, default=1, help="CPUs the process may use")
    parser.add_argument("--provider", default="cpu", help="onnxruntime provider of section 6's encoder")
    parser.add_argument("--only-encoder-pipeline", action="store_true", help="run section 6 alone")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
        except OSError:
            pass
    if args.only_encoder_pipeline:
        encoder_pipeline_on_off(args)
        return 0

    from monitor.devkit.synth.encoder import build_tiny_encoder, make_subject_texts
    from monitor.onnx.encoder import OnnxEncoder

    texts = make_subject_texts(args.texts, "restaurant", seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        built = build_tiny_encoder(Path(tmp) / "enc", seed=0)
        encoders = {
            b: OnnxEncoder(built.model_path, built.tokenizer_dir, output=built.pooled_output, provider="cpu",
                           batch_size=args.batch_size, batching=b, intra_op_threads=1)
            for b in ("unsorted", "sorted", "exact_length")
        }
        times = median_s({b: (lambda e=e: e.embed(texts)) for b, e in encoders.items()}, repeats=args.repeats)
        print(f"== encoder: tiny devkit encoder (dim {built.dim}), {args.texts} texts, batch {args.batch_size}, "
              f"CPU, 1 thread")
        print(f"{'batching':<14} {'median s':>9} {'texts/s':>9} {'vs unsorted':>12}")
        for b, t in times.items():
            print(f"{b:<14} {t:>9.4f} {args.texts / t:>9.0f} {times['unsorted'] / t:>11.2f}x")
        rate = args.texts / times["exact_length"]
        reference_texts = make_subject_texts(4000, "restaurant", seed=args.seed + 1)
        reference = encoders["exact_length"].embed(reference_texts)
        window_texts = make_subject_texts(args.sample_size, "phone", seed=args.seed + 2)
        window = encoders["exact_length"].embed(window_texts)
        pool_texts = make_subject_texts(4000, "restaurant", seed=args.seed + 3)
        pool = encoders["exact_length"].embed(pool_texts)

    projection, sample = fit_reference(reference, components=16, seed=1)
    detector = EmbeddingDrift(projection, sample, seed=2)
    z = projection.project(window)
    shape_ref = text_features(reference_texts)
    shape_test = KSDrift({n: shape_ref[:, i] for i, n in enumerate(TEXT_FEATURES)})
    shape_window = text_features(window_texts)
    shape_cols = {n: shape_window[:, i] for i, n in enumerate(TEXT_FEATURES)}
    rng = np.random.default_rng(0)
    parts = median_s(
        {
            "KSDrift, 9 text features (baseline)": lambda: shape_test.test(shape_cols),
            "EmbeddingDrift, KS part": lambda: [r.test(z[:, j]) for j, r in enumerate(detector._refs)],
            "EmbeddingDrift, MMD part": lambda: detector._mmd(z, rng),
            "EmbeddingDrift.test (all)": lambda: detector.test(window, seed=1),
        },
        repeats=args.repeats,
    )
    base = parts["KSDrift, 9 text features (baseline)"]
    print(f"\n== per-window test: {args.sample_size} embeddings x 16 components vs reference {detector.reference_n}; "
          f"MMD {min(args.sample_size, detector.max_mmd_n)}+{detector._mmd_ref.shape[0]} rows, "
          f"{detector.permutations} permutations")
    print(f"{'part':<38} {'median ms':>10} {'vs baseline':>12}")
    for name, t in parts.items():
        print(f"{name:<38} {t * 1e3:>10.2f} {t / base:>11.2f}x")
    test_s = parts["EmbeddingDrift.test (all)"]
    embed_s = args.sample_size / rate
    print(f"\n== cost per window on one core: embed {args.sample_size} texts {embed_s * 1e3:.1f} ms + test "
          f"{test_s * 1e3:.1f} ms = {(embed_s + test_s) * 1e3:.1f} ms")
    fit = int(max(0.0, args.budget_s - test_s) * rate)
    print(f"   largest sample_size within {args.budget_s:g} s at {rate:.0f} texts/s: {fit} "
          f"(a served transformer at 50 texts/s/core: {int(max(0.0, args.budget_s - test_s) * 50)})")

    vocab = HashedVocabulary.fit(make_subject_texts(20000, "restaurant", seed=9), key=bytes(range(16)))
    big = HashedVocabulary(np.random.default_rng(1).choice(1 << 32, 32768, replace=False).astype(np.uint32),
                           key=bytes(range(16)))
    oov_texts = make_subject_texts(20000, "phone", seed=10)
    speed = median_s({"text_features (baseline)": lambda: text_features(oov_texts),
                      "HashedVocabulary.oov_rate": lambda: vocab.oov_rate(oov_texts)}, repeats=args.repeats)
    print(f"\n== OOV rate: {len(oov_texts)} texts, vocabulary of {len(vocab)} hashes")
    print(f"{'function':<28} {'median s':>9} {'texts/s':>9} {'vs baseline':>12}")
    for name, t in speed.items():
        print(f"{name:<28} {t:>9.4f} {len(oov_texts) / t:>9.0f} "
              f"{speed['text_features (baseline)'] / t:>11.2f}x")
    unseen = [f"unseen-{i}" for i in range(1_000_000)]
    hits = int(big.contains(unseen).sum())
    print(f"   false positives over 10^6 unseen words, 32,768 hashes: {hits / 1e6:.2e} "
          f"(derived V / 2^32 = {big.false_positive_rate:.2e}); stored size {len(str(big.to_dict()))} bytes")
    pipeline_on_off(reference_texts, reference, pool_texts, pool, args)
    encoder_pipeline_on_off(args)
    return 0


def pipeline_on_off(reference_texts, reference, pool_texts, pool, args) -> None:
    """Section 5: Pipeline events/s with embedding drift on vs off on the same records."""
    import dataclasses
    import json

    from monitor.config import load_config
    from monitor.jobs.profile_builder import build_profile
    from monitor.pipeline import Pipeline, Record

    t0, step_ms = 1_764_000_000_000, 60_000 // args.window_events

    def event(ts_ms: int, text: str, vector) -> bytes:
        p = 0.55 + 0.4 * (len(text) % 10) / 10
        return json.dumps({"ts": ts_ms, "model": "m", "version": "1", "prediction": "pos", "text": text,
                           "probabilities": {"pos": p, "neg": 1 - p}, "latency_ms": 10.0,
                           "embedding": [float(v) for v in vector]}).encode()

    with tempfile.TemporaryDirectory() as tmp:
        ref_path = Path(tmp) / "ref.jsonl"
        ref_path.write_bytes(b"\n".join(event(t0 - 10**9 + i, t, v) for i, (t, v) in
                                         enumerate(zip(reference_texts, reference))) + b"\n")
        on, _ = build_profile(str(ref_path))
    off = dataclasses.replace(on, embedding=None)
    pick = np.random.default_rng(args.seed).integers(0, len(pool_texts), args.pipeline_events)
    records = [Record(event(t0 + k * step_ms, pool_texts[j], pool[j])) for k, j in enumerate(pick.tolist())]
    config = load_config(env={}, overrides={"source.kind": "stdin", "window.size_seconds": 60,
                                            "window.lateness_seconds": 0, "window.max_future_seconds": 1e9})

    def run(profile):
        pipeline = Pipeline(config, profiles={"m": profile})
        windows = []
        for lo in range(0, len(records), 1000):
            windows += pipeline.process(records[lo : lo + 1000]).windows
        windows += pipeline.flush().windows
        return windows

    tested = [w for w in run(on) if w.drift.embedding is not None]
    assert tested and all(w.drift.embedding is None for w in run(off))
    times = median_s({"off (profile without projection)": lambda: run(off), "on": lambda: run(on)},
                     repeats=max(3, args.repeats // 2))
    base = times["off (profile without projection)"]
    print(f"\n== pipeline: {args.pipeline_events} events with text, probabilities and a {pool.shape[1]}-float "
          f"embedding, {args.window_events} a window, batch 1000; embedding.sample_size "
          f"{config.embedding.sample_size}, {len(tested)} windows tested, "
          f"{sum(w.drift.embedding.drifted for w in tested)} flagged")
    print(f"{'embedding drift':<34} {'median s':>9} {'events/s':>9} {'vs off':>8}")
    for name, t in times.items():
        print(f"{name:<34} {t:>9.3f} {args.pipeline_events / t:>9.0f} {base / t:>7.2f}x")



def encoder_pipeline_on_off(args) -> None:
    """Section 6: Pipeline events/s with the encoder path on vs off on the same records (texts only)."""
    import dataclasses
    import json

    from monitor.config import load_config
    from monitor.devkit.synth.encoder import build_tiny_encoder, make_subject_texts
    from monitor.jobs.profile_builder import build_profile
    from monitor.ingest.tokenizer import TokenizerFeaturizer
    from monitor.pipeline import Pipeline, Record
    from monitor.onnx.encoder import OnnxEncoder
    from monitor.runtime.embedding_worker import EmbeddingWorker

    t0, step_ms = 1_764_000_000_000, 60_000 // args.window_events

    def event(ts_ms: int, text: str) -> bytes:
        p = 0.55 + 0.4 * (len(text) % 10) / 10
        return json.dumps({"ts": ts_ms, "model": "m", "version": "1", "prediction": "pos", "text": text,
                           "probabilities": {"pos": p, "neg": 1 - p}, "latency_ms": 10.0}).encode()

    pool = make_subject_texts(4000, "restaurant", seed=args.seed + 3)
    pick = np.random.default_rng(args.seed).integers(0, len(pool), args.pipeline_events)
    records = [Record(event(t0 + k * step_ms, pool[j])) for k, j in enumerate(pick.tolist())]
    with tempfile.TemporaryDirectory() as tmp:
        built = build_tiny_encoder(Path(tmp) / "enc", seed=0)
        tokenizer = TokenizerFeaturizer(built.tokenizer_dir, max_length=built.max_length)

        def encoder():
            return OnnxEncoder(built.model_path, built.tokenizer_dir, output=built.pooled_output,
                               provider=args.provider, batch_size=args.batch_size, max_length=built.max_length,
                               intra_op_threads=1)

        ref_path = Path(tmp) / "ref.jsonl"
        ref_texts = make_subject_texts(4000, "restaurant", seed=args.seed + 1)
        ref_path.write_bytes(b"\n".join(event(t0 - 10**9 + i, t) for i, t in enumerate(ref_texts)) + b"\n")
        on, _ = build_profile(str(ref_path), tokenizer=tokenizer, encoder=encoder())
        off = dataclasses.replace(on, embedding=None)
        over = {"source.kind": "stdin", "window.size_seconds": 60, "window.lateness_seconds": 0,
                "window.max_future_seconds": 1e9, "tokenizer.path": str(built.tokenizer_dir),
                "tokenizer.max_length": built.max_length}
        config_off = load_config(env={}, overrides=over)
        config_on = load_config(env={}, overrides={**over, "embedding.model": str(built.model_path)})
        worker = EmbeddingWorker(encoder(), components=16, whiten=False)
        stats = {}

        def run(profile, embedder):
            pipeline = Pipeline(config_on if embedder else config_off, profiles={"m": profile}, tokenizer=tokenizer,
                                embedder=embedder)
            windows, waits = [], []
            for lo in range(0, len(records), 1000):
                windows += pipeline.process(records[lo : lo + 1000]).windows
                if (lo + 1000) % args.checkpoint_events == 0:
                    started = time.perf_counter()
                    pipeline.state()
                    waits.append(time.perf_counter() - started)
            windows += pipeline.flush().windows
            if embedder is not None:
                stats.update(windows=len(windows), waits=waits, texts=pipeline.texts)
            return windows

        before = worker.texts
        tested = [w for w in run(on, worker) if w.drift.embedding is not None]
        embedded = worker.texts - before
        assert tested and all(w.drift.embedding is None for w in run(off, None))
        times = median_s({"off (profile without projection)": lambda: run(off, None), "on (encoder)": lambda: run(on, worker)},
                         repeats=max(3, args.repeats // 2))
        worker.close()
    base = times["off (profile without projection)"]
    waits = stats["waits"]
    print(f"\n== pipeline with the encoder ([embedding] model, {args.provider}): {args.pipeline_events} events with "
          f"text and probabilities, {args.window_events} a window, batch 1000, tokenizer features in both; "
          f"embedding.sample_size {config_on.embedding.sample_size}, {len(tested)} windows tested, "
          f"{sum(w.drift.embedding.drifted for w in tested)} flagged; {args.cores} core(s)")
    print(f"{'embedding drift':<34} {'median s':>9} {'events/s':>9} {'vs off':>8}")
    for name, t in times.items():
        print(f"{name:<34} {t:>9.3f} {args.pipeline_events / t:>9.0f} {base / t:>7.2f}x")
    print(f"   texts embedded per window: {embedded / stats['windows']:.0f} (sample {config_on.embedding.sample_size}); "
          f"barrier wait per checkpoint (every {args.checkpoint_events} events): median "
          f"{statistics.median(waits) * 1e3 if waits else 0:.1f} ms, max {max(waits, default=0) * 1e3:.1f} ms "
          f"over {len(waits)}; all barriers (checkpoints and window closes) waited "
          f"{stats['texts'].wait_seconds * 1e3:.0f} ms in {stats['texts'].barriers}")


if __name__ == "__main__":
    raise SystemExit(main())
