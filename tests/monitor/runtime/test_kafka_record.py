"""The daemon's records: the position a rejected record is reported at (dead letter ``nlpmon-source`` header,
poison log line) is ``topic/partition@offset``, though it is only built when asked."""

from __future__ import annotations

from kafka.structs import TopicPartition

from monitor.config import load_config
from monitor.pipeline import Pipeline
from monitor.runtime.partitions import DeadLetterBuffer, KafkaRecord, PartitionState


def test_position_names_topic_partition_and_offset():
    rec = KafkaRecord(b"{}", 812, TopicPartition("predictions", 3))
    assert (rec.value, rec.position) == (b"{}", "predictions/3@812")


def test_a_rejected_record_is_dead_lettered_at_its_position():
    config = load_config(env={}, overrides={"source.kind": "stdin", "window.max_future_seconds": 1e9})
    part = PartitionState(pipeline=Pipeline(config), next_offset=0, committed_offset=None)
    part.pipeline.dead_letter = DeadLetterBuffer(part)
    tp = TopicPartition("predictions", 1)
    good = b'{"ts": 1764000000000, "model": "m", "version": "1", "prediction": "pos", "confidence": 0.9, "latency_ms": 3}'
    part.pipeline.process([KafkaRecord(good, 40, tp), KafkaRecord(b"{not json", 41, tp), KafkaRecord(b"", 42, tp)])
    assert [(raw, reason, position) for raw, reason, _, position in part.dead_letters] == [
        (b"{not json", "malformed_json", "predictions/1@41"), (b"", "malformed_json", "predictions/1@42")]
    assert part.pipeline.stats.valid == 1
