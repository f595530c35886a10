"""Line-oriented sources: a JSONL file (optionally followed like ``tail -f``) or standard input."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from monitor.pipeline import Record

__all__ = ["iter_batches", "open_source"]


def open_source(path: str) -> tuple[BinaryIO, str]:
    """Open ``path`` for binary reading (``-`` is standard input); return the stream and a display name."""
    if path == "-":
        return sys.stdin.buffer, "stdin"
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a JSONL file")
    return open(p, "rb"), p.name


def iter_batches(
    stream: BinaryIO,
    name: str,
    batch_size: int,
    *,
    follow: bool = False,
    poll_interval: float = 0.5,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[list[Record]]:
    """Yield batches of non-blank lines as :class:`Record` (position ``name:line``).

    With ``follow`` the file is polled for appended lines until ``should_stop()``; a partial last line is
    held back until its newline arrives. An empty batch is yielded while idle so callers can do timed work.
    """
    batch: list[Record] = []
    line_no = 0
    pending = b""
    while True:
        line = stream.readline()
        if line:
            if not line.endswith(b"\n") and follow:
                pending += line
                continue
            line, pending = pending + line, b""
            line_no += 1
            if line.strip():
                batch.append(Record(line, f"{name}:{line_no}"))
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
            continue
        if batch:
            yield batch
            batch = []
        if not follow or should_stop():
            if pending.strip():
                yield [Record(pending, f"{name}:{line_no + 1}")]
            return
        yield []
        time.sleep(poll_interval)
