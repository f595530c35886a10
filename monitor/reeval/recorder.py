"""Where a finished re-evaluation run goes: counted, stored in ``reeval_runs``, exported, logged.

:class:`RunRecorder` owns the daemon's side effects of a finished run: ``nlpmon_reeval_runs_total{outcome}``,
the SQL row (kept in memory, up to 100, while the store is unreachable, and stored when it is back), the
``nlp_reeval_*`` gauges of a successful run, and the first stored run of a model and data set as the
default baseline of the next ones. The result travels as a typed :class:`monitor.results.ReevalReport`;
``to_dict()`` is called here, where it leaves for the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from monitor.config.reeval import Baseline
from monitor.logs import log_event
from monitor.results import ReevalReport
from sinks.sql import StoreUnavailable

__all__ = ["FinishedRun", "RunRecorder"]

_ERROR_LOG_CHARS = 2000
_SAVE_RETRY_SECONDS = 5.0
_MAX_UNSAVED = 100


@dataclass(frozen=True)
class FinishedRun:
    """A run that ended: ``outcome`` is ``success``, ``failure`` or ``timeout``; ``id`` is its SQL row (or None)."""

    trigger: str
    model: str
    version: str
    dataset: str
    outcome: str
    started_at_ms: int
    duration_seconds: float
    error: str | None = None
    report: ReevalReport | None = None
    id: int | None = None

    @property
    def result(self) -> dict | None:
        """The result document (JSON) of a successful run, as it is stored."""
        return None if self.report is None else self.report.to_dict()

    def summary(self) -> dict:
        r = self.report
        estimate = None if r is None or r.label_free_estimate is None else r.label_free_estimate.to_dict()
        return {
            "id": self.id, "trigger": self.trigger, "model": self.model, "version": self.version,
            "dataset": self.dataset, "outcome": self.outcome, "started_at_ms": self.started_at_ms,
            "duration_seconds": self.duration_seconds, "error": self.error,
            "accuracy": None if r is None else r.document.get("accuracy"),
            "accuracy_drop": None if r is None else r.document.get("accuracy_drop"), "label_free_estimate": estimate,
        }  # fmt: skip


class RunRecorder:
    """Count, store, export and log finished runs; know each model's baseline (see the module docstring).

    ``store`` (a ``sinks.sql.SqlStore``) and ``sink`` (a ``sinks.prometheus.PrometheusSink``) may be None.
    ``on_stored(run)`` is called for every successful run once it has its SQL id.
    """

    def __init__(self, store=None, sink=None, *, baseline_accuracy: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 on_stored: Callable[[FinishedRun], None] = lambda run: None):
        self.store = store
        self.sink = sink
        self._configured = baseline_accuracy
        self._clock = clock
        self._wall = wall_clock
        self._on_stored = on_stored
        self._baselines: dict[tuple[str, str], Baseline] = {}
        self.unsaved: list[FinishedRun] = []
        self._save_retry_at = 0.0

    # -- baseline --------------------------------------------------------------------------------------------
    def baseline(self, model: str, dataset: str) -> Baseline | None:
        """``reeval.baseline_accuracy`` when set, else the first successful stored run of model and data set."""
        if self._configured > 0:
            return Baseline(accuracy=self._configured, source="configured")
        key = (model, dataset)
        if key not in self._baselines and self.store is not None:
            try:
                first = self.store.reeval_runs(model, dataset=dataset, outcome="success", limit=1)
            except StoreUnavailable as exc:
                log_event(logging.WARNING, "store unreachable; re-evaluation runs without its baseline", error=str(exc)[:200])
                return None
            if first and first[0].result:
                self._baselines[key] = Baseline.from_result(first[0].result, source="first_run", run=str(first[0].id))
        return self._baselines.get(key)

    # -- a finished run --------------------------------------------------------------------------------------
    def record(self, run: FinishedRun) -> FinishedRun:
        """Count, store, export and log one finished run; return it with its SQL id when stored."""
        if self.sink is not None:
            self.sink.count_reeval_run(run.outcome)
        run = self._save(run)
        if run.outcome == "success":
            self._export(run)
            key = (run.model, run.dataset)
            if run.id is not None and key not in self._baselines and self._configured <= 0:
                self._baselines[key] = Baseline.from_result(run.report, source="first_run", run=str(run.id))
            log_event(logging.INFO, "re-evaluation finished", trigger=run.trigger, model=run.model, version=run.version,
                      dataset=run.dataset, accuracy=run.report.accuracy, accuracy_drop=run.report.accuracy_drop,
                      seconds=round(run.duration_seconds, 3), run=run.id)  # fmt: skip
        else:
            log_event(logging.WARNING if run.outcome == "failure" else logging.ERROR, f"re-evaluation {run.outcome}",
                      trigger=run.trigger, model=run.model, version=run.version, dataset=run.dataset,
                      seconds=round(run.duration_seconds, 3), error=(run.error or "")[:_ERROR_LOG_CHARS])  # fmt: skip
        return run

    def _export(self, run: FinishedRun) -> None:
        if self.sink is None:
            return
        r = run.report
        self.sink.set_reeval(run.model, run.version, run.dataset, {
            "nlp_reeval_accuracy_ratio": r.accuracy, "nlp_reeval_f1": r.macro_f1, "nlp_reeval_ece": r.ece,
            "nlp_reeval_accuracy_drop": r.accuracy_drop, "nlp_reeval_duration_seconds": r.duration_seconds,
            "nlp_reeval_last_run_timestamp_seconds": self._wall(),
        })  # fmt: skip

    def _save(self, run: FinishedRun) -> FinishedRun:
        if self.store is None:
            return run
        try:
            run_id = self.store.save_reeval_run(
                model=run.model, version=run.version, dataset=run.dataset, started_at_ms=run.started_at_ms,
                trigger=run.trigger, outcome=run.outcome, result=run.result, error=run.error,
                duration_seconds=run.duration_seconds,
            )  # fmt: skip
        except StoreUnavailable as exc:
            log_event(logging.WARNING, "store unreachable; the re-evaluation run is stored later", error=str(exc)[:200])
            if len(self.unsaved) < _MAX_UNSAVED:
                self.unsaved.append(run)
            self._save_retry_at = self._clock() + _SAVE_RETRY_SECONDS
            return run
        run = replace(run, id=run_id)
        if run.outcome == "success":
            self._on_stored(run)
        return run

    def retry_unsaved(self, *, now: bool = False) -> None:
        """Store the runs kept while the store was unreachable (``now``: without waiting for the backoff)."""
        if not self.unsaved or (not now and self._clock() < self._save_retry_at):
            return
        waiting, self.unsaved = self.unsaved, []
        for i, run in enumerate(waiting):
            saved = self._save(run)
            if saved.id is None:  # still down: keep the rest for later
                self.unsaved.extend(waiting[i + 1 :])
                return
