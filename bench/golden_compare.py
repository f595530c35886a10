"""Same inputs, same outputs: run one set of events through two checkouts of nlpmon and diff what they produce.

    .venv/bin/python bench/golden_compare.py --base ../perf-daemon-base      # this tree against another
    .venv/bin/python bench/golden_compare.py --capture OUT_DIR               # one capture (what --base runs)

A capture, in the checkout given by its PYTHONPATH: deterministic events (two models, drift, errors, label
events, and hostile records: bad JSON, invalid UTF-8, empty values, a missing field, a far-future timestamp)
go through

- ``nlpmon replay`` (with --dead-letter): ``replay.jsonl``, ``replay-dead.jsonl``; and again with the tiny
  tokenizer's features (``--tokenizer``, profiles built with it): ``replay-tokenizer.jsonl``;
- the Kafka daemon against an embedded tansu broker (two partitions, keyed by model, SQLite store, labels on,
  dead-letter and output topics): the SQL rows of ``window_results``, ``drift_events``, ``label_results`` and ``window_evidence``
  (``sql.txt``), the records on the output and dead-letter topics (``topics.txt``, sorted per partition by
  offset), and ``/metrics`` (``metrics.txt``) once the final checkpoint is published.

Histogram sums are compared to 10 significant digits (:func:`_summed`). Left out as wall-clock or process facts: ``process_*`` and ``python_*`` series, the last checkpoint's
duration and result count (``nlpmon_checkpoint_*``: how many checkpoints a run took depends on poll timing),
and the checkpoint rows (their ``updated_at_ms``; their state is covered by the results it produces).
Compare mode runs both captures (each in a fresh process, from this script) and prints a unified diff per
file; exit 1 when anything differs.
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve()
N_EVENTS = 12_000
SKIP_METRICS = ("process_", "python_", "nlpmon_checkpoint_duration_seconds", "nlpmon_checkpoint_results")


def events() -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: two models' traffic with drift and label events, and hostile records between."""
    import orjson

    from monitor.devkit.synth.traffic import generate_events

    out = []
    for model, seed in (("sentiment", 3), ("intent", 4)):
        for e in generate_events(N_EVENTS, seed=seed, model=model, rate_per_s=20.0, drift_after=N_EVENTS // 2,
                                 label_event_share=0.3, error_share=0.01):
            out.append((model.encode(), orjson.dumps(e)))
    hostile = [b"{not json", b"\xff\xfe\x00bad utf-8", b"", b'{"ts": 1764000000000, "model": "sentiment"}',
               orjson.dumps({"ts": 32_000_000_000_000, "model": "sentiment", "version": "1", "prediction": "pos",
                             "confidence": 0.9, "latency_ms": 3.0, "text": "from the far future"}),
               b"[1, 2, 3]", b'{"ts": "yesterday", "model": "intent"}']
    mixed = []
    for i, kv in enumerate(sorted(out, key=lambda kv: orjson.loads(kv[1])["ts"])):
        mixed.append(kv)
        if i % 997 == 0:
            h = hostile[(i // 997) % len(hostile)]
            mixed.append((kv[0], h))
    return mixed


def capture(out: Path) -> None:
    import logging

    import orjson

    logging.getLogger("nlpmon").setLevel(logging.ERROR)
    out.mkdir(parents=True, exist_ok=True)
    from monitor.devkit.synth.traffic import generate_events, write_events
    from monitor.ingest.reference import save_profile
    from monitor.jobs.profile_builder import ProfileOptions, build_profile

    pairs = events()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        profiles = []
        for model, seed in (("sentiment", 5), ("intent", 6)):
            write_events(work / f"ref-{model}.jsonl", generate_events(4_000, seed=seed, model=model, rate_per_s=20.0))
            profile, _ = build_profile(str(work / f"ref-{model}.jsonl"), ProfileOptions(sample_cap=2_000))
            save_profile(profile, work / f"{model}.json")
            profiles.append(str(work / f"{model}.json"))
        (work / "events.jsonl").write_bytes(b"".join(v.replace(b"\n", b" ") + b"\n" for _, v in pairs))
        replay(work, profiles, out)
        kafka(work, pairs, profiles, out)
        tokenizer = os.environ.get("GOLDEN_TOKENIZER")
        if tokenizer:  # the same events with tokenizer features, against profiles built with the tokenizer
            from monitor.ingest.tokenizer import TokenizerFeaturizer

            tok_profiles = []
            for model in ("sentiment", "intent"):
                profile, _ = build_profile(str(work / f"ref-{model}.jsonl"), ProfileOptions(sample_cap=2_000),
                                           tokenizer=TokenizerFeaturizer(tokenizer))
                save_profile(profile, work / f"{model}-tokenizer.json")
                tok_profiles.append(str(work / f"{model}-tokenizer.json"))
            replay(work, tok_profiles, out, tokenizer=tokenizer)


def replay(work: Path, profiles: list[str], out: Path, tokenizer: str | None = None) -> None:
    from monitor.cli import main

    suffix = "-tokenizer" if tokenizer else ""
    args = ["replay", str(work / "events.jsonl"), "-o", str(out / f"replay{suffix}.jsonl"),
            "--dead-letter", str(out / f"replay{suffix}-dead.jsonl"),
            "--set", "window.max_future_seconds=1e9", "--set", "labels.enabled=true", "--set", "window.size_seconds=60"]
    for p in profiles:
        args += ["-r", p]
    if tokenizer:
        args += ["--tokenizer", tokenizer]
    rc = main(args)
    assert rc == 0, rc


def kafka(work: Path, pairs, profiles: list[str], out: Path) -> None:
    import contextlib

    from kafka import KafkaConsumer, KafkaProducer
    from prometheus_client import CollectorRegistry, generate_latest

    from monitor.config import load_config
    from monitor.devkit.embedded_broker import FAST_GROUP, start_tansu
    from monitor.runtime.kafka_daemon import KafkaDaemon
    from monitor.runtime.shutdown import Shutdown

    with start_tansu(work / "broker") as broker:
        topic = broker.create_topic("golden", partitions=2)
        dead, results = broker.create_topic("golden-dead", partitions=1), broker.create_topic("golden-out", partitions=1)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
        for i, (key, value) in enumerate(pairs):
            producer.send(topic, key=key, value=value if i % 4001 != 7 else None, partition=0 if key == b"sentiment" else 1)
        producer.flush(60)
        producer.close()
        db = work / "golden.db"
        config = load_config(env={}, overrides={
            "source.kind": "kafka", "kafka.bootstrap_servers": [broker.bootstrap], "kafka.topics": [topic],
            "kafka.group_id": "golden", "kafka.session_timeout_ms": 2000, "kafka.max_poll_records": 700,
            "kafka.dead_letter_topic": dead, "kafka.output_topic": results, "store.url": f"sqlite:///{db}",
            "reference.paths": profiles, "metrics.enabled": False, "window.max_future_seconds": 1e9,
            "labels.enabled": True, "checkpoint.interval_events": 5000, "window.size_seconds": 60.0,
        })  # fmt: skip
        registry = CollectorRegistry()
        d = KafkaDaemon(config, shutdown=Shutdown(), registry=registry)
        counts = {0: sum(1 for k, _ in pairs if k == b"sentiment"), 1: sum(1 for k, _ in pairs if k != b"sentiment")}
        with contextlib.ExitStack() as stack:
            assert d._open(stack)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                d.step()
                parts = {tp.partition: p for tp, p in d.partitions.items()}
                if len(parts) == 2 and all(parts[i].committed_offset is not None and parts[i].committed_offset >= counts[i]
                                           for i in parts):
                    break
            d._stop(None)
            d.checkpointer.publish(d.fetcher.consumer, d.partitions)
            d._set_gauges()
            if d.checkpointer.publisher is not None:
                d.checkpointer.publisher.close(timeout_s=30)
            metrics = generate_latest(registry).decode()
        (out / "metrics.txt").write_text("".join(_summed(line) + "\n" for line in metrics.splitlines()
                                                 if not any(s in line for s in SKIP_METRICS)))
        sql_dump(db, out / "sql.txt")
        lines = []
        for t in (results, dead):
            c = KafkaConsumer(t, bootstrap_servers=broker.bootstrap, group_id=f"read-{uuid.uuid4().hex[:6]}",
                              auto_offset_reset="earliest", enable_auto_commit=False, **FAST_GROUP)
            got, idle = [], 0
            while idle < 6:
                batch = c.poll(timeout_ms=500)
                idle = 0 if batch else idle + 1
                for recs in batch.values():
                    got.extend(recs)
            c.close()
            # Results are sent per checkpoint, whose boundaries depend on poll timing: compare them as a set.
            lines += sorted(f"{t.split('-')[-1]} key={r.key!r} headers={r.headers!r} value={r.value!r}" for r in got)
        (out / "topics.txt").write_text("\n".join(lines) + "\n")


def _summed(line: str) -> str:
    """A histogram's ``_sum`` to 10 significant digits: the float additions follow the poll batches, whose
    boundaries are timing (the same events summed in another grouping differ in the last bits)."""
    name, _, value = line.rpartition(" ")
    if name.split("{")[0].endswith("_sum") and not line.startswith("#"):
        return f"{name} {float(value):.10g}"
    return line


def sql_dump(db: Path, path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(db)
    lines = []
    for table in ("window_results", "drift_events", "label_results", "window_evidence"):
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        keep = [c for c in cols if not c.endswith("_at_ms")]  # wall clock (written / updated at)
        for row in conn.execute(f"SELECT {', '.join(keep)} FROM {table} ORDER BY {', '.join(keep[:4])}"):
            lines.append(f"{table} " + " ".join(f"{c}={v!r}" for c, v in zip(keep, row)))
    conn.close()
    path.write_text("\n".join(lines) + "\n")


def run_capture(tree: Path, out: Path, tokenizer: Path | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if tokenizer is not None:
        env["GOLDEN_TOKENIZER"] = str(tokenizer)
    # Not `python golden_compare.py`: that puts bench/ first on sys.path, where bench/detectors.py hides the package.
    code = f"import runpy, sys; sys.argv = ['golden_compare', '--capture', {str(out)!r}]; " \
           f"runpy.run_path({str(HERE)!r}, run_name='__main__')"
    subprocess.run([str(tree / ".venv" / "bin" / "python"), "-c", code], cwd=tree, env=env, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, help="the other checkout (its .venv runs its capture)")
    ap.add_argument("--capture", type=Path, help="write one capture of the checkout on PYTHONPATH here")
    ap.add_argument("--keep", type=Path, help="with --base: keep both captures here (base/, head/)")
    args = ap.parse_args()
    if args.capture:
        capture(args.capture)
        return 0
    if not args.base:
        ap.error("--base or --capture")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        sys.path.insert(0, str(HERE.parent.parent))
        from bench.pipeline import tokenizer_dir

        tokenizer = tokenizer_dir()  # one tiny tokenizer, built here, for both captures
        run_capture(args.base.resolve(), root / "base", tokenizer)
        run_capture(HERE.parent.parent, root / "head", tokenizer)
        differ = 0
        for name in ("replay.jsonl", "replay-dead.jsonl", "sql.txt", "topics.txt", "metrics.txt",
                     "replay-tokenizer.jsonl"):
            a, b = (root / "base" / name).read_text().splitlines(), (root / "head" / name).read_text().splitlines()
            diff = list(difflib.unified_diff(a, b, f"base/{name}", f"head/{name}", lineterm="", n=1))
            print(f"{name}: {len(b)} lines, " + ("identical" if not diff else f"{len(diff)} diff lines"))
            if diff:
                differ = 1
                print("\n".join(diff[:40]))
        return differ


if __name__ == "__main__":
    sys.exit(main())
