"""Line-oriented sources: a JSONL file (optionally followed like ``tail -f``) or standard input."""

from __future__ import annotations

import queue
import sys
import threading
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
    if stream is sys.stdin.buffer or not stream.seekable():
        yield from _iter_pipe_batches(stream, name, batch_size, poll_interval, should_stop)
        return
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


def _iter_pipe_batches(stream: BinaryIO, name: str, batch_size: int, poll_interval: float,
                       should_stop: Callable[[], bool]) -> Iterator[list[Record]]:
    """Batches from a pipe: a reader thread feeds a queue so a partial batch is processed as soon as the
    writer pauses (a blocking readline would hold it until the batch fills or the pipe closes)."""
    lines: queue.Queue = queue.Queue(maxsize=batch_size * 4)
    eof = object()

    def reader() -> None:
        try:
            for line in stream:
                lines.put(line)
        finally:
            lines.put(eof)

    threading.Thread(target=reader, name="nlpmon-stdin", daemon=True).start()
    batch: list[Record] = []
    line_no = 0
    while True:
        try:
            line = lines.get(timeout=poll_interval if not batch else min(poll_interval, 0.05))
        except queue.Empty:
            if batch:
                yield batch
                batch = []
            else:
                yield []
            if should_stop():
                return
            continue
        if line is eof:
            if batch:
                yield batch
            return
        line_no += 1
        if line.strip():
            batch.append(Record(line, f"{name}:{line_no}"))
            if len(batch) >= batch_size:
                yield batch
                batch = []
