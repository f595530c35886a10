"""Dead-letter JSONL file: rejected records with the reason, for the producer's owners to inspect."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson

__all__ = ["DeadLetterFile"]


class DeadLetterFile:
    """Append one JSON line per rejected record: reason, detail, source position and the original bytes."""

    def __init__(self, path: str | Path, on_write=None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab", buffering=1 << 16)
        # Counts each write (the daemon's sink); public because the file is opened before the sink exists.
        self.on_write = on_write
        self.written = 0

    def write(self, raw: bytes, reason: str, detail: str, position: str) -> None:
        record = {"reason": reason, "detail": detail, "source": position}
        try:
            record["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            record["raw_b64"] = base64.b64encode(raw).decode("ascii")
        self._f.write(orjson.dumps(record) + b"\n")
        self.written += 1
        if self.on_write is not None:
            self.on_write(1)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()
