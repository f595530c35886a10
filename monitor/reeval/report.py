"""Human-readable output of a re-evaluation: the result table and a progress bar for long runs."""

from __future__ import annotations

import time
from typing import TextIO

from detectors.classification import ClassificationReport
from monitor.reeval.result import ReevalResult

__all__ = ["format_table", "ProgressBar"]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _signed_pp(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.2f} pp"


def _rows(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in rows)
    return [f"  {k:<{width}}  {v}" for k, v in rows]


def _class_table(labels: tuple[str, ...], m: ClassificationReport) -> list[str]:
    precision, recall, f1, support = m.precision, m.recall, m.f1, m.support
    w = max(5, *(len(x) for x in labels))
    lines = [f"  {'class':<{w}}  {'precision':>9}  {'recall':>7}  {'f1':>7}  {'support':>7}"]
    for i, name in enumerate(labels):
        lines.append(f"  {name:<{w}}  {precision[i]:>9.4f}  {recall[i]:>7.4f}  {f1[i]:>7.4f}  {support[i]:>7d}")
    return lines


def _confusion(labels: tuple[str, ...], cm) -> list[str]:
    w = max(9, *(len(x) for x in labels))
    cells = max(7, *(len(x) for x in labels), *(len(str(v)) for row in cm for v in row))
    corner = "true \\ pred"
    lines = ["  " + f"{corner:<{w}}" + "".join(f"  {name:>{cells}}" for name in labels)]
    for name, row in zip(labels, cm):
        lines.append("  " + f"{name:<{w}}" + "".join(f"  {v:>{cells}d}" for v in row))
    return lines


def format_table(result: ReevalResult) -> str:
    """Render a result as aligned text sections for a terminal."""
    r = result
    m = r.metrics
    out = [
        f"Re-evaluation of {r.model_name}"
        + (f" (version {r.model_version})" if r.model_version else "")
        + f" on {r.dataset}"
    ]
    provider = r.provider + (f"  (requested {r.provider_requested})" if r.provider_requested != "cpu" else "")
    rows = [
        ("model", f"{r.model_path}  sha256 {r.model_sha256[:12]}"),
        ("data", f"{r.data_path}  {r.n} sentences, {r.truncated} truncated at {r.max_length} tokens"),
        ("provider", provider),
    ]
    if r.provider_note:
        rows.append(("note", r.provider_note))
    rows += [
        ("batching", f"batch size {r.batch_size}, " + ("length-sorted" if r.sorted_batches else "file order")),
        ("accuracy", _pct(m.accuracy)),
        ("macro-F1", f"{m.macro_f1:.4f}"),
        ("ECE", f"{r.ece:.4f}  ({r.calibration.bins} bins, mean confidence {r.mean_confidence:.4f})"),
    ]
    if r.baseline is not None:
        b = r.baseline
        rows.append(("baseline", f"{_pct(b.accuracy)} ({b.source})  accuracy drop {_signed_pp(b.accuracy_drop)}"))
    t = r.timings
    rows.append(
        (
            "speed",
            f"{r.sentences_per_second:,.0f} sentences/s  (tokenize {t.tokenize_seconds:.2f} s, model "
            f"{t.inference_seconds:.2f} s, load {t.load_seconds:.2f} s, total {r.duration_seconds:.2f} s)",
        )
    )
    out += _rows(rows)
    out += ["", "Per class"] + _class_table(r.labels, m)
    out += ["", "Confusion matrix"] + _confusion(r.labels, m.confusion)
    if r.candidate is not None:
        c = r.candidate
        cmp = c.comparison
        rows = [
            ("model", f"{c.model_path}  sha256 {c.model_sha256[:12]}"),
            ("provider", c.provider),
            ("accuracy", f"{_pct(c.metrics.accuracy)}  ({_signed_pp(c.metrics.accuracy - m.accuracy)} vs model)"),
            ("macro-F1", f"{c.metrics.macro_f1:.4f}"),
            ("ECE", f"{c.ece:.4f}"),
            ("agreement", f"{_pct(cmp.agreement)}  ({cmp.disagreements} of {cmp.n} sentences differ)"),
            (
                "max prob change",
                f"{cmp.max_probability_change:.4f}  (sentence {cmp.max_change_index}; "
                f"mean {cmp.mean_probability_change:.4f})",
            ),
        ]
        bc = c.batch_consistency
        if bc is not None:
            rows.append(
                (
                    "batch 1 vs " + str(bc.batch_size),
                    f"{bc.flips} of {bc.n} labels flip ({_pct(bc.flip_rate)}), "
                    f"max prob change {bc.max_probability_change:.4f}",
                )
            )
        if c.traffic is not None:
            rows.append(("on traffic", f"{_pct(c.traffic.agreement)} agreement ({c.traffic.disagreements} of "
                                       f"{c.traffic.n} logged texts differ), max prob change "
                                       f"{c.traffic.max_probability_change:.4f}"))  # fmt: skip
        rows.append(("speed", f"{c.sentences_per_second:,.0f} sentences/s  (model {c.inference_seconds:.2f} s)"))
        out += ["", "Candidate"] + _rows(rows)
    return "\n".join(out) + "\n"


class ProgressBar:
    """A one-line bar redrawn in place; silent for runs shorter than ``delay`` seconds."""

    def __init__(self, stream: TextIO, *, width: int = 30, delay: float = 0.5, interval: float = 0.1):
        self.stream = stream
        self.width = width
        self.delay = delay
        self.interval = interval
        self._start = time.monotonic()
        self._phase_start = self._start
        self._phase = None
        self._prev = self._start
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int, phase: str) -> None:
        now = time.monotonic()
        if phase != self._phase:
            # A phase reports only when work is done; it began when the previous report (or the bar) did.
            self._phase, self._phase_start = phase, self._prev
        self._prev = now
        if now - self._start < self.delay or (now - self._last < self.interval and done < total):
            return
        self._last = now
        filled = int(self.width * done / total) if total else self.width
        rate = done / max(now - self._phase_start, 1e-9)
        line = f"\r{phase:<18} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}  {rate:,.0f}/s"
        self.stream.write(line.ljust(80))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()
