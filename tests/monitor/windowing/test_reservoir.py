import numpy as np

from monitor.windowing.reservoir import Reservoir


def test_keeps_everything_below_capacity():
    r = Reservoir(100, 2, seed=1)
    rows = np.arange(80, dtype=float).reshape(40, 2)
    r.add(rows[:15])
    r.add(rows[15:])
    assert not r.sampled
    np.testing.assert_array_equal(r.rows, rows)


def test_bounded_and_uniform():
    cap, n = 1000, 50_000
    r = Reservoir(cap, 1, seed=3)
    values = np.arange(n, dtype=float).reshape(-1, 1)
    for lo in range(0, n, 777):
        r.add(values[lo : lo + 777])
    assert r.sampled and r.rows.shape == (cap, 1) and r.seen == n
    kept = r.rows[:, 0]
    assert len(np.unique(kept)) == cap  # no row kept twice
    # a uniform sample of 0..n-1 has mean ~ n/2 (sd of the mean ~ n/sqrt(12*cap) ~ 456)
    assert abs(kept.mean() - n / 2) < 5 * n / np.sqrt(12 * cap)


def test_batching_does_not_change_the_sample():
    values = np.random.default_rng(0).normal(size=(5000, 3))
    a, b = Reservoir(300, 3, seed=9), Reservoir(300, 3, seed=9)
    a.add(values)
    for lo in range(0, 5000, 123):
        b.add(values[lo : lo + 123])
    # Same seed, same row sequence: the kept sample is identical however the rows were batched
    # (a restarted Kafka consumer polls different batch sizes than an uninterrupted one).
    assert a.seen == b.seen
    np.testing.assert_array_equal(a.rows, b.rows)


def test_different_seeds_sample_differently():
    values = np.arange(5000, dtype=float).reshape(-1, 1)
    a, b = Reservoir(300, 1, seed=1), Reservoir(300, 1, seed=2)
    a.add(values)
    b.add(values)
    assert not np.array_equal(a.rows, b.rows)


def test_state_round_trip_continues_identically():
    values = np.random.default_rng(1).normal(size=(3000, 2))
    a = Reservoir(200, 2, seed=5)
    a.add(values[:1000])
    b = Reservoir.from_state(a.state())
    a.add(values[1000:])
    b.add(values[1000:])
    np.testing.assert_array_equal(a.rows, b.rows)
