"""One log line per closed result, the same for both daemons: names, counts and verdicts, never input text.

The JSON of a result leaves the process elsewhere (replay output, SQL rows, the output topic); these lines are
for whoever tails the daemon's log (docs/runbooks.md reads them per closed window).
"""

from __future__ import annotations

import logging

from detectors.base import finite_or_none
from monitor.logs import log_event
from monitor.results import DriftVerdicts, ExperimentResult, LabelsResult, ShadowResult, WindowResult, iso_ms

__all__ = ["log_window", "drifted_tests", "log_experiment_result", "log_labels_result", "log_shadow_result"]


def log_window(result: WindowResult) -> None:
    """Log one closed window: WARNING when a test drifted, naming the tests that did (:func:`drifted_tests`)."""
    log_event(
        logging.WARNING if result.drifted else logging.INFO,
        "window closed",
        model=result.model, version=result.version,
        **({"segment": result.segment} if result.segment is not None else {}),
        window_start=iso_ms(result.window_start_ms),
        events=result.events, tested=result.tested, drifted=result.drifted,
        drifted_tests=",".join(drifted_tests(result.drift)) or "-", partial=result.partial,
    )  # fmt: skip


def drifted_tests(drift: DriftVerdicts) -> list[str]:
    """The drifted tests, sorted, named like the store's ``drift_events`` (detector, then ``:feature``):
    ``input:<feature>``, ``confidence``, ``prediction``, ``probabilities:<class>``, ``embedding:<component>``,
    ``embedding:mmd`` (the multivariate test); a detector that drifted as a whole with no single test is named alone."""
    out = [k for k, d in (("confidence", drift.confidence), ("prediction", drift.prediction)) if d is not None and d.drifted]
    e = drift.embedding
    for name, d, tests in (("input", drift.input, drift.input.features if drift.input else ()),
                           ("probabilities", drift.probabilities, drift.probabilities.classes if drift.probabilities else ()),
                           ("embedding", e, (*(e.components if e else ()), *((e.multivariate,) if e and e.multivariate else ())))):
        if d is None or not d.drifted:
            continue
        names = [f"{name}:{getattr(t, 'feature', None) or 'mmd'}" for t in tests if t.drifted]
        out.extend(names or [name])
    return sorted(out)


def log_experiment_result(r: ExperimentResult) -> None:
    """Log one closed experiment window (no input text: names, counts and verdicts only)."""
    bad = r.srm_mismatch or r.degraded or r.guardrail_breached
    log_event(logging.WARNING if bad else logging.INFO, "experiment window closed",
              experiment=r.experiment, model=r.model, window_start=iso_ms(r.window_start_ms), samples=r.samples,
              srm_mismatch=r.srm_mismatch, significant=r.significant, degraded=r.degraded,
              guardrail_breached=r.guardrail_breached, partial=r.partial)  # fmt: skip


def log_labels_result(r: LabelsResult) -> None:
    """Log one closed labels result (names and counts only)."""
    log_event(logging.INFO, "labels window closed", model=r.model, version=r.version,
              window_start=iso_ms(r.window_start_ms), labelled=r.labelled, accuracy=r.accuracy,
              estimated_accuracy=r.estimated_accuracy, unmatched=r.unmatched, partial=r.partial)


def log_shadow_result(r: ShadowResult) -> None:
    """Log one closed shadow window (no input text: names, counts and verdicts only)."""
    s = r.summary
    log_event(logging.WARNING if s.agreement_low else logging.INFO, "shadow window closed",
              model=r.model, window_start=iso_ms(r.window_start_ms), pairs=s.n,
              agreement_rate=finite_or_none(s.agreement_rate), agreement_low=s.agreement_low, partial=r.partial)
