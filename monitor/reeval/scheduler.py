"""Re-evaluation inside the daemon: when to run, one run at a time in its own process, where results go.

:class:`ReevalScheduler` is driven from the daemon's loop, which never waits for it:

- ``on_window(result)`` for every closed window: a drifted window starts a run (``reeval.on_drift``) unless
  one started within ``reeval.cooldown_seconds``;
- ``tick()`` each iteration: starts a run requested through ``POST /reeval`` (:meth:`request`, answered
  from the HTTP thread), or one due after ``reeval.interval_seconds`` without a run;
- ``poll()`` each iteration: collects a finished run, or kills one past ``reeval.timeout_seconds``.

A run is ``python -m monitor.reeval.worker`` (``monitor.reeval.worker``) in a new session, at lower CPU
priority, so a slow or crashing model never stalls the consumer. Each finished run is counted
(``nlpmon_reeval_runs_total{outcome}``), logged, stored in ``reeval_runs`` and, when it succeeded, exported
as the ``nlp_reeval_*`` gauges; its calibration table then turns every closed window's confidences into
``nlp_estimated_accuracy_ratio`` (:meth:`observe_confidences`). A failed, timed-out or unstorable run is logged
and the daemon carries on. Nothing here raises into the daemon's loop.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from detectors.classification import CalibrationTable, estimate_accuracy
from monitor.config import ReevalConfig
from monitor.logs import log_event
from monitor.reeval.errors import ReevalError
from monitor.reeval.estimate import estimate_from_tables
from monitor.reeval.job import Baseline, ReevalOptions
from monitor.reeval.worker import OPTIONS_FILE, OUTCOME_FILE
from monitor.results import WindowResult, iso_ms
from sinks.sql import StoreUnavailable

__all__ = ["ReevalScheduler", "FinishedRun", "TRIGGERS"]

TRIGGERS = ("drift", "interval", "on_demand")
_STDERR_FILE = "stderr.log"
_STDERR_TAIL_CHARS = 2000
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
    result: dict | None = None
    id: int | None = None

    def summary(self) -> dict:
        r = self.result or {}
        return {
            "id": self.id, "trigger": self.trigger, "model": self.model, "version": self.version,
            "dataset": self.dataset, "outcome": self.outcome, "started_at_ms": self.started_at_ms,
            "duration_seconds": self.duration_seconds, "error": self.error, "accuracy": r.get("accuracy"),
            "accuracy_drop": r.get("accuracy_drop"), "label_free_estimate": r.get("label_free_estimate"),
        }  # fmt: skip


@dataclass
class _Run:
    trigger: str
    model: str
    version: str
    dataset: str
    started: float  # scheduler clock
    started_at_ms: int  # wall clock
    proc: subprocess.Popen
    run_dir: Path
    stderr: object  # the open log file the worker writes to


@dataclass
class _Window:
    window_start: str | None
    events: int
    confidences: np.ndarray
    estimate: float | None = None


def _is_loopback(host: str) -> bool:
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
        self._max_streams = max_streams
        self.dataset = settings.dataset_name or Path(settings.data).stem
        self.default_labels = (settings.model_name or Path(settings.model).stem, settings.model_version or "unversioned")
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._pending: str | None = None  # a request waiting for the loop to start it
        self._last_started: float | None = None
        self._interval_anchor = clock()
        self._baselines: dict[tuple[str, str], Baseline] = {}
        self._calibration: CalibrationTable | None = None
        self._calibration_run: int | None = None  # SQL id of the run the table comes from
        self._calibration_from: int | None = None  # its started_at_ms, until it is stored
        self._windows: dict[tuple[str, str, str], _Window] = {}  # by (model, version, segment or "")
        self._unsaved: list[FinishedRun] = []
        # Texts of recent traffic for the candidate's agreement on real inputs: memory only (bounded by
        # traffic_sample x validation.max_text_chars), handed to the worker in its private run directory,
        # never stored, logged or exported. Refilled after a restart.
        self._traffic: deque[str] | None = (
            deque(maxlen=settings.traffic_sample) if settings.candidate and settings.traffic_sample else None
        )
        self._save_retry_at = 0.0
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
            sha = (good[0].result.get("model") or {}).get("sha256")
            try:
                from monitor.ingest.reference import file_sha256

                same = sha is not None and sha == file_sha256(Path(self.settings.model))
            except OSError:
                same = False
            if same:
                self._calibration = CalibrationTable.from_dict(good[0].result["calibration"])
                self._calibration_run = good[0].id
            else:
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
    def _options(self, model: str, version: str, baseline: Baseline | None) -> ReevalOptions:
        from monitor.reeval.data import parse_label_map

        s = self.settings
        return ReevalOptions(
            model=Path(s.model), tokenizer=Path(s.tokenizer), data=Path(s.data), text_field=s.text_field,
            label_field=s.label_field,
            label_map=tuple(parse_label_map(s.label_map).items()) if s.label_map else None,
            batch_size=s.batch_size, max_length=s.max_length or None, provider=s.provider, baseline=baseline,
            calibration_bins=s.calibration_bins, intra_op_threads=s.threads, flip_check_limit=0,
            model_name=model, model_version=version, dataset_name=self.dataset,
            candidate=Path(s.candidate) if s.candidate else None,
            traffic_texts=tuple(self._traffic) if self._traffic else (),
        )  # fmt: skip

    def _baseline(self, model: str) -> Baseline | None:
        if self.settings.baseline_accuracy > 0:
            return Baseline(accuracy=self.settings.baseline_accuracy, source="configured")
        key = (model, self.dataset)
        if key not in self._baselines and self.store is not None:
            try:
                first = self.store.reeval_runs(model, dataset=self.dataset, outcome="success", limit=1)
            except StoreUnavailable as exc:
                log_event(logging.WARNING, "store unreachable; re-evaluation runs without its baseline", error=str(exc)[:200])
                return None
            if first and first[0].result:
                self._baselines[key] = Baseline.from_result(first[0].result, source="first_run", run=str(first[0].id))
        return self._baselines.get(key)

    def _worker_env(self) -> dict:
        # The worker needs no secret of the daemon (SASL password, store URL, the re-evaluation token).
        env = {k: v for k, v in os.environ.items() if not k.startswith("NLPMON_")}
        if self.settings.threads:
            env["RAYON_NUM_THREADS"] = str(self.settings.threads)  # the tokenizer's thread pool
        return env

    def _start(self, trigger: str, model: str, version: str) -> bool:
        now, wall_ms = self._clock(), int(self._wall() * 1000)
        self._last_started = now
        try:
            options = self._options(model, version, self._baseline(model))
        except (ReevalError, ValueError) as exc:
            self._finish(FinishedRun(trigger, model, version, self.dataset, "failure", wall_ms, 0.0, error=str(exc)))
            return False
        run_dir = Path(tempfile.mkdtemp(prefix="nlpmon-reeval-"))
        stderr = None
        try:
            (run_dir / OPTIONS_FILE).write_bytes(pickle.dumps(options))
            stderr = open(run_dir / _STDERR_FILE, "wb")
            proc = subprocess.Popen(
                self._command + [str(run_dir)], stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                env=self._worker_env(), start_new_session=True,  # terminal signals are for the daemon only
            )  # fmt: skip
        except OSError as exc:
            if stderr is not None:
                stderr.close()
            shutil.rmtree(run_dir, ignore_errors=True)
            self._finish(FinishedRun(trigger, model, version, self.dataset, "failure", wall_ms, 0.0,
                                     error=f"cannot start the worker: {exc}"))  # fmt: skip
            return False
        with self._lock:
            self._run = _Run(trigger, model, version, self.dataset, now, wall_ms, proc, run_dir, stderr)
        self._set_running(True)
        log_event(logging.INFO, "re-evaluation started", trigger=trigger, model=model, version=version,
                  dataset=self.dataset, pid=proc.pid)  # fmt: skip
        return True

    def poll(self) -> FinishedRun | None:
        """Collect the run if it ended, kill it if it ran past the timeout; return it once it is finished."""
        self._retry_unsaved()
        run = self._run
        if run is None:
            return None
        now = self._clock()
        code = run.proc.poll()
        if code is None:
            if now - run.started < self.settings.timeout_seconds:
                return None
            _kill(run.proc)
            finished = self._ended(run, "timeout", now, error=f"killed after {self.settings.timeout_seconds:g} s")
        else:
            finished = self._collect(run, code, now)
        with self._lock:
            self._run = None
        self._set_running(False)
        run.stderr.close()
        shutil.rmtree(run.run_dir, ignore_errors=True)
        return self._finish(finished)

    def _ended(self, run: _Run, outcome: str, now: float, *, error=None, result=None) -> FinishedRun:
        return FinishedRun(run.trigger, run.model, run.version, run.dataset, outcome, run.started_at_ms,
                           max(0.0, now - run.started), error=error, result=result)  # fmt: skip

    def _collect(self, run: _Run, code: int, now: float) -> FinishedRun:
        import json

        try:
            outcome = json.loads((run.run_dir / OUTCOME_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            outcome = None
        if outcome and outcome.get("outcome") == "success" and isinstance(outcome.get("result"), dict):
            return self._ended(run, "success", now, result=outcome["result"])
        if outcome and outcome.get("outcome") == "failure":
            return self._ended(run, "failure", now, error=f"{outcome.get('error_type', 'error')}: {outcome.get('error')}")
        tail = (run.run_dir / _STDERR_FILE).read_bytes()[-_STDERR_TAIL_CHARS:].decode("utf-8", "replace").strip()
        return self._ended(run, "failure", now, error=f"worker exited with code {code}" + (f": {tail}" if tail else ""))

    # -- results ---------------------------------------------------------------------------------------------
    def _finish(self, run: FinishedRun) -> FinishedRun:
        if run.outcome == "success":
            run = self._with_estimate(run)
        if self.sink is not None:
            self.sink.count_reeval_run(run.outcome)
        run = self._save(run)
        if run.outcome == "success":
            self._export(run)
            key = (run.model, run.dataset)
            if run.id is not None and key not in self._baselines and self.settings.baseline_accuracy <= 0:
                self._baselines[key] = Baseline.from_result(run.result, source="first_run", run=str(run.id))
            log_event(logging.INFO, "re-evaluation finished", trigger=run.trigger, model=run.model, version=run.version,
                      dataset=run.dataset, accuracy=run.result.get("accuracy"), accuracy_drop=run.result.get("accuracy_drop"),
                      seconds=round(run.duration_seconds, 3), run=run.id)  # fmt: skip
        else:
            log_event(logging.WARNING if run.outcome == "failure" else logging.ERROR, f"re-evaluation {run.outcome}",
                      trigger=run.trigger, model=run.model, version=run.version, dataset=run.dataset,
                      seconds=round(run.duration_seconds, 3), error=(run.error or "")[:_STDERR_TAIL_CHARS])  # fmt: skip
        self.last = run
        return run

    def _with_estimate(self, run: FinishedRun) -> FinishedRun:
        """Add estimate-vs-measured (``label_free_estimate``) to the result, and adopt its calibration table."""
        result = dict(run.result)
        try:
            table = CalibrationTable.from_dict(result["calibration"])
        except (KeyError, TypeError, ValueError):
            return run
        with self._lock:
            previous, previous_run = self._calibration, self._calibration_run
            self._calibration, self._calibration_run, self._calibration_from = table, None, run.started_at_ms
            windows = []
            for (m, v, seg), w in sorted(self._windows.items()):
                before = w.estimate
                w.estimate = estimate_accuracy(table, w.confidences)
                windows.append({"model": m, "version": v, **({"segment": seg} if seg else {}),
                                "window_start": w.window_start, "events": w.events,
                                "estimated_accuracy_before": before, "estimated_accuracy": w.estimate})  # fmt: skip
        held = estimate_from_tables(previous, table)
        accuracy = result.get("accuracy")
        result["label_free_estimate"] = {
            "calibration_run": previous_run,
            "calibration": "none" if previous is None else "previous_run",
            "heldout_estimated_accuracy": held,
            "heldout_accuracy": accuracy,
            "heldout_estimate_error": None if held is None or accuracy is None else held - accuracy,
            "windows": windows,
        }
        if self.sink is not None:
            for w in windows:
                self.sink.set_estimated_accuracy(w["model"], w["version"], w["estimated_accuracy"], segment=w.get("segment", ""))
        return replace(run, result=result)

    def _export(self, run: FinishedRun) -> None:
        if self.sink is None:
            return
        r = run.result
        self.sink.set_reeval(run.model, run.version, run.dataset, {
            "nlp_reeval_accuracy_ratio": r.get("accuracy"), "nlp_reeval_f1": r.get("macro_f1"), "nlp_reeval_ece": r.get("ece"),
            "nlp_reeval_accuracy_drop": r.get("accuracy_drop"), "nlp_reeval_duration_seconds": r.get("duration_seconds"),
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
            if len(self._unsaved) < _MAX_UNSAVED:
                self._unsaved.append(run)
            self._save_retry_at = self._clock() + _SAVE_RETRY_SECONDS
            return run
        if run.outcome == "success":
            with self._lock:
                if self._calibration_from == run.started_at_ms:  # the table in use came from this run
                    self._calibration_run = run_id
        return replace(run, id=run_id)

    def _retry_unsaved(self) -> None:
        if not self._unsaved or self._clock() < self._save_retry_at:
            return
        waiting, self._unsaved = self._unsaved, []
        for i, run in enumerate(waiting):
            saved = self._save(run)
            if saved.id is None:  # still down: keep the rest for later
                self._unsaved.extend(waiting[i + 1 :])
                return

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

    # -- label-free estimate ---------------------------------------------------------------------------------
    def observe_confidences(self, result: WindowResult, confidences: np.ndarray) -> float | None:
        """Estimate a closed window's accuracy from its confidences (``Pipeline`` calls this); return it."""
        model, version = result.model, result.version
        if not self._targets(model):
            return None
        c = np.asarray(confidences, dtype=np.float64)
        c = c[np.isfinite(c)]
        if c.size == 0:
            return None
        key = (model, version, result.segment or "")  # with window.by_segment, each segment's latest window
        with self._lock:
            if key not in self._windows and len(self._windows) >= self._max_streams:
                return None
            w = self._windows[key] = _Window(iso_ms(result.window_start_ms), result.events, c.copy())
            if self._calibration is None:
                return None
            w.estimate = estimate_accuracy(self._calibration, c)
        if self.sink is not None:
            self.sink.set_estimated_accuracy(model, version, w.estimate, segment=key[2])
        return w.estimate

    # -- HTTP ------------------------------------------------------------------------------------------------
    def handle_post(self, headers: dict, body: bytes, client_host: str) -> tuple[int, dict]:
        """``POST /reeval``: from the loopback address, or with ``Authorization: Bearer <reeval.token>``."""
        token = self.settings.token
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, given = auth.partition(" ")
        authorized = bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
        if not (authorized or _is_loopback(client_host)):
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
            estimates = {f"{m}/{v}" + (f"/{seg}" if seg else ""): {"window_start": w.window_start, "estimated_accuracy": w.estimate}
                         for (m, v, seg), w in sorted(self._windows.items())}  # fmt: skip
            calibration_run = self._calibration_run if self._calibration is not None else None
        return {"running": running, "requested": pending, "last": self.last.summary() if self.last else None,
                "calibration_run": calibration_run, "estimates": estimates, "unsaved_runs": len(self._unsaved),
                "traffic_texts": self.traffic_texts}

    def _set_running(self, running: bool) -> None:
        if self.sink is not None:
            self.sink.set_gauge("nlpmon_reeval_running", "1 while a re-evaluation run is in progress.", float(running))

    def close(self) -> None:
        """At shutdown: collect a run that has ended, kill one still going, try once more to store what waits."""
        self.poll()
        with self._lock:
            run, self._run = self._run, None
        if run is not None:
            _kill(run.proc)
            run.stderr.close()
            shutil.rmtree(run.run_dir, ignore_errors=True)
            self._set_running(False)
            log_event(logging.WARNING, "re-evaluation abandoned at shutdown", trigger=run.trigger, model=run.model)
        self._save_retry_at = 0.0
        self._retry_unsaved()
        if self._unsaved:
            log_event(logging.WARNING, "re-evaluation runs not stored (store unreachable)", runs=len(self._unsaved))


def _kill(proc: subprocess.Popen) -> None:
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not take that long
        pass
