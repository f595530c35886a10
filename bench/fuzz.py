"""Hostile records through the whole pipeline (decode -> features -> windows -> detectors -> Prometheus sink).

    .venv/bin/python bench/fuzz.py [--records 100000] [--batch 1000] [--seed 0]

The records come from monitor.devkit.synth.hostile (arbitrary bytes, truncations, byte flips, type swaps,
huge numbers, deep nesting, odd Unicode, plus valid events). Prints the records tried, the crashes (an
exception out of Pipeline.process/flush: must be 0), whether every record is accounted for
(valid + invalid = records), the windows tested, and the records/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402

from monitor.config import load_config  # noqa: E402
from monitor.devkit.synth.hostile import hostile_records  # noqa: E402
from monitor.devkit.synth.traffic import generate_events, write_events  # noqa: E402
from monitor.jobs.profile_builder import build_profile  # noqa: E402
from monitor.pipeline import Pipeline, Record  # noqa: E402
from monitor.runtime.wiring import build_sink  # noqa: E402

T0_MS = 1_764_000_000_000  # hostile_records' first event time; one record every 20 ms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_events(Path(d) / "ref.jsonl", generate_events(3000, seed=1, rate_per_s=20))
        profile, _ = build_profile(str(Path(d) / "ref.jsonl"))
    config = load_config(env={}, overrides={"source.kind": "stdin", "window.size_seconds": 60, "window.min_events": 50})
    registry = CollectorRegistry()
    records = [Record(raw, f"hostile:{i}") for i, raw in enumerate(hostile_records(args.records, seed=args.seed))]
    # The wall clock as it would be live, so window.max_future_seconds (300 s) applies: a byte flip in `ts`
    # far into the future is rejected, as in production.
    end_ms = T0_MS + 20 * len(records)
    pipeline = Pipeline(config, profiles={profile.model: profile}, sink=build_sink(config, registry), now_ms=lambda: end_ms)
    crashes, windows, tested = 0, 0, 0
    t0 = time.perf_counter()
    for lo in range(0, len(records), args.batch):
        try:
            closed = pipeline.process(records[lo : lo + args.batch]).windows
        except Exception as exc:  # what the bench counts; the pipeline must never let one out
            crashes += 1
            print(f"crash in batch at {lo}: {type(exc).__name__}", file=sys.stderr)
            continue
        windows += len(closed)
        tested += sum(r.tested for r in closed)
    try:
        closed = pipeline.flush().windows
        windows, tested = windows + len(closed), tested + sum(r.tested for r in closed)
    except Exception as exc:
        crashes += 1
        print(f"crash in flush: {type(exc).__name__}", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    s = pipeline.stats
    accounted = s.valid + sum(s.invalid.values())
    scrape = sum(len(m.samples) for m in registry.collect())
    print(f"hostile records tried: {len(records):,}  crashes: {crashes}  accounted (valid + invalid = records): "
          f"{accounted == len(records)} ({s.valid:,} + {sum(s.invalid.values()):,})")
    print(f"windows closed: {windows}  tested: {tested}  internal_error: {s.invalid['internal_error']}  "
          f"series scraped: {scrape:,}  {len(records) / elapsed:,.0f} records/s")
    print("by reason: " + ", ".join(f"{k} {v:,}" for k, v in sorted(s.invalid.items())))
    return 1 if crashes or accounted != len(records) else 0


if __name__ == "__main__":
    sys.exit(main())
