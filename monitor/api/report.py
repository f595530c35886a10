"""The frozen report of ``compare``: the daemon's window result over the current data, and its tests one by one."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from monitor.ingest.reference import Profile
from monitor.report import ReportData, render_report
from monitor.results import WindowEvidence, WindowResult

__all__ = ["CompareReport", "InputSummary", "TestResult", "tests_of"]


@dataclass(frozen=True, slots=True)
class TestResult:
    """One test of the comparison: ``test`` is the detector (``input``, ``confidence``, ``prediction``,
    ``probabilities``, ``embedding``), ``name`` what it tested (a feature, a class, a component, ``mmd``; empty
    for the one-number tests). ``p_value_adjusted`` is the p-value after the multiple-test correction where the
    detector applies one (the p-value itself otherwise)."""

    __test__ = False  # not a pytest test class

    test: str
    name: str
    statistic: float
    p_value: float
    p_value_adjusted: float
    threshold: float
    drifted: bool

    def to_dict(self) -> dict:
        return {"test": self.test, "name": self.name, "statistic": self.statistic, "p_value": self.p_value,
                "p_value_adjusted": self.p_value_adjusted, "threshold": self.threshold, "drifted": self.drifted}


@dataclass(frozen=True, slots=True)
class InputSummary:
    """One side of the comparison: ``kind`` (``list``, ``text``, ``dataframe``, ``jsonl``, ``profile``), a display
    ``name``, the records read (``lines``; 0 for a stored profile), the valid prediction events (``events``;
    for a profile, those it was built from) and the rejected ones by reason (docs/events.md)."""

    kind: str
    name: str
    lines: int
    events: int
    invalid: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "lines": self.lines, "events": self.events,
                "invalid": dict(sorted(self.invalid.items()))}


@dataclass(frozen=True, slots=True)
class CompareReport:
    """What ``compare(reference, current)`` found: the current data as ONE window of the daemon, tested
    against the reference profile with the daemon's detectors, floors and corrections.

    ``result`` is that window's :class:`~monitor.results.WindowResult` (its ``to_dict()`` is a line of
    ``nlpmon replay``); ``tests`` lists every test it ran, in the result's order; ``drifted`` is the result's
    verdict, ``tested`` false (with ``skip_reason``) when the window had fewer than ``window.min_events``
    events. ``evidence`` is the window's evidence (distributions, shifted tokens, exemplars) when the
    pipeline keeps it. ``profile`` is the reference profile the window was tested against (the report draws
    its distributions beside the window's).
    """

    result: WindowResult
    reference: InputSummary
    current: InputSummary
    tests: tuple[TestResult, ...]
    profile: Profile | None = field(default=None, repr=False, compare=False)

    @property
    def drifted(self) -> bool:
        return self.result.drifted

    @property
    def tested(self) -> bool:
        return self.result.tested

    @property
    def skip_reason(self) -> str | None:
        return self.result.skip_reason

    @property
    def evidence(self) -> WindowEvidence | None:
        return self.result.evidence

    @property
    def drifted_tests(self) -> tuple[TestResult, ...]:
        return tuple(t for t in self.tests if t.drifted)

    def report_data(self) -> ReportData:
        """The comparison as the daemon's report draws a window (docs/report.md): one window, its reference."""
        return ReportData.build(self.result.model, [(self.result.to_dict(), self.evidence)], profile=self.profile,
                                reference_note=f"the reference {self.reference.kind} {self.reference.name}")

    def to_html(self) -> str:
        """The report as one self-contained HTML page (plotly.js inlined: it opens offline)."""
        return render_report(self.report_data())

    def save_html(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_html` to ``path``; return the path."""
        out = Path(path)
        out.write_text(self.to_html(), encoding="utf-8")
        return out

    def _repr_html_(self) -> str:
        # Jupyter: the page in an iframe, so its styles and scripts stay out of the notebook's.
        return (f'<iframe srcdoc="{html.escape(self.to_html(), quote=True)}" '
                'style="width:100%;height:900px;border:0" sandbox="allow-scripts"></iframe>')

    def to_dict(self) -> dict:
        """The report as JSON-safe data (``nlpmon compare --format json`` prints it)."""
        evidence = self.evidence
        return {"drifted": self.drifted, "tested": self.tested, "skip_reason": self.skip_reason,
                "reference": self.reference.to_dict(), "current": self.current.to_dict(),
                "tests": [t.to_dict() for t in self.tests], "result": self.result.to_dict(),
                "evidence": evidence.to_dict() if evidence is not None else None}


def tests_of(result: WindowResult, *, with_prediction: bool = True) -> tuple[TestResult, ...]:
    """Every test of a window result, one :class:`TestResult` each, in the order of its JSON; without the class
    shift when ``with_prediction`` is false (rows without predictions all have one class: it cannot flag)."""
    d = result.drift
    out = [_feature("input", f) for f in (d.input.features if d.input is not None else ())]
    for name, r in (("confidence", d.confidence), ("prediction", d.prediction if with_prediction else None)):
        if r is not None:  # one number each, no correction
            out.append(TestResult(name, "", r.statistic, r.p_value, r.p_value, r.threshold, r.drifted))
    out += [_feature("probabilities", f) for f in (d.probabilities.classes if d.probabilities is not None else ())]
    if d.embedding is not None:
        out += [_feature("embedding", f) for f in d.embedding.components]
        m = d.embedding.multivariate
        if m is not None:
            out.append(TestResult("embedding", "mmd", m.statistic, m.p_value, m.p_value_adjusted, m.threshold, m.drifted))
    return tuple(out)


def _feature(test: str, f) -> TestResult:
    return TestResult(test, f.feature, f.statistic, f.p_value, f.p_value_adjusted, f.threshold, f.drifted)
