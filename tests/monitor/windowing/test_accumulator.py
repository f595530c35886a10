"""WindowAccumulator.add: the class counts the pipeline hands over give the state a fresh count gives."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np

from monitor.windowing.accumulator import BatchSlice, WindowAccumulator


def _acc() -> WindowAccumulator:
    return WindowAccumulator(model="m", version="1", kind="time", start_ms=0, end_ms=60_000, seq=0, width=3,
                             reservoir_size=50, seed=1)


def _slices(rng: np.random.Generator, labelled: bool) -> list[tuple[BatchSlice, BatchSlice]]:
    out = []
    for _ in range(12):
        k = int(rng.integers(1, 40))
        preds = [None if rng.random() < 0.1 else str(rng.choice(["b", "a", "c"])) for _ in range(k)]
        labels = [str(rng.choice(["a", "b"])) if labelled and rng.random() < 0.5 else None for _ in range(k)]
        rows = rng.random((k, 3))
        args = (np.arange(k, dtype=np.int64), rows, preds, labels, rng.random(k), 0.5)
        out.append((BatchSlice(*args), BatchSlice(*args, classes=Counter(preds))))
    return out


def test_handed_over_class_counts_give_the_same_state_byte_for_byte():
    rng = np.random.default_rng(4)
    for labelled in (False, True):
        counted, handed = _acc(), _acc()
        first_seen: list[str] = []
        for fresh, given in _slices(rng, labelled):
            counted.add(fresh)
            handed.add(given)
            first_seen += [p for p in dict.fromkeys(fresh.predictions) if p is not None and p not in first_seen]
        # Pickled: the order of class_counts' keys (what a checkpoint stores) must be the same too.
        assert pickle.dumps(handed.state()) == pickle.dumps(counted.state())
        assert counted.errors > 0 and (counted.labelled > 0) == labelled
        assert list(handed.class_counts) == first_seen  # classes in the order they were first predicted


def test_errors_labelled_and_correct_are_counted():
    acc = _acc()
    preds, labels = ["a", None, "b", "a", None], ["a", "a", "a", None, None]
    acc.add(BatchSlice(np.arange(5, dtype=np.int64), np.zeros((5, 3)), preds, labels, np.zeros(5), 0.5,
                       classes=Counter(preds)))
    assert (acc.events, acc.errors, acc.labelled, acc.correct) == (5, 2, 2, 1)
    assert dict(acc.class_counts) == {"a": 2, "b": 1}
