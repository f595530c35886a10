"""Throughput of the whole pipeline on one core, and peak RSS of long replays.

    .venv/bin/python bench/pipeline.py                 # throughput, without and with tokenizer features
    .venv/bin/python bench/pipeline.py --rss 1000000 5000000   # + peak RSS of `nlpmon replay` on N events
    .venv/bin/python bench/pipeline.py --distinct-models 1000000   # memory and series with 1M distinct models
    .venv/bin/python bench/pipeline.py --before-after  # text features: per-string reference vs batch kernels

Throughput: events are read into memory first, then timed through decode -> validation -> features ->
windows -> detectors -> Prometheus collector (Pipeline.process + flush), against a bare ``orjson.loads``
loop over the same lines in the same process. Medians of --repeats runs. Pinned to one CPU.
Targets (issue 2): >= 100k events/s without tokenizer features, >= 30k with. Each configuration runs with
the ``oov_rate`` feature (the profile's hashed vocabulary) and without it, interleaved (issue 10).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAYON_NUM_THREADS", "1")  # the Rust tokenizer must not borrow other cores
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import orjson  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from monitor.config import load_config  # noqa: E402
from monitor.devkit.synth.traffic import generate_events, write_events  # noqa: E402
from monitor.jobs.profile_builder import ProfileOptions, build_profile  # noqa: E402
from monitor.ingest.reference import save_profile  # noqa: E402
from monitor.ingest.tokenizer import TokenizerFeaturizer  # noqa: E402
from monitor.pipeline import Pipeline, Record  # noqa: E402
from sinks.prometheus import PrometheusSink  # noqa: E402

CACHE = ROOT / "bench" / ".cache"


def events_file(n: int, *, drift_after: int | None = None, seed: int = 11) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"events-{n}-{drift_after}-{seed}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        write_events(tmp, generate_events(n, seed=seed, rate_per_s=20.0, drift_after=drift_after))
        tmp.rename(path)
    return path


def tokenizer_dir() -> Path | None:
    try:
        from monitor.devkit.synth.model import build_tiny_classifier
    except ImportError:
        return None
    out = CACHE / "tiny-model"
    if not (out / "tokenizer").exists() and not any(out.glob("**/tokenizer.json")):
        build_tiny_classifier(out)
    found = next(iter(out.glob("**/tokenizer.json")), None)
    return found.parent if found else None


def time_pipeline(lines: list[bytes], profile_path: Path, tokenizer: Path | None, batch: int,
                  cpu: list[float] | None = None, featurize=None, explain: bool | None = None) -> float:
    """Wall seconds of the run; its process CPU seconds are appended to ``cpu`` when given (on a shared VM
    the CPU time is what a busy neighbour does not inflate). ``explain``: ``[explain] enabled`` (the
    evidence kept with every window; the configuration's default when None)."""
    over = {"source.kind": "stdin", "reference.paths": [str(profile_path)], "window.max_future_seconds": 1e9}
    if explain is not None:
        over["explain.enabled"] = explain
    if tokenizer:
        over["tokenizer.path"] = str(tokenizer)
    config = load_config(env={}, overrides=over)
    from monitor.runtime.wiring import load_profiles

    tok = TokenizerFeaturizer(tokenizer, max_length=512) if tokenizer else None
    sink = PrometheusSink(CollectorRegistry())
    extra = {"featurize": featurize(tok)} if featurize is not None else {}
    pipeline = Pipeline(config, profiles=load_profiles(config.reference.paths), tokenizer=tok, sink=sink, **extra)
    records = [Record(line) for line in lines]
    t0, c0 = time.perf_counter(), time.process_time()
    windows = 0
    for lo in range(0, len(records), batch):
        windows += len(pipeline.process(records[lo : lo + batch]).windows)
    windows += len(pipeline.flush().windows)
    elapsed = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    assert windows > 0 and pipeline.stats.valid == len(lines)
    return elapsed


def time_orjson(lines: list[bytes]) -> float:
    loads = orjson.loads
    t0 = time.perf_counter()
    for line in lines:
        loads(line)
    return time.perf_counter() - t0


def throughput(args) -> None:
    n = args.events
    ref_path = events_file(20_000, seed=5)
    lines = events_file(n, drift_after=n // 2).read_bytes().splitlines()
    tok = tokenizer_dir()
    print(f"pipeline throughput: {n} events, batch {args.batch}, {args.repeats} repeats, pinned to one CPU")
    print(f"{'configuration':<42} {'median s':>9} {'events/s':>10} {'orjson.loads/s':>15} {'ratio':>7}")
    for label, tokenizer in (("text features", None), ("text + tokenizer features", tok)):
        if label.startswith("text +") and tokenizer is None:
            print(f"{label:<34} skipped: monitor.devkit.synth.model not available")
            continue
        with tempfile.TemporaryDirectory() as d:
            profile, _ = build_profile(
                str(ref_path),
                ProfileOptions(sample_cap=10_000),
                tokenizer=TokenizerFeaturizer(tokenizer, max_length=512) if tokenizer else None,
            )
            # oov_rate on and off on the same lines, interleaved in the same process: the profile with its
            # hashed vocabulary, and the same profile without it (as one built before oov_rate).
            paths = {"+ oov_rate": Path(d) / "profile.json", "no oov_rate": Path(d) / "profile-no-oov.json"}
            save_profile(profile, paths["+ oov_rate"])
            save_profile(without_vocabulary(profile), paths["no oov_rate"])
            pipe_t: dict[str, list[float]] = {k: [] for k in paths}
            cpu_t: dict[str, list[float]] = {k: [] for k in paths}
            json_t = []
            for _ in range(args.repeats):
                json_t.append(time_orjson(lines))
                for k, path in paths.items():
                    pipe_t[k].append(time_pipeline(lines, path, tokenizer, args.batch, cpu_t[k]))
        j = statistics.median(json_t)
        for k, times in pipe_t.items():
            p = statistics.median(times)
            print(f"{label + ', ' + k:<42} {p:>9.3f} {n / p:>10,.0f} {n / j:>15,.0f} {j / p:>7.3f}")
        off, on = (statistics.median(pipe_t[k]) for k in ("no oov_rate", "+ oov_rate"))
        cpu_off, cpu_on = (statistics.median(cpu_t[k]) for k in ("no oov_rate", "+ oov_rate"))
        print(f"{'':<42} oov_rate on / off: {off / on:.3f}x events/s (wall), {cpu_off / cpu_on:.3f}x by CPU time "
              f"({n / cpu_on:,.0f} vs {n / cpu_off:,.0f} events per CPU second)")


def reference_featurizer(tok):
    """``base_features`` with the text and tokenizer features computed as before issue 23 (per string)."""
    import monitor.ingest.features as features_module
    from bench.text_features import ReferenceChunkCounts
    from tests.monitor.ingest.text_features_reference import reference_text_features_and_words

    old_tok = ReferenceChunkCounts(tok) if tok is not None else None

    def per_string(texts, index):
        # the per-string features; the words then split again, as oov_rate and the evidence did then
        from monitor.ingest.words import split_words

        return reference_text_features_and_words(texts)[0], split_words(texts)

    def featurize(events, features, tokenizer):
        kernel = features_module.text_features_batch
        features_module.text_features_batch = per_string
        try:
            return features_module.base_features(events, features, old_tok if tokenizer is not None else None)
        finally:
            features_module.text_features_batch = kernel

    return featurize


def before_after(args) -> None:
    """The pipeline with the per-string text features (before issue 23) and the batch kernels, alternated."""
    n = args.events
    ref_path = events_file(20_000, seed=5)
    lines = events_file(n, drift_after=n // 2).read_bytes().splitlines()
    tok = tokenizer_dir()
    print(f"pipeline before/after the batch text kernels: {n} events, batch {args.batch}, {args.repeats} "
          "alternated repeats, + oov_rate, pinned to one CPU")
    print(f"{'configuration':<28} {'before ev/s':>12} {'after ev/s':>11} {'wall':>6} {'before /CPU s':>14} "
          f"{'after /CPU s':>13} {'CPU':>6}")
    for label, tokenizer in (("text features", None), ("text + tokenizer features", tok)):
        with tempfile.TemporaryDirectory() as d:
            profile, _ = build_profile(str(ref_path), ProfileOptions(sample_cap=10_000),
                                       tokenizer=TokenizerFeaturizer(tokenizer, max_length=512) if tokenizer else None)
            path = Path(d) / "profile.json"
            save_profile(profile, path)
            wall: dict[str, list[float]] = {"before": [], "after": []}
            cpu: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(args.repeats):
                wall["before"].append(time_pipeline(lines, path, tokenizer, args.batch, cpu["before"],
                                                    featurize=reference_featurizer))
                wall["after"].append(time_pipeline(lines, path, tokenizer, args.batch, cpu["after"]))
        wb, wa, cb, ca = (statistics.median(x) for x in (wall["before"], wall["after"], cpu["before"], cpu["after"]))
        print(f"{label:<28} {n / wb:>12,.0f} {n / wa:>11,.0f} {wb / wa:>5.2f}x {n / cb:>14,.0f} {n / ca:>13,.0f} "
              f"{cb / ca:>5.2f}x")


def without_vocabulary(profile):
    """The profile as one built before oov_rate: no vocabulary, no oov_rate sample or feature name."""
    import dataclasses

    from monitor.ingest.oov import OOV_FEATURE

    return dataclasses.replace(profile, vocabulary=None,
                               feature_names=tuple(f for f in profile.feature_names if f != OOV_FEATURE),
                               samples={k: v for k, v in profile.samples.items() if k != OOV_FEATURE})


def peak_rss(n_values: list[int]) -> None:
    print("\npeak RSS of `nlpmon replay` (fresh process each; reference of 20k events, 5-min windows)")
    ref = events_file(20_000, seed=5)
    with tempfile.TemporaryDirectory() as d:
        profile, _ = build_profile(str(ref), ProfileOptions(sample_cap=10_000))
        save_profile(profile, Path(d) / "p.json")
        rows = []
        for n in n_values:
            path = events_file(n, drift_after=n // 2)
            code = (
                "import resource, sys; from monitor.cli import main; "
                f"rc = main(['replay', {str(path)!r}, '-r', {str(Path(d) / 'p.json')!r}, '-o', '/dev/null', "
                "'--set', 'window.max_future_seconds=1e9']); "
                "print('RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
            )
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
            elapsed = time.perf_counter() - t0
            rss = int(next(line.split()[1] for line in out.stderr.splitlines() if line.startswith("RSS_KB")))
            rows.append((n, rss, elapsed))
            print(f"  {n:>9,} events: peak RSS {rss / 1024:7.1f} MiB  ({elapsed:.0f} s)")
        base = rows[0][1]
        for n, rss, _ in rows[1:]:
            print(f"  RSS {n:,} / {rows[0][0]:,}: {rss / base:.3f}")


def distinct_models(n: int, batch: int) -> None:
    """Every event from a model never seen before: memory and exported series must stay bounded."""
    import resource

    from monitor.runtime.wiring import build_sink

    config = load_config(env={}, overrides={"source.kind": "stdin", "window.max_future_seconds": 1e9})
    registry = CollectorRegistry()
    pipeline = Pipeline(config, sink=build_sink(config, registry))
    t0_ms = 1_764_000_000_000
    print(f"\n{n:,} events, each from a distinct model (metrics.max_tracked_streams = {config.metrics.max_tracked_streams:,}, "
          f"metrics.max_streams = {config.metrics.max_streams})")
    t0 = time.perf_counter()
    checkpoints = {n // 10, n // 2, n}
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        records = [Record(orjson.dumps({"ts": t0_ms + i * 50, "model": f"model-{i}", "version": "1", "prediction": "pos",
                                        "confidence": 0.9, "latency_ms": 12.5, "text": "a short input text"}))
                   for i in range(lo, hi)]
        pipeline.process(records)
        if hi in checkpoints or (lo < n // 10 <= hi) or (lo < n // 2 <= hi):
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            series = sum(len(m.samples) for m in registry.collect())
            print(f"  after {hi:>9,} events: peak RSS {rss:7.1f} MiB, tracked streams {pipeline.tracked_streams:,}, "
                  f"exported series {series:,}, untracked events {pipeline.stats.untracked:,}")
    print(f"  {n / (time.perf_counter() - t0):,.0f} events/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rss", type=int, nargs="*", metavar="N", help="also measure peak RSS replaying N events")
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed)")
    ap.add_argument("--before-after", action="store_true",
                    help="only: the pipeline with the per-string text features and with the batch kernels, alternated")
    ap.add_argument("--distinct-models", type=int, default=0, metavar="N",
                    help="only: N events from N distinct models; peak RSS and exported series (bounded)")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {args.cpu if args.cpu is not None else cpus[0]})
    if args.distinct_models:
        distinct_models(args.distinct_models, args.batch)
        return
    if args.before_after:
        before_after(args)
        return
    throughput(args)
    if args.rss:
        peak_rss(args.rss)


if __name__ == "__main__":
    main()
