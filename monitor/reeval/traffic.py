"""Recent real traffic for candidate agreement: the logged texts of a prediction log, newest last.

``nlpmon reeval --candidate M --traffic EVENTS.jsonl`` scores both models on the texts of the last
``--traffic-sample`` valid events that carry one (the daemon keeps the same kind of sample in memory, see
``monitor.reeval.scheduler``). Events are read with the daemon's own validator, so what counts as a usable
event is the same everywhere; invalid lines are counted, never fatal, and no text is ever printed.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

from monitor.ingest.events import InvalidEvent, LabelEvent, decode_event
from monitor.reeval.errors import DataError

__all__ = ["TrafficSample", "read_traffic_texts"]


@dataclass(frozen=True)
class TrafficSample:
    """The texts kept, and what was read to get them."""

    texts: tuple[str, ...]
    lines: int
    without_text: int  # valid events of the model with no (or an empty) text
    invalid: dict[str, int]  # rejection reason -> lines


def read_traffic_texts(path: Path, *, limit: int, model: str | None = None,
                       max_text_chars: int = 10_000) -> TrafficSample:
    """Return the texts of the last ``limit`` valid events of ``model`` (any model when None) in ``path``."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    kept: deque[str] = deque(maxlen=limit)
    invalid: Counter[str] = Counter()
    lines = without_text = 0
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read the traffic log {path}: {exc.strerror or exc}") from None
    with f:
        for raw in f:
            if not raw.strip():
                continue
            lines += 1
            try:
                event = decode_event(raw, max_text_chars=max_text_chars)
            except InvalidEvent as exc:
                invalid[exc.reason] += 1
                continue
            if type(event) is LabelEvent:  # label events have no text
                continue
            if model is not None and event.model != model:
                continue
            if event.text:
                kept.append(event.text)
            else:
                without_text += 1
    if not kept:
        who = f"of model {model!r} " if model else ""
        raise DataError(f"{path}: no valid event {who}with a text among {lines} lines; a candidate can only be "
                        "compared on logged traffic that carries its input text")
    return TrafficSample(tuple(kept), lines, without_text, dict(invalid))
