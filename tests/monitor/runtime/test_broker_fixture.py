"""The tansu fixture supports what the daemon needs: keyed partitioning, headers, manual commits, seek,
subscribe with a rebalance listener, and recovery after the broker is paused."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from tests.fixtures.broker import FAST_GROUP

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, n: int, keys: int = 6) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for i in range(n):
            producer.send(topic, key=f"k{i % keys}".encode(), value=f"v{i}".encode(),
                          headers=[("seq", str(i).encode()), ("origin", b"test")])
        producer.flush(10)
    finally:
        producer.close(5)


def _drain(consumer: KafkaConsumer, expected: int, timeout_s: float = 20.0) -> list:
    records = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    return records


def _group_consumer(bootstrap: str, group: str, **config) -> KafkaConsumer:
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                         auto_offset_reset="earliest", **FAST_GROUP, **config)


def test_keys_headers_and_partitions_round_trip(kafka_broker):
    topic = kafka_broker.new_topic(partitions=3)
    _produce(kafka_broker.bootstrap, topic, 60)

    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records = _drain(consumer, 60)
        highwater = {tp: consumer.highwater(tp) for tp in tps}
    finally:
        consumer.close()

    assert sorted(int(r.value[1:]) for r in records) == list(range(60))
    partitions_of_key = defaultdict(set)
    for r in records:
        partitions_of_key[r.key].add(r.partition)
        assert dict(r.headers) == {"seq": r.value[1:], "origin": b"test"}
    # One key, one partition: a stream's events stay in order on one partition.
    assert all(len(p) == 1 for p in partitions_of_key.values())
    assert len({r.partition for r in records}) > 1
    # The fetch high watermark is exact (tansu's ListOffsets(latest) is not; see tests/fixtures/broker.py).
    per_partition = defaultdict(int)
    for r in records:
        per_partition[r.partition] += 1
    assert {tp.partition: hw for tp, hw in highwater.items()} == {p: per_partition[p] for p in range(3)}


def test_manual_commit_is_read_back_and_resumed_from(kafka_broker):
    topic = kafka_broker.new_topic(partitions=2)
    group = f"g-{topic}"
    _produce(kafka_broker.bootstrap, topic, 40)

    first = _group_consumer(kafka_broker.bootstrap, group)
    try:
        first.subscribe([topic])
        records = _drain(first, 40)
        assert len(records) == 40
        # Commit only the first 5 records of each partition, explicitly, as the daemon does.
        offsets = {TopicPartition(topic, p): OffsetAndMetadata(5, "", -1) for p in range(2)}
        first.commit(offsets)
        assert {tp: first.committed(tp) for tp in offsets} == {tp: 5 for tp in offsets}
    finally:
        first.close()

    second = _group_consumer(kafka_broker.bootstrap, group)
    try:
        assert second.committed(TopicPartition(topic, 0)) == 5
        second.subscribe([topic])
        resumed = _drain(second, 30)
    finally:
        second.close()
    assert len(resumed) == 30
    assert min(r.offset for r in resumed) == 5


def test_seek_replays_from_an_offset(kafka_broker):
    topic = kafka_broker.new_topic(partitions=1)
    _produce(kafka_broker.bootstrap, topic, 20, keys=1)
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=f"g-{topic}",
                             enable_auto_commit=False, **FAST_GROUP)
    try:
        consumer.assign([tp])
        consumer.seek(tp, 12)
        records = _drain(consumer, 8)
    finally:
        consumer.close()
    assert [r.offset for r in records] == list(range(12, 20))


class _Recorder(ConsumerRebalanceListener):
    def __init__(self):
        self.events = []

    def on_partitions_revoked(self, revoked):
        self.events.append(("revoked", {tp.partition for tp in revoked}))

    def on_partitions_assigned(self, assigned):
        self.events.append(("assigned", {tp.partition for tp in assigned}))


def test_second_member_triggers_rebalance_with_listener_callbacks(kafka_broker):
    topic = kafka_broker.new_topic(partitions=4)
    group = f"g-{topic}"
    a_listener, b_listener = _Recorder(), _Recorder()
    a = _group_consumer(kafka_broker.bootstrap, group)
    b = _group_consumer(kafka_broker.bootstrap, group)
    try:
        a.subscribe([topic], listener=a_listener)
        deadline = time.monotonic() + 20
        while len(a.assignment()) < 4 and time.monotonic() < deadline:
            a.poll(timeout_ms=100)
        assert {tp.partition for tp in a.assignment()} == {0, 1, 2, 3}

        # Both members must keep polling for the group to re-form. Each polls in its own thread, as two
        # processes would: a member's JoinGroup can block inside poll() until every member has rejoined, so
        # polling both from one thread in turn can starve the other for a whole rebalance timeout.
        b.subscribe([topic], listener=b_listener)
        done = threading.Event()

        def keep_polling(consumer):
            while not done.is_set():
                consumer.poll(timeout_ms=100)

        pollers = [threading.Thread(target=keep_polling, args=(c,), daemon=True) for c in (a, b)]
        for t in pollers:
            t.start()
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                mine, theirs = a.assignment(), b.assignment()
                if mine and theirs and not mine & theirs and len(mine | theirs) == 4:
                    break
                time.sleep(0.05)
        finally:
            done.set()
            for t in pollers:
                t.join(10)
        a_final = {tp.partition for tp in a.assignment()}
        b_final = {tp.partition for tp in b.assignment()}
    finally:
        b.close()
        a.close()
    assert a_final and b_final and not a_final & b_final
    assert a_final | b_final == {0, 1, 2, 3}
    # The first member gave everything up for the rebalance and got its share back through the listener.
    assert ("revoked", {0, 1, 2, 3}) in a_listener.events
    assert ("assigned", a_final) in a_listener.events
    assert ("assigned", b_final) in b_listener.events
    assert b_listener.events[-1] == ("revoked", b_final)  # close() revokes through the listener too


def test_clients_recover_after_the_broker_is_paused(private_kafka_broker):
    broker = private_kafka_broker
    topic = broker.new_topic(partitions=1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=3000, retry_backoff_ms=200)
    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=f"g-{topic}",
                             enable_auto_commit=False, auto_offset_reset="earliest", request_timeout_ms=3000,
                             **FAST_GROUP)
    try:
        producer.send(topic, b"before").get(10)
        assert [r.value for r in _drain(consumer, 1)] == [b"before"]
        with broker.paused():
            future = producer.send(topic, b"during")
            assert consumer.poll(timeout_ms=2000) == {}  # no exception while the broker is frozen
            assert not future.is_done
        future.get(30)
        assert [r.value for r in _drain(consumer, 1, timeout_s=30)] == [b"during"]
    finally:
        consumer.close()
        producer.close(5)
