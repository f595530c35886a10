"""What ``compare`` accepts, turned into the records the daemon reads: lists of texts, pandas DataFrames, JSONL.

Every input becomes batches of :class:`~monitor.ingest.batch.Record` holding one event's JSON (docs/events.md),
so the pipeline decodes, validates and featurizes them exactly as it does a line of ``nlpmon replay``. A JSONL
file is read by the line daemon's own reader (``monitor.runtime.sources``); a list or a DataFrame is encoded
row by row, one batch at a time (nothing is copied whole). A row's position is ``row:<i>`` (its 0-based place
in the list or DataFrame), a line's ``<file>:<line>``: the evidence's exemplars point there.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, fields
from pathlib import Path

import orjson

from monitor.ingest.batch import Record
from monitor.ingest.events import InvalidEvent, LabelEvent, decode_event
from monitor.runtime.sources import iter_batches, open_source

__all__ = ["Columns", "CompareError", "Input", "TextFile", "open_input", "TEXT_ONLY_CLASS", "DEFAULT_MODEL", "is_profile_file"]

# Rows without a prediction column still need one (docs/events.md: `prediction` is required): all get this
# class, so the class-shift test has one class and cannot flag (dof 0, p = 1).
TEXT_ONLY_CLASS = "(none)"
# The model name of list and DataFrame rows when neither ``model=`` nor a stored profile names one.
DEFAULT_MODEL = "compare"
# Rows carry no time unless a ``ts`` column gives one: the one window's start and end are then the epoch.
DEFAULT_TS = 0


class CompareError(ValueError):
    """An input ``compare`` cannot use (a missing or mistyped column, an unreadable file): one line."""


@dataclass(frozen=True)
class Columns:
    """The DataFrame columns ``compare`` reads, by role. ``text`` is required; each other role is read when
    its column exists (a name set explicitly must exist). ``probabilities`` holds ``{class: p}`` dicts;
    ``latency`` milliseconds; ``ts`` an event time (RFC 3339 string or epoch number)."""

    text: str = "text"
    prediction: str = "prediction"
    probabilities: str = "probabilities"
    confidence: str = "confidence"
    latency: str = "latency_ms"
    label: str = "label"
    ts: str = "ts"


@dataclass(frozen=True)
class TextFile:
    """A plain text file taken as one text per non-blank line, read as it is iterated (never whole)."""

    path: str | os.PathLike

    def __iter__(self) -> Iterator[str]:
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                text = line.rstrip("\r\n")
                if text.strip():
                    yield text


# Each role: the event field it fills and what its values must be.
_FIELDS = {"text": "text", "prediction": "prediction", "probabilities": "probabilities",
           "confidence": "confidence", "latency": "latency_ms", "label": "label", "ts": "ts"}
_STRINGS = {"text", "prediction", "label"}
_NUMBERS = {"confidence", "latency"}


@dataclass
class Input:
    """One side of a comparison: its kind, a display name, its record batches (``batches(model)``: the
    model names list and DataFrame rows; a file's events name their own) and what to show progress by."""

    kind: str  # "list", "dataframe", "jsonl", "text"
    name: str
    batches: Callable[[str], Iterator[list[Record]]]
    total: int | None  # rows (list, DataFrame) or bytes (file), for the progress bar
    unit: str  # "rows" or "B"
    model: str | None  # the model of the first valid event of a file; None for in-memory rows


def is_profile_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a stored reference profile (``nlpmon reference build``) rather than events."""
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    return head.startswith(b"{") and b'"profile_schema"' in head


def open_input(data, *, columns: Columns, batch_size: int, side: str) -> Input:
    """The records of ``data`` (a path to a JSONL file, a pandas DataFrame, or an iterable of texts)."""
    if isinstance(data, (str, os.PathLike)):
        return _jsonl(Path(data), batch_size=batch_size, side=side)
    if isinstance(data, TextFile):
        if not Path(data.path).is_file():
            raise CompareError(f"{side}: cannot read {data.path}: no such file")
        return Input("text", Path(data.path).name,
                     lambda model: _text_batches(data, model=model, batch_size=batch_size, side=side), None, "rows", None)
    if type(data).__name__ == "DataFrame" and hasattr(data, "columns"):  # pandas, without importing it
        return _dataframe(data, columns=columns, batch_size=batch_size, side=side)
    if isinstance(data, Iterable) and not isinstance(data, (bytes, dict)):
        total = len(data) if isinstance(data, Sized) else None
        return Input("list", "list", lambda model: _text_batches(data, model=model, batch_size=batch_size, side=side),
                     total, "rows", None)
    raise CompareError(f"{side}: expected a list of texts, a pandas DataFrame or a path to a JSONL file, "
                       f"got {type(data).__name__}")


def _jsonl(path: Path, *, batch_size: int, side: str) -> Input:
    if not path.is_file():
        raise CompareError(f"{side}: cannot read {path}: no such file")

    def batches(model: str) -> Iterator[list[Record]]:
        stream, name = open_source(str(path))
        try:
            yield from iter_batches(stream, name, batch_size)
        finally:
            stream.close()

    return Input("jsonl", path.name, batches, path.stat().st_size, "B", _first_model(path))


def _first_model(path: Path) -> str | None:
    """The model of the file's first valid prediction event (None when it has none)."""
    stream, name = open_source(str(path))
    try:
        for batch in iter_batches(stream, name, 1000):
            for rec in batch:
                try:
                    event = decode_event(rec.value)
                except InvalidEvent:
                    continue
                if type(event) is not LabelEvent:
                    return event.model
    finally:
        stream.close()
    return None


def _text_batches(texts: Iterable, *, model: str, batch_size: int, side: str) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for i, text in enumerate(texts):
        if text is not None and not isinstance(text, str):
            raise CompareError(f"{side}: item {i} is {type(text).__name__}, expected a text (str)")
        event = {"ts": DEFAULT_TS, "model": model, "prediction": TEXT_ONLY_CLASS}
        if text is not None:
            event["text"] = text
        batch.append(Record(orjson.dumps(event), f"row:{i}"))
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


# -- DataFrames -------------------------------------------------------------------------------------------------
def _dataframe(df, *, columns: Columns, batch_size: int, side: str) -> Input:
    used = _check_columns(df, columns, side)
    return Input("dataframe", "DataFrame", lambda model: _frame_batches(df, used, model=model, batch_size=batch_size,
                                                                        side=side), len(df), "rows", None)


def _check_columns(df, columns: Columns, side: str) -> dict[str, str]:
    """Role -> column of the roles the DataFrame has; raise naming the first column missing or mistyped."""
    import pandas as pd

    present = set(map(str, df.columns))
    used = {}
    for f in fields(Columns):
        role, name = f.name, getattr(columns, f.name)
        if name not in present:
            if role == "text" or name != f.default:  # required, or named on purpose
                raise CompareError(f"{side}: column {name!r} ({role}) is not in the DataFrame "
                                   f"(columns: {', '.join(sorted(present))})")
            continue
        dtype = df[name].dtype
        if role in _NUMBERS and not pd.api.types.is_numeric_dtype(dtype):
            raise CompareError(f"{side}: column {name!r} ({role}) must hold numbers, not {dtype}")
        if role in _STRINGS and pd.api.types.is_numeric_dtype(dtype):
            raise CompareError(f"{side}: column {name!r} ({role}) must hold strings, not {dtype}")
        used[role] = name
    return used


def _frame_batches(df, used: dict[str, str], *, model: str, batch_size: int, side: str) -> Iterator[list[Record]]:
    for start in range(0, len(df), batch_size):
        part = df.iloc[start:start + batch_size]
        values = {role: part[name].tolist() for role, name in used.items()}
        batch = []
        for j in range(len(part)):
            event = {"ts": DEFAULT_TS, "model": model}
            for role, column in values.items():
                value = _value(column[j], role, row=start + j, name=used[role], side=side)
                if value is not None:
                    event[_FIELDS[role]] = value
            event.setdefault("prediction", TEXT_ONLY_CLASS)
            batch.append(Record(orjson.dumps(event), f"row:{start + j}"))
        yield batch


def _value(value, role: str, *, row: int, name: str, side: str):
    """A cell as the event field's value; None for a missing one (None, NaN); raise for a mistyped one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if role in _STRINGS and not isinstance(value, str):
        raise CompareError(f"{side}: column {name!r} ({role}) row {row} holds {type(value).__name__}, expected a string")
    if role == "probabilities" and not isinstance(value, dict):
        raise CompareError(f"{side}: column {name!r} ({role}) row {row} holds {type(value).__name__}, "
                           "expected a {class: probability} dict")
    if role == "ts" and hasattr(value, "isoformat"):  # a pandas/datetime timestamp
        return value.isoformat()
    return value
