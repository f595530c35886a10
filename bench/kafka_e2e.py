"""End-to-end consumption rate of the Kafka sidecar against a bare kafka-python consumer and against the
consumer and the pipeline composed, same topic, same run; and where the daemon's time goes, per record.

    .venv/bin/python bench/kafka_e2e.py [--events 200000] [--repeats 3] [--cpu N] [--tokenizer] [--librdkafka]

An embedded tansu broker gets N events and a tail of N/2 more (one model, one partition, keyed by model).
Then, alternating, with a fresh consumer group each time:

- bare: ``KafkaConsumer.poll`` until N records have been received (nothing else done with them);
- pipeline: ``Pipeline.process`` over the same N records, already in memory, in batches of --max-records
  (the daemon's configuration and sink, and its one BLAS thread; no Kafka);
- daemon: ``KafkaDaemon`` (in-process, SQLite store) until its durable checkpoint covers all N records:
  decode, validate, features, windows, detectors, metrics, and the checkpoints themselves. It reads on
  into the tail meanwhile, as it would a live stream: at the end of the topic it would wait for records
  that never come (an empty poll blocks for ``poll_timeout_ms``, 500 ms, before the last checkpoint), which
  is no cost of a record. Its time is scaled to N records by the records its last checkpoint covers;
- with --librdkafka, a bare confluent-kafka loop too (``Consumer.consume``): what another client would cost.

Clocks start at the first record received (group joins are excluded) and stop at the last record (bare) or
at the checkpoint covering it (daemon). Medians of --repeats. Printed ratios: daemon / bare, and daemon /
composed, where composed is one record's bare consumer cost plus its pipeline cost (1 / (c + p) records/s),
both measured in the same round as the daemon. Targets (issue 23): daemon >= 0.9x composed; daemon / bare
>= 0.5x (the next milestone).

The cost breakdown comes from one more daemon run with timers around its stages, put there by this script
(instance attributes and module globals replaced for that run only; the daemon itself has no timing code).
Each stage's time is exclusive (nested stages are subtracted from the one that called them); wall time, and
the main thread's CPU time (the difference is waiting: for the broker, for kafka-python's IO thread, for
the GIL). The timers are per batch or per stream, never per record. Garbage collection is timed with
``gc.callbacks`` and also reported on its own (it runs inside whichever stage allocated).

CPU columns: process CPU time (every thread of this process: kafka-python's IO thread included; not the
broker's), which a busy neighbour on a shared machine inflates far less than wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAYON_NUM_THREADS", "1")  # the Rust tokenizer must not borrow other cores
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import orjson  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import monitor.ingest.batch as batch_module  # noqa: E402
import monitor.runtime.kafka_daemon as daemon_module  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.devkit.embedded_broker import FAST_GROUP, start_tansu  # noqa: E402
from monitor.devkit.synth.traffic import generate_events, write_events  # noqa: E402
from monitor.ingest.reference import save_profile  # noqa: E402
from monitor.jobs.profile_builder import ProfileOptions, build_profile  # noqa: E402
from monitor.pipeline import Pipeline, Record  # noqa: E402
from monitor.runtime.kafka_daemon import KafkaDaemon  # noqa: E402
from monitor.runtime.shutdown import Shutdown  # noqa: E402
from monitor.runtime.wiring import build_components, build_sink  # noqa: E402


def produce(bootstrap: str, topic: str, n: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, batch_size=1 << 20)
    for e in generate_events(n, seed=21, rate_per_s=50.0, drift_after=n // 2):
        producer.send(topic, key=b"sentiment", value=orjson.dumps(e))
    producer.flush(120)
    producer.close()


def bare(bootstrap: str, topic: str, n: int, max_records: int, keep: list | None = None) -> tuple[float, float]:
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bare-{uuid.uuid4().hex[:6]}",
                      auto_offset_reset="earliest", enable_auto_commit=False, **FAST_GROUP)
    got, t0 = 0, None
    while got < n:
        for records in c.poll(timeout_ms=500, max_records=max_records).values():
            if t0 is None:
                t0, c0 = time.perf_counter(), time.process_time()
            got += len(records)
            if keep is not None:
                keep.extend(records)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    c.close()
    return elapsed, cpu


def bare_librdkafka(bootstrap: str, topic: str, n: int, max_records: int) -> tuple[float, float]:
    """The same loop with confluent-kafka (librdkafka: fetch and record parsing in C, on its own threads)."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"rdk-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, "session.timeout.ms": 6000})
    c.subscribe([topic])
    got, t0 = 0, None
    while got < n:
        msgs = c.consume(num_messages=max_records, timeout=0.5)
        if msgs and t0 is None:
            t0, c0 = time.perf_counter(), time.process_time()
        got += sum(1 for m in msgs if m.error() is None)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    c.close()
    return elapsed, cpu


def daemon_config(bootstrap: str, topic: str, profile: Path, workdir: Path, args):
    over = {
        "source.kind": "kafka", "kafka.bootstrap_servers": [bootstrap], "kafka.topics": [topic],
        "kafka.group_id": f"d-{uuid.uuid4().hex[:6]}", "kafka.session_timeout_ms": 2000,
        "kafka.max_poll_records": args.max_records, "store.url": f"sqlite:///{workdir / (uuid.uuid4().hex + '.db')}",
        "reference.paths": [str(profile)], "metrics.enabled": False, "window.max_future_seconds": 1e9,
    }  # fmt: skip
    if args.tokenizer_path:
        over["tokenizer.path"] = str(args.tokenizer_path)
        over["tokenizer.max_length"] = 512  # the profile's (built below with max_length=512)
    return load_config(env={}, overrides=over)


def pipeline_only(records: list, config, max_records: int) -> tuple[float, float]:
    """Seconds of Pipeline.process over ``records`` (the daemon's Record objects, built beforehand)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    parts = build_components(config, registry=registry, sink=build_sink(config, registry))
    pipeline = Pipeline(config, profiles=parts.profiles, tokenizer=parts.tokenizer, sink=parts.sink)
    with threadpool_limits(limits=1, user_api="blas"):  # as the daemon runs it (KafkaDaemon._open)
        t0, c0 = time.perf_counter(), time.process_time()
        for lo in range(0, len(records), max_records):
            pipeline.process(records[lo : lo + max_records])
        return time.perf_counter() - t0, time.process_time() - c0


def daemon(config, n: int, timers: Timers | None = None) -> tuple[float, float, int]:
    """Wall and CPU seconds from the first record to the checkpoint that covers ``n`` records, and how many
    records that checkpoint covers (the tail goes on arriving meanwhile)."""
    d = KafkaDaemon(config, shutdown=Shutdown())
    with contextlib.ExitStack() as stack:
        if timers is not None:
            timers.install(d, stack)
        d._open(stack)
        t0 = None
        while True:
            d.step()
            parts = list(d.partitions.values())
            if t0 is None and parts and any(p.next_offset for p in parts):
                t0, c0 = time.perf_counter(), time.process_time()
                if timers is not None:
                    timers.reset()
            if parts and all(p.committed_offset is not None and p.committed_offset >= n for p in parts):
                break
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return elapsed, cpu, sum(p.committed_offset for p in parts)


# -- the cost breakdown ----------------------------------------------------------------------------------------
STAGES = (
    ("poll", "poll (kafka-python: fetch, record parsing)"),
    ("records", "Record objects, offsets, loop bookkeeping"),
    ("decode", "decode + validate (prepare_chunk's loop)"),
    ("features", "text features (base_features)"),
    ("tokenizer", "tokenizer features"),
    ("rows", "event rows (custom, oov_rate, probabilities)"),
    ("windows", "windows (stream table, reservoirs)"),
    ("detectors", "detectors (closed windows)"),
    ("sink", "Prometheus sink calls"),
    ("results", "result logging + pending results"),
    ("probes", "probes: lag, gauges, heartbeat"),
    ("checkpoint", "checkpoint (SQL transaction, state)"),
    ("publish", "after the checkpoint: offset commit"),
)


class Timers:
    """Exclusive wall and CPU time per stage, by wrapping the daemon's parts for one run."""

    def __init__(self):
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []  # per open stage: [child wall, child cpu]
        self.gc_s, self.gc_runs, self._gc_t0 = 0.0, [0, 0, 0], 0.0

    def reset(self) -> None:
        self.wall.clear()
        self.cpu.clear()
        self.gc_s, self.gc_runs = 0.0, [0, 0, 0]

    def on_gc(self, phase: str, info: dict) -> None:
        """gc.callbacks: the collector's own time, whichever stage it interrupted."""
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        else:
            self.gc_s += time.perf_counter() - self._gc_t0
            self.gc_runs[info["generation"]] += 1

    def timed(self, stage: str, fn):
        def run(*args, **kwargs):
            w0, c0 = time.perf_counter(), time.thread_time()
            self._stack.append([0.0, 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                w, c = time.perf_counter() - w0, time.thread_time() - c0
                cw, cc = self._stack.pop()
                self.wall[stage] += w - cw
                self.cpu[stage] += c - cc
                if self._stack:
                    self._stack[-1][0] += w
                    self._stack[-1][1] += c

        return run

    def patch(self, stack: contextlib.ExitStack, obj, attr: str, stage: str) -> None:
        original = getattr(obj, attr)
        setattr(obj, attr, self.timed(stage, original))
        if isinstance(obj, type(sys)):  # a module global: put it back after the run
            stack.callback(setattr, obj, attr, original)

    def install(self, d: KafkaDaemon, stack: contextlib.ExitStack) -> None:
        gc.callbacks.append(self.on_gc)
        stack.callback(gc.callbacks.remove, self.on_gc)
        self.patch(stack, d, "step", "records")  # what no other stage claims: the step's own loop
        self.patch(stack, d.fetcher, "poll", "poll")
        for attr in ("observe", "observe_waits"):
            self.patch(stack, d.fetcher, attr, "probes")
        self.patch(stack, d, "_set_gauges", "probes")
        self.patch(stack, d.heartbeat, "beat", "probes")
        self.patch(stack, d, "_take", "results")
        self.patch(stack, d, "_checkpoint", "checkpoint")
        self.patch(stack, d.checkpointer, "publish", "publish")
        for name in dir(type(d.sink)):
            if not name.startswith("_") and callable(getattr(d.sink, name)):
                self.patch(stack, d.sink, name, "sink")
        self.patch(stack, batch_module, "event_rows", "rows")
        self.patch(stack, batch_module, "entropies", "rows")
        if hasattr(batch_module, "scored"):  # the batch's probability matrix, which event_rows and entropies share
            self.patch(stack, batch_module, "scored", "rows")
        new_partition = d._new_partition

        def timed_partition():
            part = new_partition()
            p = part.pipeline
            self.patch(stack, p, "process", "windows")  # what is left of process: windowing
            self.patch(stack, p, "_prepare", "decode")  # what is left of prepare_chunk: decode + validate
            self.patch(stack, p, "_featurize", "features")
            self.patch(stack, p, "_evaluate", "detectors")
            if p.tokenizer is not None:
                self.patch(stack, p.tokenizer, "features", "tokenizer")
            return part

        d._new_partition = timed_partition

    def table(self, n: int, total: float) -> None:
        print(f"\ncost breakdown, one daemon run with timers ({n:,} records, {total:.2f} s, "
              f"{1e6 * total / n:.2f} µs a record):")
        print(f"  {'stage':<46} {'µs/record':>10} {'CPU µs':>8} {'share':>7}")
        for key, label in STAGES:
            w, c = self.wall.get(key, 0.0), self.cpu.get(key, 0.0)
            print(f"  {label:<46} {1e6 * w / n:>10.2f} {1e6 * c / n:>8.2f} {100 * w / total:>6.1f}%")
        rest = total - sum(self.wall.values())
        print(f"  {'outside step() (the bench loop)':<46} {1e6 * rest / n:>10.2f} {'':>8} {100 * rest / total:>6.1f}%")
        print(f"  of all the above, garbage collection: {1e6 * self.gc_s / n:.2f} µs a record "
              f"({100 * self.gc_s / total:.1f}%; collections by generation {self.gc_runs})")


def main() -> None:
    import logging

    logging.getLogger("nlpmon").setLevel(logging.ERROR)  # drifted windows log warnings; not this output's subject
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-records", type=int, default=2000, help="max_poll_records for both (default 2000)")
    ap.add_argument("--cpu", type=int, default=None,
                    help="pin this process (consumers, pipeline, IO threads; not the broker) to one CPU")
    ap.add_argument("--tokenizer", action="store_true", help="with tokenizer features (a tiny built tokenizer)")
    ap.add_argument("--librdkafka", action="store_true",
                    help="also a bare confluent-kafka (librdkafka) loop: what another consumer client would cost")
    args = ap.parse_args()
    n = args.events
    args.tokenizer_path = None
    if args.tokenizer:
        from bench.pipeline import tokenizer_dir

        args.tokenizer_path = tokenizer_dir()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_events(work / "ref.jsonl", generate_events(20_000, seed=5, rate_per_s=50.0))
        tok = None
        if args.tokenizer_path:
            from monitor.ingest.tokenizer import TokenizerFeaturizer

            tok = TokenizerFeaturizer(args.tokenizer_path, max_length=512)
        profile, _ = build_profile(str(work / "ref.jsonl"), ProfileOptions(sample_cap=10_000), tokenizer=tok)
        save_profile(profile, work / "profile.json")
        with start_tansu(work / "broker") as broker:
            topic = broker.create_topic("bench", partitions=1)
            t = time.perf_counter()
            produce(broker.bootstrap, topic, n + n // 2)  # the tail: the daemon never meets a quiet stream
            print(f"produced {n} events in {time.perf_counter() - t:.1f} s to an embedded tansu broker")
            if args.cpu is not None:  # after the broker started: it keeps its own CPUs
                os.sched_setaffinity(0, {args.cpu})
            fetched: list = []
            bare(broker.bootstrap, topic, n, args.max_records, keep=fetched)
            records = [Record(r.value, f"{r.topic}/{r.partition}@{r.offset}") for r in fetched[:n]]
            del fetched
            runs: dict[str, list[tuple[float, float]]] = {"bare": [], "pipeline": [], "daemon": []}
            for _ in range(args.repeats):
                runs["bare"].append(bare(broker.bootstrap, topic, n, args.max_records))
                if args.librdkafka:
                    runs.setdefault("librdkafka", []).append(bare_librdkafka(broker.bootstrap, topic, n, args.max_records))
                config = daemon_config(broker.bootstrap, topic, work / "profile.json", work, args)
                runs["pipeline"].append(pipeline_only(records, config, args.max_records))
                wall, cpu, covered = daemon(config, n)
                runs["daemon"].append((wall * n / covered, cpu * n / covered))  # scaled to n records
            timers = Timers()
            timed_t, _, covered = daemon(daemon_config(broker.bootstrap, topic, work / "profile.json", work, args), n,
                                         timers)
    report(runs, n, args)
    timers.table(covered, timed_t)


def report(runs: dict, n: int, args) -> None:
    wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    b, p, d = wall["bare"], wall["pipeline"], wall["daemon"]
    features = "text + tokenizer features" if args.tokenizer_path else "text features"
    pinned = f"pinned to CPU {args.cpu}" if args.cpu is not None else "not pinned"
    print(f"{n:,} records, {features}, batches of {args.max_records}, {pinned}, medians of {args.repeats}")
    print(f"{'':<44} {'median s':>9} {'records/s':>10} {'µs/record':>10} {'CPU µs/rec':>11}")
    rows = (("bare kafka-python poll loop (c)", b, cpu["bare"]), ("pipeline alone, records in memory (p)", p, cpu["pipeline"]),
            ("composed: 1 / (c + p)", b + p, cpu["bare"] + cpu["pipeline"]),
            ("nlpmon daemon (to checkpointed results)", d, cpu["daemon"]))  # fmt: skip
    if "librdkafka" in wall:
        rows += (("bare confluent-kafka (librdkafka) loop", wall["librdkafka"], cpu["librdkafka"]),)
    for label, w, c in rows:
        print(f"{label:<44} {w:>9.2f} {n / w:>10,.0f} {1e6 * w / n:>10.2f} {1e6 * c / n:>11.2f}")
    print(f"daemon / composed: {(b + p) / d:.3f} wall, {(cpu['bare'] + cpu['pipeline']) / cpu['daemon']:.3f} by process "
          f"CPU time  (target >= 0.9)")
    print(f"daemon / bare:     {b / d:.3f} wall, {cpu['bare'] / cpu['daemon']:.3f} by process CPU time  (next milestone >= 0.5)")
    print("per round, wall s (bare, pipeline, daemon): " + "; ".join(
        f"{x[0]:.2f} {y[0]:.2f} {z[0]:.2f}" for x, y, z in zip(runs["bare"], runs["pipeline"], runs["daemon"])))


if __name__ == "__main__":
    main()
