"""entropies and probability_columns: the one-matrix path gives the bits of the per-group path."""

from __future__ import annotations

import numpy as np

from monitor.ingest.events import Event
from monitor.ingest.features import entropies, probability_columns


def _event(i: int, classes: tuple[str, ...] | None, *, error: str | None = None) -> Event:
    if classes is None:
        return Event(ts_ms=i, model="m", version="1", prediction="a", error=error)
    rng = np.random.default_rng(i)
    p = rng.dirichlet(np.ones(len(classes)))
    return Event(ts_ms=i, model="m", version="1", prediction=None if error else classes[0], error=error,
                 confidence=float(p.max()), classes=classes, probabilities=tuple(float(x) for x in p))


def _grouped_entropies(events):
    """Entropy of each event, computed one event at a time (the reference)."""
    return np.array([entropies([e])[0] for e in events])


def _grouped_columns(events, classes):
    return np.vstack([probability_columns([e], classes) for e in events])


AB = ("pos", "neg")
ABC = ("pos", "neg", "mixed")


def test_one_width_batch_matches_the_per_event_values_bit_for_bit():
    plain = [_event(i, AB) for i in range(200)]
    with_gaps = plain[:50] + [_event(1000, None), _event(1001, AB, error="timeout")] + plain[50:]
    for events in (plain, with_gaps):
        got = entropies(events)
        assert got.tobytes() == _grouped_entropies(events).tobytes()
        assert np.isnan(got).sum() == len(events) - 200
        for classes in (AB, ("neg",), ("neg", "other", "pos"), ("other",)):
            cols = probability_columns(events, classes)
            assert cols.tobytes() == _grouped_columns(events, classes).tobytes()


def test_mixed_widths_and_class_tuples_fall_back_to_groups():
    events = [_event(i, AB if i % 3 else ABC) for i in range(90)] + [_event(500, ("neg", "pos"))]
    assert entropies(events).tobytes() == _grouped_entropies(events).tobytes()
    for classes in (AB, ABC, ("mixed",)):
        assert probability_columns(events, classes).tobytes() == _grouped_columns(events, classes).tobytes()


def test_no_scored_event_gives_nan_rows():
    events = [_event(1, None), _event(2, AB, error="boom")]
    assert np.isnan(entropies(events)).all()
    assert np.isnan(probability_columns(events, AB)).all()
    assert entropies([]).shape == (0,) and probability_columns([], AB).shape == (0, 2)


def test_scored_once_for_both_gives_what_each_computes_alone():
    from monitor.ingest.features import scored

    plain = [_event(i, AB) for i in range(60)]
    gaps = [_event(900, None)] + plain[:30] + [_event(901, AB, error="x"), _event(902, None)] + plain[30:]
    for events in (plain, gaps, [_event(i, AB if i % 2 else ABC) for i in range(20)]):
        sc = scored(events)
        assert entropies(events, sc).tobytes() == entropies(events).tobytes() == _grouped_entropies(events).tobytes()
        for classes in (AB, ABC, ("neg",)):
            assert (probability_columns(events, classes, sc).tobytes() == probability_columns(events, classes).tobytes()
                    == _grouped_columns(events, classes).tobytes())
    sc = scored(gaps)
    assert sc.unscored == [i for i, e in enumerate(gaps) if e.probabilities is None or e.error is not None]
    assert sc.first == 1 and sc.matrix.shape == (len(gaps), 2) and not sc.matrix[sc.unscored].any()
    assert scored([_event(1, None)]) == ([0], -1, None)


def test_an_empty_probability_tuple_is_scored_as_a_tuple_not_as_missing():
    # Only a hand-built Event can hold one (decoding refuses it): scored, its entropy 0 as before, not NaN.
    from monitor.ingest.features import scored

    empty = Event(ts_ms=1, model="m", version="1", prediction="a", classes=(), probabilities=())
    events = [_event(0, None), empty, _event(2, AB)]
    sc = scored(events)
    assert sc.unscored == [0] and sc.first == 1 and sc.matrix is None  # widths 0 and 2
    assert entropies(events).tobytes() == _grouped_entropies(events).tobytes()
    assert entropies([empty]).tolist() == [0.0] and entropies([_event(0, None), empty]).tolist()[1] == 0.0
