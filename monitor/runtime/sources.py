"""Line-oriented sources: a JSONL file (optionally followed like ``tail -f``) or standard input."""

from __future__ import annotations

import os
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
    path: str | Path | None = None,
) -> Iterator[list[Record]]:
    """Yield batches of non-blank lines as :class:`Record` (position ``name:line``).

    With ``follow`` the file is polled for appended lines until ``should_stop()``; a partial last line is
    held back until its newline arrives. An empty batch is yielded while idle so callers can do timed work.
    Given the ``path`` it was opened from, a followed file survives log rotation (see :class:`_Rotation`).
    """
    if stream is sys.stdin.buffer or not stream.seekable():
        yield from _iter_pipe_batches(stream, name, batch_size, poll_interval=poll_interval, should_stop=should_stop)
        return
    batch: list[Record] = []
    line_no = 0
    pending = b""
    rotation = _Rotation(path, stream) if follow and path is not None else None
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
        if rotation is not None:
            event = rotation.check(stream)
            if event == "renamed":
                # The old file is read to its end; a partial last line there is complete as far as it goes
                # (the writer continues in the new file), so it is a record of its own.
                if pending.strip():
                    line_no += 1
                    batch.append(Record(pending, f"{name}:{line_no}"))
                pending = b""
                stream.close()
                stream = rotation.reopen()
                line_no = 0
                continue
            if event == "truncated":
                # copytruncate: the file was copied away and cut to zero. Start again from its beginning;
                # a held-back partial line keeps its head, and an appending writer's next bytes are its tail.
                stream.seek(0)
                line_no = 0
                continue
        if batch:
            yield batch
            batch = []
        if not follow or should_stop():
            if pending.strip():
                yield [Record(pending, f"{name}:{line_no + 1}")]
            if rotation is not None:
                stream.close()  # the one the caller opened may have been replaced; closing twice is harmless
            return
        yield []
        time.sleep(poll_interval)


class _Rotation:
    """Notice, at end of file, that a followed log was rotated, the way ``tail -F`` does.

    - rename (logrotate's default): the path now names another file (device/inode changed). The old file is
      read to its end first, then the new one is opened at its beginning. If the path is missing for a while
      (between the rename and the writer creating the new file), the old file is kept.
    - copytruncate: the same file became shorter than the position read so far. Reading restarts at 0. A
      truncation that the writer outgrows between two polls (``poll_interval_seconds``) cannot be seen: keep
      the poll interval short against the write rate, or prefer rename rotation.
    """

    def __init__(self, path: str | Path, stream: BinaryIO):
        self.path = Path(path)
        self._identity = _identity(os.fstat(stream.fileno()))

    def check(self, stream: BinaryIO) -> str | None:
        current = os.fstat(stream.fileno())
        if current.st_size < stream.tell():
            return "truncated"
        try:
            named = os.stat(self.path)
        except OSError:
            return None  # rotated away, the new file not there yet: keep the old one
        if _identity(named) != self._identity:
            return "renamed"
        return None

    def reopen(self) -> BinaryIO:
        stream = open(self.path, "rb")
        self._identity = _identity(os.fstat(stream.fileno()))
        return stream


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _iter_pipe_batches(stream: BinaryIO, name: str, batch_size: int, *, poll_interval: float,
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
