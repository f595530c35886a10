"""Rows of the SQL store's tables from typed results (docs/storage.md): read fields, never re-parse JSON.

The ``result`` column holds ``to_dict()``, the one place a window, experiment or shadow result becomes JSON
on its way into the database; every other column is read from the result's fields, in integer milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from detectors.base import finite_or_none
from monitor.results import DriftVerdicts, ExperimentResult, ShadowResult, WindowResult
from sinks.sql_engine import now_ms

__all__ = ["result_rows", "experiment_rows", "shadow_rows", "drift_rows", "checkpoint_rows", "check_name",
           "float_or_none"]


def check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")


def float_or_none(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _window_key(result: WindowResult | ExperimentResult | ShadowResult, what: str) -> dict:
    # None where a window has no bound yet: refused here, before anything is written.
    for name in ("window_start_ms", "window_end_ms"):
        if getattr(result, name) is None:
            raise ValueError(f"{what} has no {name.removesuffix('_ms')!r}")
    return {
        "window_kind": result.window_kind,
        "window_start_ms": result.window_start_ms,
        "window_seq": result.seq if isinstance(result, WindowResult) else result.window_seq,
        "window_end_ms": result.window_end_ms,
        "partial": result.partial,
    }


def result_rows(results: Iterable[WindowResult]) -> tuple[list[dict], list[dict]]:
    """Return the window_results rows and drift_events rows of window results (docs/results.md)."""
    rows, events = [], []
    for result in results:
        window = _window_key(result, "a window result")
        check_name("a window result's model", result.model)
        check_name("a window result's version", result.version)
        key = {"model": result.model, "version": result.version, "segment": result.segment or "",
               "window_kind": window["window_kind"],
               "window_start_ms": window["window_start_ms"], "window_seq": window["window_seq"]}
        rows.append(dict(key, window_end_ms=window["window_end_ms"], partial=window["partial"],
                         drifted=result.drifted, events=result.events, result=result.to_dict()))
        events.extend(dict(key, **event) for event in drift_rows(result.drift))
    return rows, events


def experiment_rows(results: Iterable[ExperimentResult]) -> list[dict]:
    """Rows of ``experiment_results`` (docs/experiments.md)."""
    rows = []
    for result in results:
        check_name("an experiment result's experiment", result.experiment)
        check_name("an experiment result's model", result.model)
        rows.append(dict(
            _window_key(result, "an experiment result"), experiment=result.experiment, model=result.model,
            samples=result.samples, srm_mismatch=result.srm_mismatch, significant=result.significant,
            degraded=result.degraded, guardrail_breached=result.guardrail_breached, result=result.to_dict(),
        ))  # fmt: skip
    return rows


def shadow_rows(results: Iterable[ShadowResult]) -> list[dict]:
    """Rows of ``shadow_results``."""
    rows = []
    for result in results:
        check_name("a shadow result's model", result.model)
        s = result.summary
        rows.append(dict(
            _window_key(result, "a shadow result"), model=result.model, pairs=s.n,
            agreement_rate=finite_or_none(s.agreement_rate), agreement_low=bool(s.agreement_low),
            result=result.to_dict(),
        ))  # fmt: skip
    return rows


def drift_rows(drift: DriftVerdicts) -> Iterator[dict]:
    """One row per drifted input feature and per drifted class probability, one per other detector that drifted."""
    if drift.input is not None and drift.input.drifted:
        features = [f for f in drift.input.features if f.drifted]
        for f in features:
            yield _drift_row("input", f.feature, f.statistic, f.p_value, f.p_value_adjusted)
        if not features:  # drifted as a whole (cannot happen with the KS detector, kept for the schema's sake)
            yield _drift_row("input", "", None, None, None)
    for detector, d in (("confidence", drift.confidence), ("prediction", drift.prediction)):
        if d is not None and d.drifted:
            yield _drift_row(detector, "", d.statistic, d.p_value, None)
    if drift.probabilities is not None and drift.probabilities.drifted:
        for c in drift.probabilities.classes:
            if c.drifted:
                yield _drift_row("probabilities", c.feature, c.statistic, c.p_value, c.p_value_adjusted)
    e = drift.embedding
    if e is not None and e.drifted:
        for c in e.components:
            if c.drifted:
                yield _drift_row("embedding", c.feature, c.statistic, c.p_value, c.p_value_adjusted)
        m = e.multivariate
        if m is not None and m.drifted:
            yield _drift_row("embedding", "mmd", m.statistic, m.p_value, m.p_value_adjusted)


def _drift_row(detector: str, feature: str, statistic, p_value, p_value_adjusted) -> dict:
    num = lambda x: None if x is None else finite_or_none(x)  # noqa: E731
    return {"detector": detector, "feature": feature, "statistic": num(statistic), "p_value": num(p_value),
            "p_value_adjusted": num(p_value_adjusted)}


def checkpoint_rows(group_id: str, cps: Mapping[tuple[str, int], tuple[int, bytes | None]]) -> list[dict]:
    now = now_ms()
    rows = []
    for (topic, partition), (next_offset, state) in cps.items():
        if isinstance(next_offset, bool) or not isinstance(next_offset, int) or next_offset < 0:
            raise ValueError(f"checkpoint of {topic}[{partition}]: next_offset must be an integer >= 0")
        if state is not None and not isinstance(state, bytes | bytearray | memoryview):
            raise TypeError(f"checkpoint of {topic}[{partition}]: state must be bytes or None")
        rows.append({
            "group_id": group_id, "topic": topic, "partition": int(partition), "next_offset": next_offset,
            "state": None if state is None else bytes(state), "updated_at_ms": now,
        })
    return rows
