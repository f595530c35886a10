"""Re-evaluation inside the daemon: when to run, one run at a time in its own process, where results go.

:class:`ReevalScheduler` is driven from the daemon's loop, which never waits for it:

- ``on_window(result)`` for every closed window: a drifted window starts a run (``reeval.on_drift``) unless
  one started within ``reeval.cooldown_seconds``;
- ``tick()`` each iteration: starts a run requested through ``POST /reeval`` (:meth:`request`, answered
  from the HTTP thread), or one due after ``reeval.interval_seconds`` without a run;
- ``poll()`` each iteration: collects a finished run, or kills one past ``reeval.timeout_seconds``.

A run is ``python -m monitor.reeval.worker`` in a new session, at lower CPU priority, so a slow or crashing
model never stalls the consumer (``monitor.reeval.process`` starts and collects it). Each finished run goes to
the recorder (``monitor.reeval.recorder``): counted (``nlpmon_reeval_runs_total{outcome}``), logged, stored
in ``reeval_runs`` and, when it succeeded, exported as the ``nlp_reeval_*`` gauges; its calibration table
then turns every closed window's confidences into ``nlp_estimated_accuracy_ratio``
(``monitor.reeval.estimate.LabelFreeEstimator``). A failed, timed-out or unstorable run is logged and the
daemon carries on. Nothing here raises into the daemon's loop.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from monitor.config import ReevalConfig
from monitor.config.reeval import ReevalOptions
from monitor.logs import log_event
from monitor.reeval.errors import ReevalError
from monitor.reeval.estimate import LabelFreeEstimator
from monitor.reeval.options import options_from_config
from monitor.reeval.process import WorkerProcess
from monitor.reeval.recorder import FinishedRun, RunRecorder
from monitor.ingest.reference import file_sha256
from monitor.results import ReevalReport, WindowResult
from sinks.sql import StoreUnavailable

__all__ = ["ReevalScheduler", "FinishedRun", "TRIGGERS"]

TRIGGERS = ("drift", "interval", "on_demand")


@dataclass
class _Run:
    trigger: str
    model: str
    version: str
    dataset: str
    started: float  # scheduler clock
    started_at_ms: int  # wall clock
    worker: WorkerProcess

    @property
    def proc(self):
        return self.worker.proc

    def finished(self, outcome: str, now: float, *, error: str | None = None,
                 report: ReevalReport | None = None) -> FinishedRun:
        return FinishedRun(self.trigger, self.model, self.version, self.dataset, outcome, self.started_at_ms,
                           max(0.0, now - self.started), error=error, report=report)  # fmt: skip


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, maybe with a zone) is a loopback address, IPv4-mapped ones included."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class ReevalScheduler:
    """Start, watch and collect re-evaluation runs for the daemon (see the module docstring).

    ``store`` (a ``sinks.sql.SqlStore``) keeps the runs and gives the default baseline; ``sink`` (a
    ``sinks.prometheus.PrometheusSink``) exports them; either may be ``None``. ``clock`` measures cooldown,
    interval and timeout, ``wall_clock`` stamps runs. ``command`` is the worker's argv prefix (the run
    directory is appended); tests pass a fake worker.
    """

    def __init__(
        self,
        settings: ReevalConfig,
        *,
        store=None,
        sink=None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        command: Sequence[str] | None = None,
        max_streams: int = 20,
    ):
        self.settings = settings
        self.store = store
        self.sink = sink
        self._clock = clock
        self._wall = wall_clock
        self._command = list(command) if command else [sys.executable, "-m", "monitor.reeval.worker"]
        self.dataset = settings.dataset_name or Path(settings.data).stem
        self.default_labels = (settings.model_name or Path(settings.model).stem, settings.model_version or "unversioned")
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._pending: str | None = None  # a request waiting for the loop to start it
        self._last_started: float | None = None
        self._interval_anchor = clock()
        self.estimator = LabelFreeEstimator(sink, max_streams=max_streams, targets=self._targets)
        self.recorder = RunRecorder(store, sink, baseline_accuracy=settings.baseline_accuracy, clock=clock,
                                    wall_clock=wall_clock,
                                    on_stored=lambda run: self.estimator.stored(run.started_at_ms, run.id))  # fmt: skip
        # Texts of recent traffic for the candidate's agreement on real inputs: memory only (bounded by
        # traffic_sample x validation.max_text_chars), handed to the worker in its private run directory,
        # never stored, logged or exported. Refilled after a restart.
        self._traffic: deque[str] | None = (
            deque(maxlen=settings.traffic_sample) if settings.candidate and settings.traffic_sample else None
        )
        self.last: FinishedRun | None = None
        if sink is not None:
            sink.count_reeval_run("success", 0)  # creates every outcome's series at 0
        self._set_running(False)

    # -- daemon start ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Resume from the store: the last run counts for cooldown and interval; the newest successful run of
        this model file gives the calibration table."""
        if self.store is None:
            return
        model = self.settings.model_name or None
        try:
            latest = self.store.reeval_runs(model, dataset=self.dataset, limit=1, newest_first=True)
            good = self.store.reeval_runs(model, dataset=self.dataset, outcome="success", limit=1, newest_first=True)
        except StoreUnavailable as exc:
            log_event(logging.WARNING, "store unreachable; re-evaluation starts without history", error=str(exc)[:200])
            return
        if latest:
            age = max(0.0, self._wall() - latest[0].started_at_ms / 1000.0)
            self._last_started = self._interval_anchor = self._clock() - age
        if good and good[0].result:
            stored = ReevalReport.from_dict(good[0].result)  # the store's JSON, read back
            try:
                same = stored.model_sha256 is not None and stored.model_sha256 == file_sha256(Path(self.settings.model))
            except OSError:
                same = False
            if same and stored.calibration is not None:
                self.estimator.resume(stored.calibration, good[0].id)
            elif not same:
                log_event(logging.INFO, "stored calibration is of another model file; windows get no estimate "
                          "until the next re-evaluation", run=good[0].id)  # fmt: skip

    # -- triggers --------------------------------------------------------------------------------------------
    def _targets(self, model: str) -> bool:
        return not self.settings.model_name or model == self.settings.model_name

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._run is not None or self._pending is not None

    def on_window(self, result: WindowResult) -> bool:
        """React to a closed window; return whether it started a run."""
        s = self.settings
        if not (s.on_drift and result.drifted and self._targets(result.model)):
            return False
        if self._last_started is not None and self._clock() - self._last_started < s.cooldown_seconds:
            return False
        if self.busy:
            self._skipped_busy("drift")
            return False
        return self._start("drift", result.model, result.version)

    def request(self, trigger: str = "on_demand") -> str:
        """Ask for a run from any thread: ``"accepted"`` (the loop starts it at its next :meth:`tick`) or
        ``"busy"`` (a run is in progress or already requested)."""
        with self._lock:
            if self._run is None and self._pending is None:
                self._pending = trigger
                return "accepted"
        self._skipped_busy(trigger)
        return "busy"

    def tick(self, now: float | None = None) -> bool:
        """Start a requested run, or an interval run that is due; return whether one started."""
        now = self._clock() if now is None else now
        with self._lock:
            if self._run is not None:
                return False
            trigger, self._pending = self._pending, None
        if trigger is None:
            interval = self.settings.interval_seconds
            anchor = self._interval_anchor if self._last_started is None else max(self._last_started, self._interval_anchor)
            if not interval or now - anchor < interval:
                return False
            trigger = "interval"
        return self._start(trigger, *self.default_labels)

    def _skipped_busy(self, trigger: str) -> None:
        if self.sink is not None:
            self.sink.count_reeval_run("skipped_busy")
        log_event(logging.INFO, "re-evaluation not started: one is in progress", trigger=trigger)

    # -- one run ---------------------------------------------------------------------------------------------
    def _options(self, model: str, version: str) -> ReevalOptions:
        return options_from_config(
            self.settings, model_name=model, model_version=version, dataset_name=self.dataset,
            baseline=self.recorder.baseline(model, self.dataset), flip_check_limit=0,
            traffic_texts=tuple(self._traffic) if self._traffic else (),
        )  # fmt: skip

    def _start(self, trigger: str, model: str, version: str) -> bool:
        now, wall_ms = self._clock(), int(self._wall() * 1000)
        self._last_started = now
        try:
            options = self._options(model, version)
        except (ReevalError, ValueError) as exc:
            self._finish(FinishedRun(trigger, model, version, self.dataset, "failure", wall_ms, 0.0, error=str(exc)))
            return False
        try:
            worker = WorkerProcess(self._command, options)
        except OSError as exc:
            self._finish(FinishedRun(trigger, model, version, self.dataset, "failure", wall_ms, 0.0,
                                     error=f"cannot start the worker: {exc}"))  # fmt: skip
            return False
        with self._lock:
            self._run = _Run(trigger, model, version, self.dataset, now, wall_ms, worker)
        self._set_running(True)
        log_event(logging.INFO, "re-evaluation started", trigger=trigger, model=model, version=version,
                  dataset=self.dataset, pid=worker.pid)  # fmt: skip
        return True

    def poll(self) -> FinishedRun | None:
        """Collect the run if it ended, kill it if it ran past the timeout; return it once it is finished."""
        self.recorder.retry_unsaved()
        run = self._run
        if run is None:
            return None
        now = self._clock()
        code = run.worker.exit_code()
        if code is None:
            if now - run.started < self.settings.timeout_seconds:
                return None
            run.worker.kill()
            finished = run.finished("timeout", now, error=f"killed after {self.settings.timeout_seconds:g} s")
        else:
            outcome = run.worker.outcome(code)
            finished = run.finished(outcome.outcome, now, error=outcome.error, report=outcome.report)
        with self._lock:
            self._run = None
        self._set_running(False)
        run.worker.close()
        return self._finish(finished)

    def _finish(self, run: FinishedRun) -> FinishedRun:
        if run.outcome == "success":
            run = replace(run, report=self.estimator.adopt(run.report, run.started_at_ms))
        run = self.recorder.record(run)
        self.last = run
        return run

    # -- what the pipeline shows it --------------------------------------------------------------------------
    def observe_events(self, events: Sequence) -> None:
        """Keep the texts of the latest valid events of the re-evaluated model (``Pipeline`` calls this)."""
        if self._traffic is None:
            return
        target = self.settings.model_name
        self._traffic.extend(e.text for e in events if e.text and (not target or e.model == target))

    @property
    def traffic_texts(self) -> int:
        """How many texts of recent traffic are kept for the candidate."""
        return len(self._traffic) if self._traffic is not None else 0

    def observe_confidences(self, result: WindowResult, confidences: np.ndarray, evidence=None):
        """Estimate a closed window's accuracy from its confidences and the realised labels' ``evidence``
        (``Pipeline`` calls this); return the estimate with its interval."""
        return self.estimator.observe(result, confidences, evidence)

    # -- HTTP ------------------------------------------------------------------------------------------------
    def handle_post(self, headers: dict, body: bytes, client_host: str) -> tuple[int, dict]:
        """``POST /reeval``: from the loopback address, or with ``Authorization: Bearer <reeval.token>``."""
        token = self.settings.token
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, given = auth.partition(" ")
        authorized = bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
        if not (authorized or is_loopback(client_host)):
            return 403, {"error": "POST /reeval is accepted from localhost only, or with the bearer token set in "
                                  "NLPMON_REEVAL_TOKEN"}  # fmt: skip
        if self.request("on_demand") == "accepted":
            return 202, {"status": "accepted", "trigger": "on_demand", "model": self.default_labels[0],
                         "version": self.default_labels[1], "dataset": self.dataset}  # fmt: skip
        return 409, {"status": "busy", "running": self.status()["running"]}

    # -- state -----------------------------------------------------------------------------------------------
    def status(self) -> dict:
        """Plain-data state for ``/status``."""
        with self._lock:
            run, pending = self._run, self._pending
            running = None if run is None else {
                "trigger": run.trigger, "model": run.model, "version": run.version, "dataset": run.dataset,
                "started_at_ms": run.started_at_ms, "seconds": round(self._clock() - run.started, 3),
            }  # fmt: skip
        calibration_run, estimates = self.estimator.status()
        return {"running": running, "requested": pending, "last": self.last.summary() if self.last else None,
                "calibration_run": calibration_run, "estimates": estimates,
                "unsaved_runs": len(self.recorder.unsaved), "traffic_texts": self.traffic_texts}

    def _set_running(self, running: bool) -> None:
        if self.sink is not None:
            self.sink.set_gauge("nlpmon_reeval_running", "1 while a re-evaluation run is in progress.", float(running))

    def close(self) -> None:
        """At shutdown: collect a run that has ended, kill one still going, try once more to store what waits."""
        self.poll()
        with self._lock:
            run, self._run = self._run, None
        if run is not None:
            run.worker.kill()
            run.worker.close()
            self._set_running(False)
            log_event(logging.WARNING, "re-evaluation abandoned at shutdown", trigger=run.trigger, model=run.model)
        self.recorder.retry_unsaved(now=True)
        if self.recorder.unsaved:
            log_event(logging.WARNING, "re-evaluation runs not stored (store unreachable)", runs=len(self.recorder.unsaved))
