"""A stream's window state machine (StreamState.add / attribute / due) on hand-made batches."""

from __future__ import annotations

import numpy as np

from monitor.ingest.batch import StreamBatch
from monitor.windowing.streams import StreamState, WindowSpec
from monitor.windowing.watermarks import PartitionRun


def spec(kind: str = "time", *, lateness_ms: int = 0, events: int = 3) -> WindowSpec:
    return WindowSpec(kind=kind, size_ms=1000, lateness_ms=lateness_ms, events=events, reservoir_size=10, seed=0,
                      embedding_sample=0, base_width=0)


def batch(ts: list[int]) -> StreamBatch:
    n = len(ts)
    return StreamBatch(idx=np.arange(n), ts=np.asarray(ts, np.int64), rows=np.full((n, 2), 0.9),
                       preds=["a"] * n, labels=[None] * n, entropy=np.full(n, np.nan), lengths=np.ones(n))


def feed(stream: StreamState, ts: list[int], rejected: tuple[int, ...] = ()):
    """One chunk of only this stream's events, records at positions 0..n-1 (rejections at the given ones)."""
    b = batch(ts)
    part = PartitionRun.over(b.ts, np.arange(len(ts), dtype=np.int64), stream.max_ts_ms)
    return stream.add(b, part, np.asarray(rejected, np.int64), low_threshold=0.5)


def test_time_windows_open_close_and_count_late_events():
    s = StreamState(("m", "1", ""), spec=spec())
    opened, n_late = feed(s, [100, 200, 1100])
    assert opened.tolist() == [0, 1000] and n_late == 0
    # The watermark (1100) passed the end of [0, 1000): it is due; [1000, 2000) is not.
    assert s.due(s.max_ts_ms) == [0]
    s.open.pop(0)
    opened, n_late = feed(s, [300, 1200])  # 300's window had closed: late, counted in the open one
    assert opened.size == 0 and n_late == 1
    assert (s.open[1000].events, s.open[1000].late) == (2, 1)


def test_lateness_keeps_a_window_open():
    s = StreamState(("m", "1", ""), spec=spec(lateness_ms=500))
    feed(s, [100, 1400])
    assert s.due(s.max_ts_ms) == []  # 1000 + 500 > 1400
    feed(s, [1500])
    assert s.due(s.max_ts_ms) == [0]


def test_rejections_before_any_window_wait_for_the_next_one():
    s = StreamState(("m", "1", ""), spec=spec())
    s.attribute(np.array([0, 1]), np.zeros(2, np.int64), np.zeros(2, np.int64))
    assert s.pending_invalid == 2
    feed(s, [100])
    assert (s.open[0].invalid, s.pending_invalid) == (2, 0)


def test_count_windows_close_when_full():
    s = StreamState(("m", "1", ""), spec=spec("count", events=3))
    opened, _ = feed(s, [1, 2, 3, 4], rejected=())
    assert opened.tolist() == [0, 1] and s.count == 4
    assert s.due(0) == [0]
