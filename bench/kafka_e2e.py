"""End-to-end consumption rate of the Kafka sidecar against a bare kafka-python consumer, same topic, same run.

    .venv/bin/python bench/kafka_e2e.py [--events 200000] [--repeats 3]

An embedded tansu broker gets N events (one model, one partition, keyed by model). Then, alternating, with a
fresh consumer group each time:

- bare: ``KafkaConsumer.poll`` until N records have been received (nothing else done with them);
- daemon: ``KafkaDaemon`` (in-process, SQLite store) until its durable checkpoint covers all N records:
  decode, validate, features, windows, detectors, metrics, and the checkpoints themselves.

Both clocks start at the first record received (group joins are excluded) and stop at the last record
(bare) or at the checkpoint covering it (daemon). Medians of --repeats. Checkpoint cost is reported
separately from the daemon's own accounting (time inside the checkpoint transactions).
Target (issue 3): daemon >= 0.9x bare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer  # noqa: E402

from monitor.config import load_config  # noqa: E402
from monitor.devkit.embedded_broker import FAST_GROUP, start_tansu  # noqa: E402
from monitor.devkit.synth.traffic import generate_events, write_events  # noqa: E402
from monitor.jobs.profile_builder import ProfileOptions, build_profile  # noqa: E402
from monitor.ingest.reference import save_profile  # noqa: E402
from monitor.runtime.kafka_daemon import KafkaDaemon  # noqa: E402
from monitor.runtime.shutdown import Shutdown  # noqa: E402


def produce(bootstrap: str, topic: str, n: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, batch_size=1 << 20)
    for e in generate_events(n, seed=21, rate_per_s=50.0, drift_after=n // 2):
        producer.send(topic, key=b"sentiment", value=orjson.dumps(e))
    producer.flush(120)
    producer.close()


def bare(bootstrap: str, topic: str, n: int, max_records: int) -> float:
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bare-{uuid.uuid4().hex[:6]}",
                      auto_offset_reset="earliest", enable_auto_commit=False, **FAST_GROUP)
    got, t0 = 0, None
    while got < n:
        for records in c.poll(timeout_ms=500, max_records=max_records).values():
            if t0 is None:
                t0 = time.perf_counter()
            got += len(records)
    elapsed = time.perf_counter() - t0
    c.close()
    return elapsed


def daemon(bootstrap: str, topic: str, n: int, profile: Path, workdir: Path, max_records: int) -> tuple[float, float, int]:
    config = load_config(env={}, overrides={
        "source.kind": "kafka", "kafka.bootstrap_servers": [bootstrap], "kafka.topics": [topic],
        "kafka.group_id": f"d-{uuid.uuid4().hex[:6]}", "kafka.session_timeout_ms": 2000,
        "kafka.max_poll_records": max_records, "store.url": f"sqlite:///{workdir / (uuid.uuid4().hex + '.db')}",
        "reference.paths": [str(profile)], "metrics.enabled": False, "window.max_future_seconds": 1e9,
    })  # fmt: skip
    d = KafkaDaemon(config, shutdown=Shutdown())
    import contextlib

    checkpoint_time = [0.0]
    checkpoints = [0]
    original = d._checkpoint

    def timed(tps, *, reason):
        t = time.perf_counter()
        try:
            return original(tps, reason=reason)
        finally:
            checkpoint_time[0] += time.perf_counter() - t
            checkpoints[0] += 1

    d._checkpoint = timed
    with contextlib.ExitStack() as stack:
        d._open(stack)
        t0 = None
        while True:
            d.step()
            parts = list(d.partitions.values())
            if t0 is None and parts and any(p.next_offset for p in parts):
                t0 = time.perf_counter()
                checkpoint_time[0] = 0.0
                checkpoints[0] = 0
            if parts and all(p.committed_offset is not None and p.committed_offset >= n for p in parts):
                break
        elapsed = time.perf_counter() - t0
    return elapsed, checkpoint_time[0], checkpoints[0]


def main() -> None:
    import logging

    logging.getLogger("nlpmon").setLevel(logging.ERROR)  # drifted windows log warnings; not this output's subject
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-records", type=int, default=2000, help="max_poll_records for both (default 2000)")
    args = ap.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_events(work / "ref.jsonl", generate_events(20_000, seed=5, rate_per_s=50.0))
        profile, _ = build_profile(str(work / "ref.jsonl"), ProfileOptions(sample_cap=10_000))
        save_profile(profile, work / "profile.json")
        with start_tansu(work / "broker") as broker:
            topic = broker.create_topic("bench", partitions=1)
            t = time.perf_counter()
            produce(broker.bootstrap, topic, n)
            print(f"produced {n} events in {time.perf_counter() - t:.1f} s to an embedded tansu broker")
            bare_t, daemon_t, cp_t, cp_n = [], [], [], []
            for _ in range(args.repeats):
                bare_t.append(bare(broker.bootstrap, topic, n, args.max_records))
                e, c, k = daemon(broker.bootstrap, topic, n, work / "profile.json", work, args.max_records)
                daemon_t.append(e)
                cp_t.append(c)
                cp_n.append(k)
    b, d, c = statistics.median(bare_t), statistics.median(daemon_t), statistics.median(cp_t)
    print(f"{'consumer':<40} {'median s':>9} {'records/s':>10}")
    print(f"{'bare kafka-python poll loop':<40} {b:>9.2f} {n / b:>10,.0f}")
    print(f"{'nlpmon daemon (to checkpointed results)':<40} {d:>9.2f} {n / d:>10,.0f}")
    print(f"daemon / bare rate: {b / d:.3f}  (target >= 0.9)")
    print(f"checkpoint cost: {c:.3f} s in {statistics.median(cp_n):.0f} checkpoints "
          f"({100 * c / d:.1f}% of the daemon's time, {1000 * c / max(1, statistics.median(cp_n)):.1f} ms each)")


if __name__ == "__main__":
    main()
