"""Line sources: a followed JSONL file survives log rotation (rename and copytruncate) without a lost or split line."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from monitor.runtime.sources import iter_batches, open_source


class Follower:
    """``iter_batches(follow=True)`` in a thread; collects every record's bytes."""

    def __init__(self, path: Path):
        self.records: list[bytes] = []
        self.stop = False
        stream, name = open_source(str(path))
        self._thread = threading.Thread(target=self._run, args=(stream, name, path), daemon=True)
        self._thread.start()

    def _run(self, stream, name, path):
        for batch in iter_batches(stream, name, 100, follow=True, poll_interval=0.01,
                                  should_stop=lambda: self.stop, path=path):
            self.records += [r.value for r in batch]

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.records) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.records) >= n, self.records

    def close(self) -> list[bytes]:
        self.stop = True
        self._thread.join(10)
        return self.records


def lines(lo: int, hi: int) -> bytes:
    return b"".join(b'{"n": %d}\n' % i for i in range(lo, hi))


def expected(lo: int, hi: int) -> list[bytes]:
    return lines(lo, hi).splitlines(keepends=True)


def test_rename_rotation_reads_the_old_file_to_its_end_then_the_new_one(tmp_path):
    log = tmp_path / "predictions.jsonl"
    log.write_bytes(lines(0, 50))
    f = Follower(log)
    f.wait_for(50)
    with open(log, "ab") as w:  # the writer still has the old file open when logrotate renames it
        os.rename(log, tmp_path / "predictions.jsonl.1")
        w.write(lines(50, 60))
    time.sleep(0.1)  # the path is missing for a while: the follower keeps the old file
    log.write_bytes(lines(60, 100))  # the writer reopens its log: a new file under the old name
    f.wait_for(100)
    with open(log, "ab") as w:
        w.write(lines(100, 120))
    f.wait_for(120)
    assert f.close() == expected(0, 120)


def test_copytruncate_restarts_at_the_beginning_without_a_split_line(tmp_path):
    log = tmp_path / "predictions.jsonl"
    w = open(log, "ab", buffering=0)  # O_APPEND, like a logging handler
    w.write(lines(0, 40) + b'{"n": 4')  # the last line is only half written when the rotation comes
    f = Follower(log)
    f.wait_for(40)
    shutil.copyfile(log, tmp_path / "predictions.jsonl.1")
    os.truncate(log, 0)
    time.sleep(0.1)
    w.write(b'0}\n' + lines(41, 45))  # the line's tail, then more lines, at the start of the cut file
    f.wait_for(45)
    w.close()
    assert f.close() == expected(0, 45)


def test_without_follow_a_file_is_read_once_to_its_end(tmp_path):
    log = tmp_path / "e.jsonl"
    log.write_bytes(lines(0, 5) + b'{"n": 5}')
    stream, name = open_source(str(log))
    got = [r for b in iter_batches(stream, name, 2, path=log) for r in b]
    assert [r.value for r in got] == expected(0, 5) + [b'{"n": 5}']
    assert [r.position for r in got][-1] == "e.jsonl:6"
