"""Bytes and CPU per prediction event for each Kafka compression codec, producer and consumer side.

    .venv/bin/python bench/compression.py [--events 20000] [--repeats 5]

An embedded tansu broker; for every codec (none, gzip, snappy, lz4, zstd) and repeat, interleaved, a fresh
kafka-python ``KafkaProducer`` with ``PredictionLogger``'s batching settings (``linger_ms=5``, default
``batch_size``) sends N generated prediction events (monitor.devkit.synth.traffic, serialized as the logger
does) to a topic of its own, keyed by model, and flushes. Then a bare ``KafkaConsumer`` reads them back.

- bytes/event: the size of the record batches the producer sent (what the broker stores, batch headers
  included; kafka-python's ``batch-size`` sensor, summed) divided by N; the mean serialized event is printed
  for scale.
- producer CPU µs/event: process CPU time (all threads: ``send`` on the caller's thread, batching and
  compression on the sender thread) from the first ``send`` to the end of ``flush``, divided by N. The
  broker is another process and is not counted.
- consumer CPU µs/event: process CPU time of ``poll`` until all N are read (decompression, CRC, parsing).

Medians of --repeats. The figures are in docs/benchmarks.md; the default ``compression_type`` of
``PredictionLogger`` follows from them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.metrics.stats import Total  # noqa: E402

from monitor.devkit.embedded_broker import start_tansu  # noqa: E402
from monitor.devkit.synth.traffic import generate_events  # noqa: E402

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def produce(bootstrap: str, topic: str, values: list[bytes], codec: str) -> tuple[float, float]:
    """Send every value; return (producer CPU seconds, bytes sent)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                             compression_type=None if codec == "none" else codec)
    producer.send(topic, key=b"warmup", value=b"{}").get(timeout=30)  # metadata and connection, not counted
    sent_before = _batch_bytes(producer)
    cpu0 = time.process_time()
    for v in values:
        producer.send(topic, key=b"sentiment", value=v)
    producer.flush(60)
    cpu = time.process_time() - cpu0
    sent = _batch_bytes(producer) - sent_before
    producer.close()
    return cpu, sent


def _batch_bytes(producer: KafkaProducer) -> float:
    """Sum of the sizes of the batches sent so far (kafka-python only exports their average and maximum)."""
    metrics = producer._metrics  # noqa: SLF001 - a bench may look inside; kafka-python 3.0 has no public total
    name = metrics.metric_name("batch-size-total", "producer-metrics")
    if name not in metrics.metrics:
        metrics.get_sensor("batch-size").add(name, Total())
    return metrics.metrics[name].value()


def consume(bootstrap: str, topic: str, n: int) -> float:
    """Read the topic back (the warm-up record included); return consumer CPU seconds."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=2000)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 1)  # after the warm-up record
    got, cpu = 0, 0.0
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        cpu0 = time.process_time()
        polled = consumer.poll(timeout_ms=500)
        cpu += time.process_time() - cpu0
        got += sum(len(r) for r in polled.values())
    consumer.close()
    if got < n:
        raise RuntimeError(f"read back {got} of {n} events from {topic}")
    return cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    n = args.events
    values = [orjson.dumps(e) for e in generate_events(n, seed=1, rate_per_s=20, drift_after=n // 2)]
    raw = sum(map(len, values)) / n
    runs: dict[str, list[tuple[float, float, float]]] = {c: [] for c in CODECS}
    with tempfile.TemporaryDirectory() as tmp, start_tansu(Path(tmp)) as broker:
        for rep in range(args.repeats):
            for codec in CODECS:
                topic = broker.new_topic(prefix=f"bench-{codec}")
                cpu_p, sent = produce(broker.bootstrap, topic, values, codec)
                cpu_c = consume(broker.bootstrap, topic, n)
                runs[codec].append((sent / n, cpu_p / n * 1e6, cpu_c / n * 1e6))
            print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr)
    print(f"{n} events per run, mean serialized event {raw:.1f} bytes, medians of {args.repeats} repeats")
    print(f"{'codec':<8} {'bytes/event':>12} {'ratio':>7} {'producer CPU µs/event':>22} {'consumer CPU µs/event':>22}")
    base = statistics.median(r[0] for r in runs["none"])
    for codec in CODECS:
        b = statistics.median(r[0] for r in runs[codec])
        p = statistics.median(r[1] for r in runs[codec])
        c = statistics.median(r[2] for r in runs[codec])
        p_range = f"[{min(r[1] for r in runs[codec]):.1f}-{max(r[1] for r in runs[codec]):.1f}]"
        print(f"{codec:<8} {b:>12.1f} {b / base:>7.3f} {p:>10.1f} {p_range:>11} {c:>22.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
