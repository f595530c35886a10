"""Window arithmetic (pure functions) and windowing behaviour through the pipeline."""

import numpy as np
import pytest

from monitor.windowing.windows import closed_by_ms, is_late, watermark_before_ms, window_start_ms


@pytest.mark.parametrize(
    "ts_ms, size_ms, expected",
    [
        (0, 1000, 0),  # the epoch starts a window
        (999, 1000, 0),  # last millisecond of the first window
        (1000, 1000, 1000),  # a window end is the next window's start (half-open)
        (1_764_000_123_456, 300_000, 1_764_000_000_000),  # 5-minute windows align to the epoch
        (-1, 1000, -1000),  # negative times floor, not truncate
    ],
)
def test_window_start_ms(ts_ms, size_ms, expected):
    assert window_start_ms(ts_ms, size_ms) == expected
    assert window_start_ms(np.array([ts_ms]), size_ms)[0] == expected


@pytest.mark.parametrize(
    "window_end_ms, max_ts_before_ms, lateness_ms, late",
    [
        (1000, 999, 0, False),  # watermark still inside the window
        (1000, 1000, 0, True),  # watermark reached the end: closed, event is late
        (1000, 1029, 30, False),  # within allowed lateness
        (1000, 1030, 30, True),  # exactly at end + lateness: closed
    ],
)
def test_is_late(window_end_ms, max_ts_before_ms, lateness_ms, late):
    assert is_late(window_end_ms, max_ts_before_ms, lateness_ms) is late
    assert closed_by_ms(window_end_ms, max_ts_before_ms, lateness_ms) is late


def test_watermark_before_uses_only_earlier_events():
    ts = np.array([5, 3, 9, 1, 10], dtype=np.int64)
    # before each event: the largest ts among the previous ones (and the stream's past max, 4)
    assert watermark_before_ms(ts, 4).tolist() == [4, 5, 5, 9, 9]
