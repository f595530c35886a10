"""Late label events: the join's cost in the pipeline, its memory, and the calibration refreshed from labels.

    .venv/bin/python bench/labels.py                      # join on vs off, memory per pending prediction
    .venv/bin/python bench/labels.py --repeats 7 --events 200000
    .venv/bin/python bench/labels.py --calibration        # estimate error with and without refreshed calibration
    .venv/bin/python bench/labels.py --estimator          # the one estimator on two streams: MAE, interval coverage

1. Throughput (target: on >= 0.9x off). One stream of ``--events`` predictions with text, two-class
   probabilities and a request id, plus label events for half of them (``--label-share``) 1 s to 10 min later, in event-time
   order, read into memory once; the same records go through ``Pipeline.process`` (batches of 1000, 5-minute
   windows, a reference profile so that every window is tested) with ``[labels] enabled`` false (*off*: the
   label events are still decoded, validated and counted) and true (*on*: joined, tallied, results closed).
   Runs alternate off/on in one process pinned to one CPU; the figures are medians over ``--repeats`` runs.
2. Memory per pending prediction: tracemalloc's count of the bytes a ``LabelJoin`` retains for N predictions
   waiting for their label (each event built and dropped, as in the pipeline, so the request id string is
   counted), for short ids (``r7-123456``) and UUIDs; and the checkpoint bytes per pending prediction
   (msgpack, as the Kafka sidecar writes them).
3. ``--calibration``: a stream whose accuracy changes while its confidences do not (concept drift: 3 days
   at 2 events/s, 5-minute windows; accuracy as calibrated for a day, then falling by 20 points over a day,
   then a day at the lower level), 30% of the predictions labelled 0 to 40 minutes later (the join waits
   1 h). The label-free estimate uses a re-evaluation table fitted once on 5,000 labelled pairs of the first
   regime (what a re-evaluation run gives), or, with ``labels.refresh_calibration``, the table refitted from
   the realised labels of the latest 12 closed windows. Printed: the mean absolute error of the estimate
   against the realised accuracy per window (windows with >= 50 labelled predictions), overall and per day.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402

from detectors.accuracy_estimate import blended_accuracy  # noqa: E402
from detectors.classification import estimate_accuracy, fit_confidence_calibration  # noqa: E402
from monitor.ab.labels import LabelJoin  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.devkit.synth.traffic import generate_events, write_events  # noqa: E402
from monitor.ingest.events import Event  # noqa: E402
from monitor.jobs.profile_builder import ProfileOptions, build_profile  # noqa: E402
from monitor.pipeline import Pipeline, Record  # noqa: E402

MIN = 60_000


def pin_one_cpu() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


# -- 1. throughput -----------------------------------------------------------------------------------------------
def stream(n: int, label_share: float = 0.5) -> list[Record]:
    events = generate_events(n, seed=11, rate_per_s=20.0, label_event_share=label_share,
                             label_delay_ms=(1_000, 10 * MIN))
    return [Record(orjson.dumps(e), "bench") for e in events]


def profile_for(tmp: Path):
    path = tmp / "clean.jsonl"
    write_events(path, generate_events(20_000, seed=5, rate_per_s=20.0))
    return build_profile(str(path), ProfileOptions(model="sentiment")).profile


def run_once(records: list[Record], profile, enabled: bool) -> tuple[float, int]:
    config = load_config(env={}, overrides={"source.kind": "stdin", "window.max_future_seconds": 1e12,
                                            "labels.enabled": enabled})
    pipeline = Pipeline(config, profiles={"sentiment": profile})
    labels = 0
    started = time.perf_counter()
    for lo in range(0, len(records), 1000):
        labels += len(pipeline.process(records[lo:lo + 1000]).labels)
    labels += len(pipeline.flush().labels)
    return len(records) / (time.perf_counter() - started), labels


def throughput(n: int, repeats: int, label_share: float) -> None:
    records = stream(n, label_share)
    n_labels = sum(b'"kind":"label"' in r.value for r in records)
    with tempfile.TemporaryDirectory() as tmp:
        profile = profile_for(Path(tmp))
    rates: dict[bool, list[float]] = {False: [], True: []}
    results = 0
    for r in range(repeats):
        for enabled in ((False, True) if r % 2 == 0 else (True, False)):
            rate, closed = run_once(records, profile, enabled)
            rates[enabled].append(rate)
            results = max(results, closed)
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"records: {len(records):,} ({n:,} predictions, {n_labels:,} label events); {results} labels results; "
          f"median of {repeats} alternating runs each, one CPU")
    print(f"  join off: {off:>10,.0f} records/s   (runs: {', '.join(f'{x:,.0f}' for x in rates[False])})")
    print(f"  join on:  {on:>10,.0f} records/s   (runs: {', '.join(f'{x:,.0f}' for x in rates[True])})")
    pairs = statistics.median(a / b for a, b in zip(rates[True], rates[False]))
    print(f"  on / off: {on / off:.3f}x of the medians, {pairs:.3f}x the median of each repeat's ratio "
          "(target >= 0.9x)")


# -- 2. memory per pending prediction ------------------------------------------------------------------------------
def memory(n: int) -> None:
    import uuid

    for name, make_id in (("short id (r7-123456)", lambda i: f"r7-{i}"), ("UUID", lambda i: str(uuid.UUID(int=i + 1)))):
        ids = None
        join = LabelJoin(max_delay_ms=86_400_000, max_pending=n + 1, size_ms=300_000)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            # Built and dropped as in the pipeline: what stays is what the join keeps.
            join.add_prediction(Event(ts_ms=1_764_000_000_000 + i * 50, model="sentiment", version="1",
                                      prediction="positive" if i % 3 else "negative", confidence=0.5 + (i % 500) / 1000,
                                      request_id=make_id(i)))
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        state = msgspec.msgpack.encode(join.state())
        assert join.pending == n, ids
        print(f"  {name}: {retained / n:,.0f} bytes per pending prediction in memory ({n:,} pending: "
              f"{retained / 2**20:,.1f} MiB); checkpoint {len(state) / n:,.0f} bytes each")


# -- 3. calibration refreshed from realised labels -------------------------------------------------------------------
def concept_drift_records(seed: int = 3, days: int = 3, rate_per_s: float = 2.0, stream: str = "accuracy_drop"):
    """Predictions whose confidences keep their distribution while the accuracy behind them falls
    (``accuracy_drop``), or whose confidences fall while their accuracy does not (``under_confident``: over day
    2 a second population replaces the first, on which the classifier is right as often but shows only half
    the confidence margin above 0.5)."""
    rng = np.random.default_rng(seed)
    t0 = 1_764_000_000_000
    n = int(days * 86_400 * rate_per_s)
    ts = t0 + np.cumsum(rng.exponential(1000 / rate_per_s, n)).astype(np.int64)
    conf = np.clip(0.5 + rng.beta(2.0, 1.2, n) * 0.5, 0.5, 1.0)
    day = (ts - t0) / 86_400_000
    ramp = np.clip(day - 1.0, 0.0, 1.0)  # 0 for a day, then to 1 over a day, then held
    if stream == "under_confident":
        correct = rng.random(n) < conf
        second = rng.random(n) < ramp
        conf = np.where(second, 0.5 + (conf - 0.5) * 0.5, conf)
    else:
        correct = rng.random(n) < np.clip(conf - ramp * 0.20, 0.0, 1.0)
    pred = np.where(rng.random(n) < 0.55, "positive", "negative")
    labelled = rng.random(n) < 0.3
    delay = rng.uniform(0, 40 * MIN, n).astype(np.int64)
    items = []
    for i in range(n):
        items.append((int(ts[i]), 0, {"ts": int(ts[i]), "model": "m", "version": "1", "request_id": f"r{i}",
                                      "prediction": pred[i], "confidence": round(float(conf[i]), 6)}))
        if labelled[i]:
            truth = pred[i] if correct[i] else ("negative" if pred[i] == "positive" else "positive")
            items.append((int(ts[i] + delay[i]), 1, {"kind": "label", "ts": int(ts[i] + delay[i]), "model": "m",
                                                     "request_id": f"r{i}", "label": truth}))
    items.sort(key=lambda x: (x[0], x[1]))
    # The re-evaluation run: 5,000 labelled pairs of the first regime (calibrated).
    c0 = np.clip(0.5 + rng.beta(2.0, 1.2, 5000) * 0.5, 0.5, 1.0)
    table = fit_confidence_calibration(c0, rng.random(5000) < c0, bins=10)
    return [Record(orjson.dumps(e), "bench") for _, _, e in items], table, t0


def calibration() -> None:
    records, table, t0 = concept_drift_records()
    fixed = lambda result, confidences: estimate_accuracy(table, confidences[np.isfinite(confidences)])  # noqa: E731
    out = {}
    for refresh in (False, True):
        config = load_config(env={}, overrides={
            "source.kind": "stdin", "window.max_future_seconds": 1e12, "window.min_events": 50,
            "labels.enabled": True, "labels.max_delay_seconds": 3600, "labels.refresh_calibration": refresh,
            "labels.calibration_windows": 12,
        })  # fmt: skip
        pipeline = Pipeline(config, on_window_confidences=fixed)
        results = []
        for lo in range(0, len(records), 1000):
            results += pipeline.process(records[lo:lo + 1000]).labels
        results += pipeline.flush().labels
        out[refresh] = [r for r in results if not r.partial and r.labelled >= 50 and r.estimated_accuracy is not None]
    print(f"{len(records):,} records (3 days, 2 predictions/s, 30% labelled 0-40 min later), 5-minute windows; "
          f"{len(out[False])} windows with >= 50 labelled predictions")
    print("  mean absolute error of estimated vs realised accuracy per window, in accuracy points:")
    print(f"  {'':28}{'re-evaluation table':>22}{'refreshed from labels':>24}")
    for name, lo_day, hi_day in (("all 3 days", 0, 3), ("day 1 (calibrated)", 0, 1), ("day 2 (accuracy falling)", 1, 2),
                                 ("day 3 (20 points lower)", 2, 3)):
        row = []
        for refresh in (False, True):
            err = [abs(r.estimated_accuracy - r.accuracy) for r in out[refresh]
                   if lo_day <= (r.window_start_ms - t0) / 86_400_000 < hi_day]
            row.append(100 * float(np.mean(err)))
        print(f"  {name:28}{row[0]:>22.2f}{row[1]:>24.2f}")


def estimator_check(max_delay_s: float = 3600) -> None:
    """``--estimator``: the one estimator against the held-out table alone, on the accuracy-drop stream and
    the under-confident stream: per-window mean absolute error, the 95% interval's mean width, and its
    coverage of realised accuracy, raw and with the labelled sample's binomial spread added (the interval
    is for all of the window's predictions; the realised figure is measured on the labelled 30%)."""
    print(f"3 days, 2 predictions/s, 30% labelled 0-40 min later; 5-minute windows, labels.max_delay_seconds = "
          f"{max_delay_s:g}; windows with >= 50 labelled predictions")
    print(f"  {'':40}{'MAE':>7}{'width':>8}{'coverage':>10}{'+ sample':>10}{'windows':>9}")
    for stream in ("accuracy_drop", "under_confident"):
        records, table, _ = concept_drift_records(stream=stream)
        for name, refresh in (("held-out table only (before)", False), ("table + labels (after)", True)):
            rs = _estimator_run(records, table, refresh, max_delay_s)
            acc = np.array([r.accuracy for r in rs])
            est = np.array([r.estimated_accuracy for r in rs])
            lo, hi = np.array([r.estimated_accuracy_low for r in rs]), np.array([r.estimated_accuracy_high for r in rs])
            n_lab = np.array([r.labelled for r in rs], dtype=np.float64)
            # The interval as a normal spread, plus the labelled sample's binomial spread around the window's accuracy.
            sd = np.sqrt(((hi - lo) / (2 * 1.96)) ** 2 + est * (1 - est) / n_lab)
            row = (100 * np.mean(np.abs(est - acc)), 100 * np.mean(hi - lo), 100 * np.mean((lo <= acc) & (acc <= hi)),
                   100 * np.mean(np.abs(acc - est) <= 1.96 * sd))
            print(f"  {stream + ': ' + name:40}{row[0]:>7.2f}{row[1]:>8.2f}{row[2]:>9.1f}%{row[3]:>9.1f}%{len(rs):>9}")


def _estimator_run(records, table, refresh: bool, max_delay_s: float) -> list:
    def observe(result, confidences, evidence=None):
        c = confidences[np.isfinite(confidences)]
        return blended_accuracy(c, table, evidence, shifted=result.inputs_shifted) if c.size else None

    config = load_config(env={}, overrides={
        "source.kind": "stdin", "window.max_future_seconds": 1e12, "window.min_events": 50,
        "labels.enabled": True, "labels.max_delay_seconds": max_delay_s, "labels.refresh_calibration": refresh,
    })  # fmt: skip
    pipeline = Pipeline(config, on_window_confidences=observe)
    results = []
    for lo in range(0, len(records), 1000):
        results += pipeline.process(records[lo:lo + 1000]).labels
    results += pipeline.flush().labels
    return [r for r in results if not r.partial and r.labelled >= 50 and r.estimated_accuracy is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="predictions in the throughput stream")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each (alternating)")
    parser.add_argument("--label-share", type=float, default=0.5, help="share of predictions with a label event")
    parser.add_argument("--memory-n", type=int, default=200_000, help="pending predictions for the memory figure")
    parser.add_argument("--calibration", action="store_true", help="only the calibration-refresh measurement")
    parser.add_argument("--estimator", action="store_true", help="only the estimator's error and interval coverage")
    args = parser.parse_args(argv)
    pin_one_cpu()
    if args.estimator:
        estimator_check()
        return 0
    if args.calibration:
        calibration()
        return 0
    throughput(args.events, args.repeats, args.label_share)
    print("memory per pending prediction:")
    memory(args.memory_n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
