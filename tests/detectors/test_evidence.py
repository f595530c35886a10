"""The pure statistics of a window's evidence: sketches, shifted tokens, Space-Saving, exemplars."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.evidence import (
    QUANTILE_GRID,
    SpaceSaving,
    Standardiser,
    TopExemplars,
    quantile_sketch,
    token_shifts,
)  # fmt: skip


def test_quantile_sketch_is_order_free_and_ignores_non_finite():
    rng = np.random.default_rng(1)
    x = rng.normal(size=1001)
    a = quantile_sketch(x)
    b = quantile_sketch(np.concatenate([rng.permutation(x), [np.nan, np.inf]]))
    assert a == b and a.n == 1001 and len(a.quantiles) == len(QUANTILE_GRID)
    assert a.min <= a.quantiles[0] <= a.quantiles[-1] <= a.max
    assert abs(a.quantiles[QUANTILE_GRID.index(0.5)] - np.median(x)) < 1e-5
    assert quantile_sketch(np.array([np.nan])).n == 0


def test_token_shifts_rank_new_and_vanished_tokens():
    reference = {"pizza": 400, "waiter": 300, "good": 500, "the": 900}
    window = {"battery": 300, "screen": 200, "good": 50, "the": 90, "rare": 4, "pizza": 2}
    rising, falling = token_shifts(window, 1000, reference, 1000, min_events=5, top=4)
    assert [t.token for t in rising][:2] == ["battery", "screen"]
    assert all(t.window_events >= 5 and t.z > 0 for t in rising)
    assert "rare" not in {t.token for t in rising + falling}  # below the floor and not in the profile
    assert {t.token for t in falling} >= {"pizza", "waiter"} and all(t.z < 0 for t in falling)
    pizza = next(t for t in falling if t.token == "pizza")
    assert pizza.window_events == 2 and pizza.reference_events == 400 and pizza.ratio == pytest.approx(0.005)
    assert rising[0].ratio is None  # the reference never saw it


def test_token_shifts_unchanged_share_is_not_a_shift():
    rising, falling = token_shifts({"a": 100, "b": 50}, 1000, {"a": 100, "b": 50}, 1000, min_events=5, top=5)
    assert all(abs(t.z) < 1e-9 for t in rising + falling) and not rising and not falling


def test_token_shifts_shrink_rare_tokens():
    # The same ratio on few events is less certain: a smaller z.
    few, _ = token_shifts({"x": 10}, 1000, {"x": 5}, 1000, min_events=5, top=1)
    many, _ = token_shifts({"x": 200}, 1000, {"x": 100}, 1000, min_events=5, top=1)
    assert 0 < few[0].z < many[0].z


def _word_events(n: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    # Zipfian keys: a few heavy hitters, a long tail
    return [sorted(set(rng.zipf(1.3, size=12).tolist())) for _ in range(n)]


def _feed(events: list[list[int]], batch: int, capacity: int, every: int = 64) -> SpaceSaving:
    sketch = SpaceSaving(capacity, min_events=5)
    done = 0
    for lo in range(0, len(events), batch):
        part = events[lo : lo + batch]
        i = 0
        while i < len(part):  # split at the fixed prune points of the event sequence
            take = min(len(part) - i, every - (done % every))
            keys = np.array([k for e in part[i : i + take] for k in e], dtype=np.uint64)
            sketch.update(keys, lambda k: f"w{k}")
            done += take
            i += take
            if done % every == 0:
                sketch.prune()
    return sketch


@pytest.mark.parametrize("batch", [7, 1000])
def test_space_saving_same_state_whatever_the_batching(batch):
    events = _word_events(3000, seed=4)
    one = _feed(events, 1, capacity=50)
    other = _feed(events, batch, capacity=50)
    assert one.state() == other.state()
    assert one.keys.size <= 50 + 64 * 12


def test_space_saving_bounds_hold_and_names_pass_the_floor():
    events = _word_events(3000, seed=5)
    sketch = _feed(events, 100, capacity=40)
    sketch.prune()
    truth: dict[int, int] = {}
    for e in events:
        for k in e:
            truth[k] = truth.get(k, 0) + 1
    keys = sketch.keys
    lower = sketch.lower_bound(keys)
    assert all(lower[i] <= truth[int(k)] <= sketch.counts[i] for i, k in enumerate(keys))
    heavy = sorted(truth, key=lambda k: -truth[k])[:5]
    assert set(heavy) <= set(keys.tolist())  # the heavy hitters are held
    named = sketch.named()
    assert named and all(v >= 5 for v in named.values())
    assert all(truth[int(name[1:])] >= 5 for name in named)
    restored = SpaceSaving.from_state(sketch.state())
    assert restored.state() == sketch.state()


def test_space_saving_never_names_a_key_below_the_floor():
    sketch = SpaceSaving(10, min_events=5)
    for _ in range(4):
        sketch.update(np.array([7], dtype=np.uint64), lambda k: "secret")
    assert sketch.names == {} and "secret" not in repr(sketch.state())
    sketch.update(np.array([7], dtype=np.uint64), lambda k: "secret")
    assert sketch.named() == {"secret": 5}


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_top_exemplars_same_set_whatever_the_batching(batch):
    rng = np.random.default_rng(3)
    scores = np.round(rng.exponential(size=2000), 1)  # many ties
    scores[::97] = np.nan
    ref = TopExemplars(10)
    ref.offer(scores, lambda i: (f"t/0@{i:05d}", f"r{i}"))
    top = TopExemplars(10)
    for lo in range(0, scores.size, batch):
        top.offer(scores[lo : lo + batch], lambda i, lo=lo: (f"t/0@{lo + i:05d}", f"r{lo + i}"))
    assert top.kept == ref.kept and len(top.kept) == 10
    expected = sorted((-s, f"t/0@{i:05d}") for i, s in enumerate(scores) if not np.isnan(s))[:10]
    assert [(-s, p) for s, p, _ in top.kept] == expected
    assert TopExemplars.from_state(top.state()).kept == top.kept


def test_standardiser_scores():
    st = Standardiser.fit([np.array([0.0, 2.0]), np.array([5.0, 5.0])])
    rows = np.array([[1.0, 5.0], [5.0, 7.0], [np.nan, np.nan]])
    z = st.max_abs_z(rows)
    assert z[0] == 0.0 and z[1] == 4.0 and np.isnan(z[2])  # constant column: scale 1
    d = st.distance(rows[:2])
    assert d[1] == pytest.approx(np.hypot(4.0, 2.0))
