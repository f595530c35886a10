"""What the evidence kept with every window costs (docs/evidence.md): pipeline speed with it on and off, and
the bytes of each stored ``window_evidence`` row.

    .venv/bin/python bench/evidence.py                      # 200k events, text features, then + tokenizer
    .venv/bin/python bench/evidence.py --events 100000 --repeats 7 --no-tokenizer
    .venv/bin/python bench/evidence.py --variants             # the cost of each part (tokens, exemplars)

Speed: the same lines through the same profile with ``[explain] enabled = true`` and ``false``: two pipelines
in one process, pinned to one CPU, fed the same batches in turn (which goes first alternates), each call
timed; medians of --repeats passes, by wall time and by process CPU time. Target (issue 20): on / off >= 0.9.

Size: the run's windows at the default 5-minute windows (each holds ~6,000 events at 20 events/s) committed
to a SQLite store; the stored JSON of each ``window_evidence`` row is measured. Target: <= 16 KB per stream
and window.
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
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sqlalchemy as sa  # noqa: E402

from bench.pipeline import events_file, tokenizer_dir  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.ingest.tokenizer import TokenizerFeaturizer  # noqa: E402
from monitor.jobs.profile_builder import ProfileOptions, build_profile  # noqa: E402
from monitor.pipeline import Pipeline, Record  # noqa: E402
from sinks.sql import SqlStore  # noqa: E402


def pipeline(profile, tokenizer: Path | None, *, explain: bool) -> Pipeline:
    over = {"source.kind": "stdin", "window.max_future_seconds": 1e9, "explain.enabled": explain}
    if tokenizer:
        over["tokenizer.path"] = str(tokenizer)
    config = load_config(env={}, overrides=over)
    tok = TokenizerFeaturizer(tokenizer, max_length=512) if tokenizer else None
    return Pipeline(config, profiles={profile.model: profile}, tokenizer=tok)


def run_pair(lines: list[bytes], profile, tokenizer: Path | None, *, batch: int, first_on: bool):
    """One pass of the lines through a pipeline with evidence and one without, batch by batch in turn (so a
    busy neighbour slows both alike): ({on: wall seconds}, {on: CPU seconds}, the windows with evidence)."""
    pipes = {True: pipeline(profile, tokenizer, explain=True), False: pipeline(profile, tokenizer, explain=False)}
    records = [Record(line, f"events.jsonl:{i + 1}") for i, line in enumerate(lines)]
    wall, cpu = {True: 0.0, False: 0.0}, {True: 0.0, False: 0.0}
    windows = []
    order = (True, False) if first_on else (False, True)
    for lo in range(0, len(records) + batch, batch):
        part = records[lo : lo + batch]
        for on in order:
            t0, c0 = time.perf_counter(), time.process_time()
            out = pipes[on].process(part).windows if part else pipes[on].flush().windows
            wall[on] += time.perf_counter() - t0
            cpu[on] += time.process_time() - c0
            if on:
                windows += out
        order = order[::-1]
    assert windows and pipes[True].stats.valid == len(lines)
    return wall, cpu, windows


def stored_sizes(windows) -> list[int]:
    """Bytes of each window's stored evidence JSON (a SQLite store, as the daemon writes it)."""
    with tempfile.TemporaryDirectory() as d:
        with SqlStore(f"sqlite:///{d}/s.db") as store:
            store.create_schema()
            store.commit("bench", results=windows, checkpoints={})
            with store.engine.connect() as conn:
                return [int(n) for (n,) in conn.execute(sa.text("SELECT length(evidence) FROM window_evidence"))]


def measure(label: str, lines: list[bytes], tokenizer: Path | None, args) -> None:
    ref = events_file(20_000, seed=5)
    tok = TokenizerFeaturizer(tokenizer, max_length=512) if tokenizer else None
    profile, _ = build_profile(str(ref), ProfileOptions(sample_cap=10_000), tokenizer=tok)
    times = {True: [], False: []}
    cpus = {True: [], False: []}
    windows = None
    for i in range(args.repeats):
        wall, cpu, kept = run_pair(lines, profile, tokenizer, batch=args.batch, first_on=i % 2 == 0)
        for on in (True, False):
            times[on].append(wall[on])
            cpus[on].append(cpu[on])
        windows = windows or kept
    n = len(lines)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    c_on, c_off = statistics.median(cpus[True]), statistics.median(cpus[False])
    print(f"{label}: evidence off {n / off:,.0f} events/s, on {n / on:,.0f} events/s: on / off {off / on:.3f}x "
          f"(wall), {c_off / c_on:.3f}x by CPU time ({n / c_on:,.0f} vs {n / c_off:,.0f} events per CPU s)")
    sizes = stored_sizes(windows)
    events = [w.events for w in windows]
    print(f"{'':<{len(label) + 2}}window_evidence rows: {len(sizes)}, bytes median {statistics.median(sizes):,.0f}, "
          f"max {max(sizes):,} (windows of median {statistics.median(events):,.0f} events)")


def variants(lines: list[bytes], repeats: int, batch: int) -> None:
    """Where the cost goes (text features): evidence off, full, without tokens, without exemplars, fed the
    same batches in turn; extra CPU per event over off."""
    profile, _ = build_profile(str(events_file(20_000, seed=5)), ProfileOptions(sample_cap=10_000))
    settings = {"off": {"enabled": False}, "full": {}, "no tokens": {"tokens": False}, "no exemplars": {"exemplars": 0},
                "neither": {"tokens": False, "exemplars": 0}}
    records = [Record(line, f"events.jsonl:{i + 1}") for i, line in enumerate(lines)]
    cpu = {k: 0.0 for k in settings}
    for _ in range(repeats):
        over = {"source.kind": "stdin", "window.max_future_seconds": 1e9}
        pipes = {k: Pipeline(load_config(env={}, overrides={**over, **{f"explain.{a}": v for a, v in kv.items()}}),
                             profiles={profile.model: profile}) for k, kv in settings.items()}
        order = list(settings)
        for lo in range(0, len(records), batch):
            for k in order:
                c0 = time.process_time()
                pipes[k].process(records[lo : lo + batch])
                cpu[k] += time.process_time() - c0
            order.reverse()
    n = len(lines) * repeats
    for k in settings:
        print(f"  {k:<13} {cpu['off'] / cpu[k]:.3f}x of off by CPU time, {(cpu[k] - cpu['off']) / n * 1e6:+.2f} us per event")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed)")
    ap.add_argument("--no-tokenizer", action="store_true", help="only the text-feature configuration")
    ap.add_argument("--variants", action="store_true", help="only: the cost of each part (tokens, exemplars)")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {args.cpu if args.cpu is not None else cpus[0]})
    lines = events_file(args.events, drift_after=args.events // 2).read_bytes().splitlines()
    print(f"evidence cost: {args.events} events, batch {args.batch}, {args.repeats} repeats, pinned to one CPU")
    if args.variants:
        variants(lines, args.repeats, args.batch)
        return
    measure("text features", lines, None, args)
    tok = None if args.no_tokenizer else tokenizer_dir()
    if tok is not None:
        measure("text + tokenizer features", lines, tok, args)


if __name__ == "__main__":
    main()
