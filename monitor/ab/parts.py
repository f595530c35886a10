"""The pipeline's joins beside its windows: A/B experiments, shadow pairs and late labels, as one part.

:class:`JoinParts` owns what the pipeline did for each of them: handing their closed results to the sink,
sending their join counters as deltas (so that several partitions' pipelines add up and a restored joiner's
counts are not sent twice), and their share of ``flush``, ``state`` and ``restore``. The pipeline calls the
sink and guards every call through the two callables it is given, so a part that raises is counted and
logged like any other stage.
"""

from __future__ import annotations

from collections.abc import Callable

from monitor.ab.experiments import ExperimentResult, ExperimentSet
from monitor.ab.labels import JOIN_OUTCOMES as LABEL_OUTCOMES, LabelJoin
from monitor.ab.shadow import JOIN_OUTCOMES as SHADOW_OUTCOMES, ShadowResult, ShadowWindows
from monitor.results import LabelsResult

__all__ = ["JoinParts"]


class JoinParts:
    """The experiments, shadow joins and label join of one pipeline (each None when not configured).

    ``sink(method, *args)`` calls the pipeline's sink, ``guarded(stage, fn, *args)`` runs ``fn`` and returns
    None when it raised (counted by stage).
    """

    def __init__(self, config, *, low_threshold: Callable[[str], float], sink: Callable, guarded: Callable):
        self._sink, self._guarded = sink, guarded
        # A/B experiments and shadow joins (docs/experiments.md); their closed windows are returned with the
        # window results of the same call, so they become durable with the checkpoint that covers them.
        self.experiments = ExperimentSet(config, low_threshold=low_threshold) if config.experiments else None
        self.shadow = ShadowWindows(config.shadow, config.window) if config.shadow.enabled else None
        # Late label events joined by request id (docs/results.md, *Labels results*), closed like shadow windows.
        self.labels = LabelJoin.from_config(config) if config.labels.enabled else None
        self._joins_reported: dict[str, int] = {}
        self._labels_reported: dict[str, int] = {}

    def add_events(self, events: list, experiments: list, shadow: list) -> None:
        """Give a chunk's valid events to the experiments and the shadow join; collect what they close."""
        if self.experiments is not None:
            experiments.extend(self.experiments_closed(self._guarded("experiments", self.experiments.add_events, events) or []))
        if self.shadow is not None:
            shadow.extend(self.shadow_closed(self._guarded("shadow", self.shadow.add_events, events) or []))

    def labels_due(self) -> list[LabelsResult]:
        """The labels results whose label period is over (after the window results of the same call)."""
        return self.labels_closed(self._guarded("labels", self.labels.close_due) or []) if self.labels else []

    def labels_advanced(self, ts_ms: int) -> list[LabelsResult]:
        """Event time was taken to reach ``ts_ms`` without an event: the labels results that closes."""
        return self.labels_closed(self.labels.advance(ts_ms)) if self.labels is not None else []

    def flush(self) -> tuple[list[ExperimentResult], list[ShadowResult], list[LabelsResult]]:
        """Close every open experiment, shadow and labels window now (end of input or shutdown)."""
        experiments = self.experiments_closed(self.experiments.flush()) if self.experiments is not None else []
        shadow = self.shadow_closed(self.shadow.flush()) if self.shadow is not None else []
        labels = self.labels_closed(self.labels.flush()) if self.labels is not None else []
        return experiments, shadow, labels

    def experiments_closed(self, results: list[ExperimentResult]) -> list[ExperimentResult]:
        for r in results:
            self._sink("experiment_closed", r)
        return results

    def shadow_closed(self, results: list[ShadowResult]) -> list[ShadowResult]:
        for r in results:
            self._sink("shadow_closed", r)
        counters = self.shadow.joiner.counters()
        self._sink("count_shadow_joins", {k: counters[k] - self._joins_reported.get(k, 0) for k in SHADOW_OUTCOMES})
        self._sink("set_shadow_pending", counters["pending"])
        self._joins_reported = counters
        return results

    def labels_closed(self, results: list[LabelsResult]) -> list[LabelsResult]:
        for r in results:
            self._sink("labels_closed", r)
        counters = self.labels.counters()
        self._sink("count_label_joins", {k: counters[k] - self._labels_reported.get(k, 0) for k in LABEL_OUTCOMES})
        self._sink("set_label_pending", counters["pending"])
        self._labels_reported = counters
        return results

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state(self) -> dict:
        """The parts' keys of the pipeline's checkpoint (each only when configured)."""
        return {
            **({"experiments": self.experiments.state()} if self.experiments is not None else {}),
            **({"shadow": self.shadow.state()} if self.shadow is not None else {}),
            **({"labels": self.labels.state()} if self.labels is not None else {}),
        }  # fmt: skip

    def restore(self, state: dict) -> None:
        # A checkpoint from before a part was configured lacks its key: that part starts from here.
        if self.experiments is not None and "experiments" in state:
            self.experiments.restore(state["experiments"])
        if self.shadow is not None and "shadow" in state:
            self.shadow.restore(state["shadow"])
            self._joins_reported = self.shadow.joiner.counters()
        if self.labels is not None and "labels" in state:
            self.labels.restore(state["labels"])
            self._labels_reported = self.labels.counters()
