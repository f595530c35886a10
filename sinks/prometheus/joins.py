"""What the shadow-join and label-join collectors share: outcome counters and a pending gauge."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sinks.prometheus.labels import LabelBounds

__all__ = ["JoinCollector"]


class JoinCollector:
    """A join's outcome counters (fed as deltas by every partition's pipeline) and its pending gauge, both absent
    until the join first reports; subclasses keep their latest results and yield them in ``_collect``."""

    OUTCOMES: tuple[str, ...] = ()

    def __init__(self, bounds: LabelBounds):
        self._bounds = bounds
        self._joins: Counter[str] | None = None
        self._pending = 0

    def count_joins(self, deltas: Mapping[str, int]) -> None:
        with self._bounds.lock:
            if self._joins is None:
                self._joins = Counter({o: 0 for o in self.OUTCOMES})
            for outcome, n in deltas.items():
                if outcome in self.OUTCOMES and n > 0:
                    self._joins[outcome] += n

    def set_pending(self, n: int) -> None:
        self._pending = n

    def collect(self):
        with self._bounds.lock:
            yield from self._collect()

    def _collect(self):
        raise NotImplementedError

    def _join_families(self, counter: tuple[str, str], pending: tuple[str, str]):
        """The outcome counter and the pending gauge, given as (name, help) each."""
        if self._joins is None:
            return
        c = CounterMetricFamily(*counter, labels=["outcome"])
        for outcome in self.OUTCOMES:
            c.add_metric([outcome], self._joins[outcome])
        yield c
        g = GaugeMetricFamily(*pending)
        g.add_metric([], self._pending)
        yield g
