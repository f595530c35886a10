"""The report's charts as plain plotly.js figure specs (``{"data": [...], "layout": {...}}``), no I/O.

Specs are dicts, not ``plotly.graph_objects`` figures: the page only needs plotly.js, and building the JSON
directly is ~50x faster than validating figure objects (a day of 5-minute windows renders in well under a
second, docs/benchmarks.md). Every function returns ``None`` when it has nothing to draw, so the page never
shows an empty chart.
"""

from __future__ import annotations

from collections.abc import Mapping

from detectors.evidence import QUANTILE_GRID, QuantileSketch
from monitor.report.data import ReportData, flags
from monitor.report.summary import realised_accuracy

__all__ = ["timeline", "overlay", "overlays", "cdf", "tokens", "embedding", "confidence", "class_mix", "latency",
           "accuracy", "MAX_OVERLAYS"]

MAX_OVERLAYS = 8
REFERENCE, WINDOW, ALERT = "#7f7f7f", "#1f77b4", "#d62728"
# p-values below this are drawn at it: a log axis cannot show 0, and nothing below it reads differently.
P_FLOOR = 1e-16


def _layout(title: str, **extra) -> dict:
    return {"title": {"text": title, "font": {"size": 14}}, "height": 320, "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
            "legend": {"orientation": "h", "y": -0.2}, "template": None, **extra}


def _starts(data: ReportData) -> list[str]:
    return [r.get("window_start") for r, _ in data.windows]


def timeline(data: ReportData) -> dict | None:
    """Each test's (adjusted) p-value per window on a log axis, drifted windows marked, the alpha line."""
    series: dict[tuple[str, str], tuple[list, list]] = {}
    x = _starts(data)
    for i, (result, _) in enumerate(data.windows):
        for f in flags(result):
            ys, stats = series.setdefault((f.detector, f.feature), ([None] * len(x), [None] * len(x)))
            ys[i] = None if f.p_value is None else max(f.p_value, P_FLOOR)
            stats[i] = f.statistic
    if not series:
        return None
    # The statistic rides along for the hover: p says whether, the statistic how much.
    traces = [{"type": "scatter", "mode": "lines+markers", "name": f"{d} {f}".strip(), "x": x, "y": ys,
               "customdata": stats, "hovertemplate": "%{x}: p %{y:.2g}, statistic %{customdata:.3g}",
               "marker": {"size": 4}, "connectgaps": False} for (d, f), (ys, stats) in series.items()]
    drifted = [r.get("window_start") for r, _ in data.windows if r.get("drifted")]
    if drifted:
        traces.append({"type": "scatter", "mode": "markers", "name": "drifted window", "x": drifted,
                       "y": [P_FLOOR] * len(drifted), "marker": {"symbol": "triangle-up", "color": ALERT, "size": 9}})
    alpha = _alpha(data)
    shapes = [] if alpha is None else [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": alpha, "y1": alpha,
                                        "line": {"dash": "dot", "color": ALERT}}]
    return {"data": traces, "layout": _layout("p-value per window and test (adjusted; dotted: alpha)", height=380,
                                              yaxis={"type": "log", "title": "p-value"}, shapes=shapes)}


def _alpha(data: ReportData) -> float | None:
    for result, _ in reversed(data.windows):
        for d in ((result.get("drift") or {}).get("input"), (result.get("drift") or {}).get("confidence")):
            if d and d.get("alpha", d.get("threshold")) is not None:
                return d.get("alpha", d.get("threshold"))
    return None


def cdf(sketch: QuantileSketch) -> tuple[list[float], list[float]]:
    """A sketch as CDF points: (min, 0), the grid quantiles, (max, 1)."""
    return [sketch.min, *sketch.quantiles, sketch.max], [0.0, *QUANTILE_GRID, 1.0]


def overlay(key: str, window: QuantileSketch | None, reference: QuantileSketch | None, *, title: str) -> dict | None:
    """Reference vs window CDF of one series (from their quantile sketches)."""
    traces = []
    for sketch, name, color in ((reference, "reference", REFERENCE), (window, "window", WINDOW)):
        if sketch is not None and sketch.n > 0:
            xs, ys = cdf(sketch)
            traces.append({"type": "scatter", "mode": "lines", "name": f"{name} (n={sketch.n})", "x": xs, "y": ys,
                           "line": {"color": color, "shape": "linear", "width": 2}})
    if not traces:
        return None
    return {"data": traces, "layout": _layout(title, height=280, yaxis={"title": "CDF", "range": [0, 1]})}


def tokens(evidence) -> dict | None:
    """The shifted tokens' log-odds (rising right, falling left), strongest at the top."""
    if evidence is None or not (evidence.tokens_rising or evidence.tokens_falling):
        return None
    shifts = list(evidence.tokens_falling)[::-1] + list(evidence.tokens_rising)[::-1]
    shifts.sort(key=lambda s: s.log_odds)
    return {"data": [{"type": "bar", "orientation": "h", "x": [s.log_odds for s in shifts],
                      "y": [f"{s.token} " for s in shifts], "name": "log-odds (window vs reference)",
                      "marker": {"color": [ALERT if s.log_odds > 0 else WINDOW for s in shifts]},
                      "customdata": [[s.z, s.window_events, s.reference_events] for s in shifts],
                      "hovertemplate": "%{y}: log-odds %{x:.2f}, z %{customdata[0]:.1f}, "
                                       "%{customdata[1]} window events, %{customdata[2]} reference<extra></extra>"}],
            "layout": _layout("shifted tokens: log-odds ratio, window vs reference", height=max(240, 22 * len(shifts) + 80),
                              yaxis={"automargin": True, "type": "category"}, showlegend=False)}


def embedding(data: ReportData, evidence) -> dict | None:
    """The first two embedding components: the reference's sample and the window's."""
    traces = []
    for points, name, color in ((data.reference_points, "reference", REFERENCE),
                                (evidence.embedding_points if evidence is not None else (), "window", WINDOW)):
        if points:
            traces.append({"type": "scattergl" if len(points) > 5000 else "scatter", "mode": "markers",
                           "name": f"{name} ({len(points)})", "x": [p[0] for p in points], "y": [p[1] for p in points],
                           "marker": {"size": 4, "color": color, "opacity": 0.5 if name == "reference" else 0.8}})
    if not traces:
        return None
    return {"data": traces, "layout": _layout("embedding: first two components", height=360,
                                              xaxis={"title": "pc1"}, yaxis={"title": "pc2"})}


def confidence(data: ReportData) -> dict | None:
    """Mean confidence and low-confidence share per window, with the reference mean."""
    x = _starts(data)
    means = [(r.get("confidence") or {}).get("mean") for r, _ in data.windows]
    if not any(m is not None for m in means):
        return None
    low = [(r.get("confidence") or {}).get("low_ratio") for r, _ in data.windows]
    ref = [((r.get("drift") or {}).get("confidence") or {}).get("reference_mean") for r, _ in data.windows]
    traces = [{"type": "scatter", "mode": "lines+markers", "name": "mean confidence", "x": x, "y": means,
               "line": {"color": WINDOW}, "marker": {"size": 4}},
              {"type": "scatter", "mode": "lines", "name": "low-confidence share", "x": x, "y": low,
               "line": {"color": "#ff7f0e"}}]
    if any(v is not None for v in ref):
        traces.append({"type": "scatter", "mode": "lines", "name": "reference mean", "x": x, "y": ref,
                       "line": {"color": REFERENCE, "dash": "dash"}})
    return {"data": traces, "layout": _layout("confidence per window", yaxis={"range": [0, 1.02]})}


def class_mix(data: ReportData) -> dict | None:
    """Each class's share of the predictions per window, with the reference's share dashed."""
    counts = [r.get("predictions") or {} for r, _ in data.windows]
    classes = sorted({c for p in counts for c in p} | set(data.reference_classes))
    if not classes:
        return None
    x = _starts(data)
    ref_total = sum(data.reference_classes.values())
    traces, shapes = [], []
    for k, c in enumerate(classes):
        color = _PALETTE[k % len(_PALETTE)]
        shares = [(p.get(c, 0) / sum(p.values())) if sum(p.values()) else None for p in counts]
        traces.append({"type": "scatter", "mode": "lines", "name": c, "x": x, "y": shares, "line": {"color": color}})
        if ref_total:
            share = data.reference_classes.get(c, 0) / ref_total
            shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": share, "y1": share,
                           "line": {"dash": "dash", "color": color, "width": 1}})
    return {"data": traces, "layout": _layout("class mix: share of predictions (dashed: reference)", shapes=shapes,
                                              yaxis={"range": [0, 1]})}


_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def latency(data: ReportData) -> dict | None:
    """Latency percentiles per window (as the results carry them)."""
    x = _starts(data)
    lat = [r.get("latency_ms") or {} for r, _ in data.windows]
    traces = [{"type": "scatter", "mode": "lines", "name": k, "x": x, "y": [v.get(k) for v in lat]}
              for k in ("p50", "p95", "p99") if any(v.get(k) is not None for v in lat)]
    if not traces:
        return None
    return {"data": traces, "layout": _layout("latency per window (ms)", yaxis={"title": "ms", "rangemode": "tozero"})}


def accuracy(data: ReportData) -> dict | None:
    """Realised accuracy (labels) against the label-free estimate with its interval, and the baseline."""
    x = _starts(data)
    realised = [realised_accuracy(data, r) for r, _ in data.windows]
    est = [(r.get("accuracy_estimate") or {}) for r, _ in data.windows]
    traces = []
    if any(e.get("estimate") is not None for e in est):
        traces += [{"type": "scatter", "mode": "lines", "name": "estimate 95% interval", "x": x + x[::-1],
                    "y": [e.get("high") for e in est] + [e.get("low") for e in est][::-1], "fill": "toself",
                    "line": {"width": 0}, "fillcolor": "rgba(31,119,180,0.15)", "hoverinfo": "skip"},
                   {"type": "scatter", "mode": "lines+markers", "name": "estimated accuracy", "x": x,
                    "y": [e.get("estimate") for e in est], "line": {"color": WINDOW}, "marker": {"size": 4}}]
    if any(a is not None for a in realised):
        traces.append({"type": "scatter", "mode": "lines+markers", "name": "realised accuracy (labels)", "x": x,
                       "y": realised, "line": {"color": "#2ca02c"}, "marker": {"size": 5}})
    if not traces:
        return None
    shapes = []
    if data.baseline_accuracy is not None:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": data.baseline_accuracy,
                       "y1": data.baseline_accuracy, "line": {"dash": "dash", "color": REFERENCE}})
    return {"data": traces, "layout": _layout("accuracy: realised vs estimated (dashed: baseline)", shapes=shapes,
                                              yaxis={"rangemode": "tozero"})}


def overlays(data: ReportData, result: Mapping, evidence) -> list[tuple[str, dict]]:
    """The CDF overlays of the focus window: its drifted series first, then confidence; at most MAX_OVERLAYS."""
    if evidence is None:
        return []
    keys = []
    for f in flags(result):
        if f.drifted and f.detector == "input":
            keys.append(f"feature:{f.feature}")
        elif f.drifted and f.detector == "probabilities":
            keys.append(f"probability:{f.feature}")
    keys.append("confidence")
    out = []
    for key in dict.fromkeys(keys):
        spec = overlay(key, evidence.distributions.get(key), data.reference.get(key), title=key.replace(":", ": "))
        if spec is not None:
            out.append((key, spec))
    return out[:MAX_OVERLAYS]
