"""Reading events back from where the pipeline read them, by position (``nlpmon examples``, docs/examples.md).

A window's exemplars are stored as pointers, never as text (docs/evidence.md): ``topic/partition@offset`` for
Kafka, ``name:line`` for a file (the positions of :class:`monitor.pipeline.Record`). This module turns a
pointer back into the record's bytes, or into one line saying why it cannot: retention removed the offset, the
topic or file is gone or shorter. What it reads is returned to the caller only: nothing here logs or keeps it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from monitor.config import Config
from monitor.runtime.consumer import connect_client, kafka_client_config
from monitor.runtime.startup import NotYet

__all__ = ["FilePosition", "KafkaPosition", "KafkaReader", "ReadBack", "open_kafka_reader", "parse_position",
           "read_file_lines"]

# A Kafka topic name is [a-zA-Z0-9._-]+, so the last "/" and "@" split it unambiguously; a file's name is its
# base name (monitor/runtime/sources.py), which holds no "/".
_KAFKA = re.compile(r"(?P<topic>[^/@]+)/(?P<partition>\d+)@(?P<offset>\d+)")
_FILE = re.compile(r"(?P<name>.+):(?P<line>\d+)")


@dataclass(frozen=True, slots=True)
class KafkaPosition:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class FilePosition:
    name: str  # the base name of the file, or "stdin"
    line: int  # 1-based, counting blank lines, as the line daemon counts


def parse_position(position: str) -> KafkaPosition | FilePosition | None:
    """The pointer ``position`` as a Kafka or a file position; ``None`` when it is neither."""
    if m := _KAFKA.fullmatch(position):
        return KafkaPosition(m["topic"], int(m["partition"]), int(m["offset"]))
    if m := _FILE.fullmatch(position):
        return FilePosition(m["name"], int(m["line"]))
    return None


@dataclass(frozen=True, slots=True)
class ReadBack:
    """The bytes at a position, or why there are none (``missing``: one line, without the position)."""

    value: bytes | None = None
    missing: str | None = None


def read_file_lines(path: str | Path, lines: Iterable[int]) -> dict[int, ReadBack]:
    """Read the given 1-based ``lines`` of the file at ``path`` in one pass (lines counted as the line daemon
    counts them: every ``\\n``-terminated line, blank ones included)."""
    wanted = set(lines)
    out: dict[int, ReadBack] = {}
    try:
        with open(path, "rb") as f:
            count = 0
            for count, line in enumerate(f, start=1):  # noqa: B007 (count is read after the loop)
                if count in wanted:
                    out[count] = ReadBack(value=line.rstrip(b"\r\n"))
                    if len(out) == len(wanted):
                        break
    except FileNotFoundError:
        return {n: ReadBack(missing=f"the file {path} is gone") for n in wanted}
    except OSError as exc:
        return {n: ReadBack(missing=f"the file {path} cannot be read ({exc.strerror or exc})") for n in wanted}
    for n in wanted - out.keys():
        out[n] = ReadBack(missing=f"the file {path} has {count} lines now (rotated or truncated)")
    return out


class KafkaReader:
    """Fetch single records by offset with a group-less consumer (nothing committed, no group joined).

    ``consumer`` is a kafka-python ``KafkaConsumer`` made with ``enable_auto_commit=False`` and no
    ``group_id``; the reader assigns itself the partition it reads and seeks. ``timeout_s`` bounds the wait for
    one record.
    """

    def __init__(self, consumer, *, timeout_s: float = 10.0):
        self._consumer = consumer
        self._timeout_s = timeout_s
        self._topics: set[str] | None = None

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> KafkaReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def read(self, position: KafkaPosition) -> ReadBack:
        """The record at ``position``, or why it is not there."""
        from kafka import TopicPartition

        if position.partition not in (self._partitions(position.topic) or ()):
            known = self._partitions(position.topic)
            return ReadBack(missing="the topic no longer exists" if known is None else
                            f"the topic has no partition {position.partition} now")
        tp = TopicPartition(position.topic, position.partition)
        self._consumer.assign([tp])
        earliest = self._consumer.beginning_offsets([tp]).get(tp)
        if earliest is not None and position.offset < earliest:
            return ReadBack(missing=f"no longer in the topic (retention; earliest offset {earliest})")
        self._consumer.seek(tp, position.offset)
        return self._poll(tp, position.offset)

    def _poll(self, tp, offset: int) -> ReadBack:
        deadline = time.monotonic() + self._timeout_s
        while (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
            batches: Mapping = self._consumer.poll(timeout_ms=min(left_ms, 1000), max_records=1)
            for record in batches.get(tp, ()):
                if record.offset == offset:
                    return ReadBack(value=record.value if record.value is not None else b"")
                if record.offset < offset:  # the fetch was out of range and reset to the earliest offset
                    return ReadBack(missing="beyond the end of the partition: the topic was recreated?")
                if record.offset > offset:  # compacted away, or an aborted transaction's record
                    return ReadBack(missing=f"no longer in the topic (the next record is at offset {record.offset})")
            # The high watermark comes with every fetch answer (tansu's ListOffsets(latest) is not reliable).
            highwater = self._consumer.highwater(tp)
            if highwater is not None and offset >= highwater:
                return ReadBack(missing=f"beyond the end of the partition (next offset {highwater}): "
                                "the topic was recreated?")
        return ReadBack(missing=f"no record came back within {self._timeout_s:g} s")

    def _partitions(self, topic: str) -> set[int] | None:
        if self._topics is None:
            self._topics = set(self._consumer.topics())
        if topic not in self._topics:
            return None
        return set(self._consumer.partitions_for_topic(topic) or ())


def open_kafka_reader(config: Config, *, timeout_s: float = 10.0) -> KafkaReader:
    """A :class:`KafkaReader` on the broker of ``config.kafka`` (its security settings included); the broker
    is tried until ``timeout_s`` passes (:class:`~monitor.runtime.startup.NotYet` then). Close it after."""
    from kafka import KafkaConsumer

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            consumer = connect_client(
                KafkaConsumer, kafka_client_config(config), group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", isolation_level=config.kafka.isolation_level,
            )  # fmt: skip
            return KafkaReader(consumer, timeout_s=timeout_s)
        except NotYet:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
