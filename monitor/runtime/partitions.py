"""Per-partition state of the Kafka daemon: what was consumed, what is durable, and what waits for the checkpoint.

Each assigned partition has its own :class:`~monitor.pipeline.Pipeline` (producers key messages by model, so a
stream's windows live on one partition). Closed results and rejected records wait here until the checkpoint
that covers them (:mod:`monitor.runtime.checkpointer`); the pipeline's state travels in that checkpoint, and is
restored from it when the partition is assigned again (docs/kafka.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from monitor.pipeline import Pipeline
from monitor.results import BatchResults, ExperimentResult, LabelsResult, ShadowResult, WindowResult

__all__ = ["PartitionState", "DeadLetterBuffer", "KafkaRecord", "STATE_FORMAT"]

STATE_FORMAT = 1  # bump when Pipeline.state() changes shape; older checkpoints are then refused loudly
_encode_state = msgspec.msgpack.Encoder().encode
_decode_state = msgspec.msgpack.Decoder().decode


class KafkaRecord:
    """One consumed record as the pipeline reads it (:class:`~monitor.pipeline.Record`'s two attributes).

    The position (``topic/partition@offset``) is built only when asked: the pipeline asks for rejected records
    alone, and building the string for every record was most of the daemon's own cost per record.
    """

    __slots__ = ("value", "offset", "tp")

    def __init__(self, value: bytes, offset: int, tp):
        self.value, self.offset, self.tp = value, offset, tp

    @property
    def position(self) -> str:
        return f"{self.tp.topic}/{self.tp.partition}@{self.offset}"


@dataclass
class PartitionState:
    """One assigned partition: its pipeline, what has been consumed, what is durable."""

    pipeline: Pipeline
    next_offset: int | None  # next offset to consume (None: no checkpoint and nothing fetched yet)
    committed_offset: int | None  # next_offset of the last durable checkpoint (None: no checkpoint yet)
    pending: list[WindowResult] = field(default_factory=list)  # closed-window results not yet durable
    # Experiment and shadow results (docs/experiments.md) not yet durable; written with the same checkpoint.
    pending_experiments: list[ExperimentResult] = field(default_factory=list)
    pending_shadow: list[ShadowResult] = field(default_factory=list)
    pending_labels: list[LabelsResult] = field(default_factory=list)  # realised accuracy, likewise
    dead_letters: list[tuple[bytes, str, str, str]] = field(default_factory=list)
    highwater: int | None = None

    @property
    def dirty(self) -> bool:
        """Whether a checkpoint has something to write for this partition."""
        return self.next_offset is not None and (
            self.committed_offset != self.next_offset
            or bool(self.pending or self.pending_experiments or self.pending_shadow or self.pending_labels))

    def take(self, closed: BatchResults) -> None:
        """Keep the results its pipeline closed until the checkpoint that makes them durable."""
        self.pending.extend(closed.windows)
        self.pending_experiments.extend(closed.experiments)
        self.pending_shadow.extend(closed.shadow)
        self.pending_labels.extend(closed.labels)

    def checkpoint(self) -> tuple[int | None, bytes]:
        """The next offset with the pipeline's serialized state: what one checkpoint row holds."""
        return self.next_offset, _encode_state({"format": STATE_FORMAT, "pipeline": self.pipeline.state()})

    def restore(self, offset: int, state: bytes | None, *, where: str) -> None:
        """Resume from a stored checkpoint (``where`` names the partition in the error for another format)."""
        if state:
            data = _decode_state(state)
            if data.get("format") != STATE_FORMAT:
                raise RuntimeError(f"checkpoint of {where} has state format {data.get('format')}, "
                                   f"this nlpmon reads {STATE_FORMAT}")  # fmt: skip
            self.pipeline.restore(data["pipeline"])
        self.next_offset = self.committed_offset = offset

    def made_durable(self) -> None:
        """The checkpoint holding everything consumed so far has committed: nothing waits any more."""
        self.committed_offset = self.next_offset
        for durable in (self.pending, self.pending_experiments, self.pending_shadow, self.pending_labels,
                        self.dead_letters):
            durable.clear()


class DeadLetterBuffer:
    """Collect rejected records of one partition; they are sent only after the checkpoint that covers them."""

    def __init__(self, part: PartitionState):
        self.part = part

    def write(self, raw: bytes, reason: str, detail: str, position: str) -> None:
        self.part.dead_letters.append((raw, reason, detail, position))
