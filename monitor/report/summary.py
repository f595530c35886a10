"""The plain sentences a report opens with, computed from its data: what changed, since when, by how much."""

from __future__ import annotations

from collections.abc import Mapping

from monitor.report.data import Flag, ReportData, flags, sketch_median

__all__ = ["headline", "sentences", "hhmm"]

# How a sentence names the change of a feature's median: (word when higher, word when lower).
_PHRASES = {
    "char_length": ("texts are longer", "texts are shorter"),
    "word_count": ("texts have more words", "texts have fewer words"),
    "token_count": ("texts have more tokens", "texts have fewer tokens"),
    "mean_word_length": ("words are longer", "words are shorter"),
    "oov_rate": ("more words are unknown to the reference", "fewer words are unknown to the reference"),
    "unk_token_rate": ("more tokens are unknown to the tokenizer", "fewer tokens are unknown to the tokenizer"),
    "non_ascii_ratio": ("more non-ASCII characters", "fewer non-ASCII characters"),
    "digit_ratio": ("more digits", "fewer digits"),
    "uppercase_ratio": ("more upper case", "less upper case"),
    "punctuation_ratio": ("more punctuation", "less punctuation"),
    "unique_word_ratio": ("more varied words", "more repeated words"),
}


def hhmm(start: str | None) -> str:
    """``2026-11-25T10:05:00.000Z`` -> ``10:05`` (the day is in the page's header)."""
    return start[11:16] if start and len(start) >= 16 else (start or "?")


def num(x: float | None, digits: int = 3) -> str:
    """A figure for a sentence: ``None`` is ``-``, others with ``digits`` significant digits."""
    if x is None:
        return "-"
    return f"{x:.{digits}g}"


def headline(data: ReportData) -> str:
    """One line: the state of the focus window and since when."""
    focus = data.focus_window
    if focus is None:
        return "No stored windows in this period."
    result = focus[0]
    onset = data.drift_onset()
    if onset is None:
        if not result.get("tested", True):
            return f"Window {hhmm(result.get('window_start'))} was not tested ({result.get('skip_reason') or 'skipped'})."
        return f"No drift in the window of {hhmm(result.get('window_start'))}."
    kinds = sorted({f.detector for f in flags(result) if f.drifted})
    what = "Input drift" if "input" in kinds or "embedding" in kinds else "Drift"
    return f"{what} since {hhmm(onset.get('window_start'))} ({', '.join(kinds)} flagged)."


def sentences(data: ReportData) -> list[str]:
    """The figures behind the headline, one clause each, most telling first (empty without windows)."""
    focus = data.focus_window
    if focus is None:
        return []
    result, evidence = focus
    out = _feature_clauses(data, result, evidence)
    out += _token_clauses(evidence)
    out += _model_clauses(data, result)
    return out


def _feature_clauses(data: ReportData, result: Mapping, evidence) -> list[str]:
    drifted = sorted((f for f in flags(result) if f.drifted and f.detector == "input"),
                     key=lambda f: -(f.statistic or 0.0))
    out = []
    for f in drifted[:3]:
        key = f"feature:{f.feature}"
        now = sketch_median(evidence.distributions.get(key)) if evidence is not None else None
        ref = sketch_median(data.reference.get(key))
        if now is None or ref is None or now == ref:
            out.append(f"{f.feature} shifted (KS D={num(f.statistic, 2)}, p={num(f.p_value, 2)})")
            continue
        up, down = _PHRASES.get(f.feature, (f"{f.feature} is higher", f"{f.feature} is lower"))
        out.append(f"{up if now > ref else down} ({f.feature} median {num(ref)} -> {num(now)})")
    embedded = [f for f in flags(result) if f.drifted and f.detector == "embedding"]
    if embedded:
        out.append("the embeddings moved (" + ", ".join(f.name for f in embedded[:4]) + ")")
    return out


def _token_clauses(evidence) -> list[str]:
    if evidence is None:
        return []
    out = []
    for shifts, word in ((evidence.tokens_rising, "up"), (evidence.tokens_falling, "down")):
        if not shifts:
            continue
        top = shifts[:3]
        ratios = [s.ratio for s in top if s.ratio]
        if word == "up":
            size = f"up {_times(max(ratios))}" if ratios else "up (new)"
        else:
            size = f"down {_times(1 / min(ratios))}" if ratios and min(ratios) > 0 else "down"
        out.append(f"tokens {', '.join(s.token for s in top)} {size}")
    return out


def _times(x: float) -> str:
    return f"{x:.0f}x" if x >= 10 else f"{x:.1f}x"


def _model_clauses(data: ReportData, result: Mapping) -> list[str]:
    out = []
    drift = result.get("drift") or {}
    mean = (result.get("confidence") or {}).get("mean")
    ref = (drift.get("confidence") or {}).get("reference_mean")
    if mean is not None and ref is not None and abs(mean - ref) >= 0.01:
        out.append(f"confidence {'down' if mean < ref else 'up'} {abs(mean - ref):.2f} ({ref:.2f} -> {mean:.2f})")
    prediction = drift.get("prediction") or {}
    if prediction.get("drifted"):
        out.append(f"class mix shifted (PSI {num(prediction.get('psi'), 2)})")
    accuracy = realised_accuracy(data, result)
    if accuracy is not None:
        base = f" vs {data.baseline_accuracy:.2f} baseline" if data.baseline_accuracy is not None else ""
        out.append(f"realised accuracy {accuracy:.2f}{base}")
    estimate = result.get("accuracy_estimate")
    if estimate and estimate.get("estimate") is not None:
        out.append(f"estimated accuracy {estimate['estimate']:.2f} [{estimate['low']:.2f}, {estimate['high']:.2f}]")
    return out


def realised_accuracy(data: ReportData, result: Mapping) -> float | None:
    """The realised accuracy of a window: its labels result's, else the result's own ``accuracy``."""
    for labels in data.labels:
        if labels.get("window_start") == result.get("window_start") and labels.get("accuracy") is not None:
            return labels["accuracy"]
    return result.get("accuracy")


def flagged_names(result: Mapping) -> list[Flag]:
    """The drifted tests of a window, input features first."""
    return [f for f in flags(result) if f.drifted]
