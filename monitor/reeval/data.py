"""Read a labelled held-out set (jsonl, csv, tsv) and turn its labels into the model's class indices."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.reeval.errors import DataError

__all__ = [
    "LabelledData",
    "LabelSpace",
    "parse_label_map",
    "label_space",
    "read_records",
    "resolve_labels",
    "load_labelled_data",
]

_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv"}
_INDEX = re.compile(r"^\d+$")


@dataclass(frozen=True)
class LabelSpace:
    """How raw labels become class indices, and the display name of each class.

    ``source`` is ``"label-map"`` (given by the user; only its names are accepted), ``"config.json"``
    (the model's id2label; class indices are accepted too) or ``"indices"`` (labels must be class indices).
    """

    names: tuple[str, ...]
    to_index: tuple[tuple[str, int], ...]
    source: str

    def lookup(self) -> dict[str, int]:
        return dict(self.to_index)


@dataclass(frozen=True)
class LabelledData:
    """Texts and integer labels of a held-out set, in file order."""

    path: Path
    texts: tuple[str, ...]
    labels: np.ndarray
    lines: tuple[int, ...]
    space: LabelSpace

    def __len__(self) -> int:
        return len(self.texts)


def parse_label_map(spec: str) -> dict[str, int]:
    """Parse ``--label-map``: a JSON file (``{"neg": 0, "pos": 1}`` or ``["neg", "pos"]``) or ``neg=0,pos=1``."""
    spec = spec.strip()
    if not spec:
        raise DataError("--label-map is empty; give a JSON file or name=index pairs such as neg=0,pos=1")
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.is_file():
        if not path.is_file():
            raise DataError(f"label map file {spec} does not exist")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"label map file {spec} is not valid JSON: {exc}") from None
        if isinstance(raw, list):
            raw = {str(name): i for i, name in enumerate(raw)}
        if not isinstance(raw, dict):
            raise DataError(f"label map file {spec} must hold a JSON object {{name: index}} or a list of names")
        pairs = list(raw.items())
    else:
        pairs = []
        for part in spec.split(","):
            name, sep, index = part.partition("=")
            if not sep or not name.strip():
                raise DataError(f"--label-map entry {part.strip()!r} is not name=index (e.g. neg=0,pos=1)")
            pairs.append((name, index))
    mapping: dict[str, int] = {}
    for name, index in pairs:
        name = str(name).strip()
        try:
            value = int(str(index).strip())
        except ValueError:
            raise DataError(f"--label-map gives {name!r} the index {index!r}, which is not an integer") from None
        if value < 0:
            raise DataError(f"--label-map gives {name!r} the negative index {value}")
        if name in mapping and mapping[name] != value:
            raise DataError(f"--label-map gives {name!r} two indices, {mapping[name]} and {value}")
        mapping[name] = value
    return mapping


def _id2label_from_config(*dirs: Path) -> dict[int, str] | None:
    for d in dirs:
        cfg = d / "config.json"
        if not cfg.is_file():
            continue
        try:
            raw = json.loads(cfg.read_text(encoding="utf-8")).get("id2label")
            if isinstance(raw, dict) and raw:
                return {int(k): str(v) for k, v in raw.items()}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, AttributeError):
            continue  # a config.json we cannot read is not a label source; the labels must then be indices
    return None


def label_space(num_labels: int, *, label_map: dict[str, int] | None, config_dirs: tuple[Path, ...] = ()) -> LabelSpace:
    """Decide how labels map to classes: the explicit map, else ``config.json`` id2label, else plain indices."""
    if label_map is not None:
        too_big = {k: v for k, v in label_map.items() if v >= num_labels}
        if too_big:
            name, index = next(iter(too_big.items()))
            raise DataError(f"--label-map gives {name!r} index {index}, but the model has only {num_labels} outputs")
        names = [str(i) for i in range(num_labels)]
        for name, index in reversed(list(label_map.items())):
            names[index] = name  # reversed: the first name given for an index is the one displayed
        return LabelSpace(tuple(names), tuple(label_map.items()), "label-map")
    id2label = _id2label_from_config(*config_dirs)
    if id2label and all(0 <= i < num_labels for i in id2label):
        names = tuple(id2label.get(i, str(i)) for i in range(num_labels))
        return LabelSpace(names, tuple((name, i) for i, name in sorted(id2label.items())), "config.json")
    return LabelSpace(tuple(str(i) for i in range(num_labels)), (), "indices")


def _format(path: Path) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"cannot tell the format of {path} from its suffix; use .jsonl, .csv or .tsv")
    return fmt


def _jsonl(path: Path, text_field: str, label_field: str):
    with path.open(encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{line_no}: expected a JSON object, got {type(rec).__name__}")
            for field, flag in ((text_field, "--text-field"), (label_field, "--label-field")):
                if field not in rec:
                    fields = ", ".join(repr(k) for k in rec) or "none"
                    raise DataError(f"{path}:{line_no}: no field {field!r} (fields: {fields}); set {flag}")
            yield line_no, rec[text_field], rec[label_field]


# Fields follow CSV quoting in .tsv files too (Python's csv module, Excel's and pandas' default): a field that
# starts with a double quote is a quoted field. Kept strict rather than reading a bare leading quote as text:
# a correctly quoted field (a tab or newline inside quotes) would then be split, silently, into other columns.
QUOTING_HINT = ('a field that starts with " is read as a quoted field (CSV quoting, .tsv included): write such '
                'a text as "…" with each " inside doubled (""), e.g. pandas to_csv(sep="\\t") does, or use .jsonl')


def _delimited(path: Path, text_field: str, label_field: str, delimiter: str):
    with path.open(encoding="utf-8-sig", newline="") as f:
        # strict: a stray quote is an error rather than a silently merged field.
        reader = csv.DictReader(f, delimiter=delimiter, strict=True)
        header = reader.fieldnames
        if header is None:
            return
        for field, flag in ((text_field, "--text-field"), (label_field, "--label-field")):
            if field not in header:
                cols = ", ".join(repr(c) for c in header)
                raise DataError(f"{path}: no column {field!r} in the header (columns: {cols}); set {flag}")
        rows = iter(reader)
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:
                kind = "TSV" if delimiter == "\t" else "CSV"
                # line_num counts the lines parsed so far; the bad one is the next.
                reason = str(exc).replace("\t", "\\t")  # "'\t' expected", not a raw tab
                raise DataError(f"{path}:{reader.line_num + 1}: unreadable {kind}: {reason}; {QUOTING_HINT}") from None
            text, label = row.get(text_field), row.get(label_field)
            if text is None or label is None:
                raise DataError(f"{path}:{reader.line_num}: the row has fewer columns than the header")
            yield reader.line_num, text, label


def read_records(
    path: Path | str, *, text_field: str = "text", label_field: str = "label"
) -> list[tuple[int, str, object]]:
    """Return ``(line, text, raw_label)`` per record; every problem is a ``DataError`` naming file and line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if not path.is_file():
        raise DataError(f"data file {path} is not a regular file")
    fmt = _format(path)
    rows = (
        _jsonl(path, text_field, label_field)
        if fmt == "jsonl"
        else _delimited(path, text_field, label_field, "," if fmt == "csv" else "\t")
    )
    try:
        records = list(rows)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (undecodable byte at offset {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: unreadable {fmt.upper()}: {exc}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not records:
        raise DataError(f"{path} holds no records; the data set is empty")
    for line, text, _ in records:
        if not isinstance(text, str):
            raise DataError(f"{path}:{line}: field {text_field!r} must be a string, got {json.dumps(text)}")
        if "\x00" in text:
            raise DataError(f"{path}:{line}: the text holds a NUL character; is {path.name} a binary file?")
    return records


def _label_key(raw: object) -> str | None:
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    if isinstance(raw, str):
        return raw.strip()
    return None


def resolve_labels(
    path: Path, records: list[tuple[int, str, object]], space: LabelSpace, num_labels: int
) -> np.ndarray:
    """Map each record's raw label to a class index; the first unknown label is a ``DataError``."""
    lookup = space.lookup()
    accept_index = space.source != "label-map"
    out = np.empty(len(records), dtype=np.int64)
    for i, (line, _, raw) in enumerate(records):
        key = _label_key(raw)
        if key is not None and key in lookup:
            out[i] = lookup[key]
            continue
        if key is not None and accept_index and _INDEX.match(key):
            if int(key) < num_labels:
                out[i] = int(key)
                continue
            raise DataError(f"{path}:{line}: label {key} is not a class of this model (it has {num_labels} outputs)")
        shown = json.dumps(raw, ensure_ascii=False) if not isinstance(raw, str) else repr(raw)
        if space.source == "label-map":
            known = ", ".join(n for n, _ in space.to_index)
            raise DataError(f"{path}:{line}: label {shown} is not in the label map (known: {known})")
        if space.source == "config.json":
            known = ", ".join(n for n, _ in space.to_index)
            raise DataError(
                f"{path}:{line}: label {shown} is neither a class name from config.json ({known}) "
                f"nor a class index; pass --label-map"
            )
        raise DataError(
            f"{path}:{line}: label {shown} is not a class index and no label map is known; "
            f"pass --label-map (e.g. neg=0,pos=1) or put id2label in a config.json next to the model"
        )
    return out


def load_labelled_data(
    path: Path | str,
    *,
    num_labels: int,
    text_field: str = "text",
    label_field: str = "label",
    label_map: dict[str, int] | None = None,
    config_dirs: tuple[Path, ...] = (),
) -> LabelledData:
    """Read ``path`` and resolve its labels for a model with ``num_labels`` outputs."""
    path = Path(path)
    records = read_records(path, text_field=text_field, label_field=label_field)
    space = label_space(num_labels, label_map=label_map, config_dirs=config_dirs)
    labels = resolve_labels(path, records, space, num_labels)
    return LabelledData(
        path=path,
        texts=tuple(text for _, text, _ in records),
        labels=labels,
        lines=tuple(line for line, _, _ in records),
        space=space,
    )
