"""Readable one-line-per-window rendering of window results and labels results (demo, history, replay).

Two layouts: ``wide`` (the demo's; p50 and the top feature's adjusted p-value too, about 150 columns) and the
compact one (``wide=False``), which fits :data:`COMPACT_COLUMNS` with a stream column of
:data:`STREAM_WIDTH` in front, for a terminal of the person on call. A labels result (a window's realised
accuracy, docs/results.md) is one line under the same window-start column, marked ``labels`` where a window
line has its event count.
"""

from __future__ import annotations

__all__ = ["COMPACT_COLUMNS", "STREAM_WIDTH", "window_header", "window_row", "labels_row", "stream_cell"]

COMPACT_COLUMNS = 120
STREAM_WIDTH = 12
_FEATURES_WIDE, _FEATURES_COMPACT = 44, 28
_SHORT = {"input": "in", "confidence": "conf", "prediction": "class", "probabilities": "prob", "embedding": "emb"}


def _p(x) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "<1e-300"  # below double precision: "0" would read as a certainty nobody has
    return f"{x:.0e}" if x < 1e-3 else f"{x:.3f}"


def stream_cell(text: str) -> str:
    """The leading stream column (a version, or model/version), cut to :data:`STREAM_WIDTH`."""
    return f"{text[:STREAM_WIDTH]:<{STREAM_WIDTH}} "


def window_header(*, wide: bool = True) -> str:
    if wide:
        return (f"{'window start (UTC)':<24} {'events':>6} {'p50ms':>6} {'p99ms':>6} {'conf':>5} {'low%':>5}  "
                f"{'input drift: top feature, KS D, adj. p':<{_FEATURES_WIDE}} {'conf p':>7} {'class p':>7}  drift")  # fmt: skip
    return (f"{'window start (UTC)':<19} {'events':>6} {'p99ms':>6} {'conf':>5} {'low%':>5}  "
            f"{'input drift: top feature, KS D':<{_FEATURES_COMPACT}} {'conf p':>7} {'class p':>7}  drifted")  # fmt: skip


def window_row(r: dict, *, wide: bool = True) -> str:
    """One window result (``WindowResult.to_dict()``, docs/results.md) as one line."""
    lat, conf, drift = r["latency_ms"], r["confidence"], r["drift"]
    features = _input_drift(r, wide)
    cp = _p(drift["confidence"]["p_value"]) if drift["confidence"] else "-"
    kp = _p(drift["prediction"]["p_value"]) if drift["prediction"] else "-"
    which = [k for k in _SHORT if drift.get(k) and drift[k]["drifted"]]
    low = _f(conf["low_ratio"] and conf["low_ratio"] * 100, 1)
    start = _start(r)
    if wide:
        flag = "DRIFT " + "+".join(which) if r["drifted"] else ("partial" if r["partial"] else "ok")
        return (f"{start[:23]:<24} {r['events']:>6} {_f(lat['p50']):>6} {_f(lat['p99']):>6} {_f(conf['mean'], 2):>5} "
                f"{low:>5}  {features[:_FEATURES_WIDE]:<{_FEATURES_WIDE}} {cp:>7} {kp:>7}  {flag}")  # fmt: skip
    # The drifted tests by short name ("in+conf+class+prob+emb"): the longest flag still fits the compact width.
    flag = "+".join(_SHORT[k] for k in which) if r["drifted"] else ("partial" if r["partial"] else "ok")
    return (f"{start[:19]:<19} {r['events']:>6} {_f(lat['p99']):>6} {_f(conf['mean'], 2):>5} {low:>5}  "
            f"{features:<{_FEATURES_COMPACT}} {cp:>7} {kp:>7}  {flag}")  # fmt: skip


def labels_row(r: dict, *, wide: bool = True) -> str:
    """One labels result (``LabelsResult.to_dict()``, ``result_kind`` "labels") as one line.

    The estimate made when the window closed stands beside the realised accuracy, with its 95 % interval and
    ``reliable=no`` where inputs shifted and few labels supported it; ``partial``: labels may still have come.
    ``wide`` adds the window's predictions and those whose label did not come in time (``expired``).
    """
    start = _start(r)
    text = f"predictions={r['predictions']} expired={r['expired']} " if wide else ""
    text += f"labelled={r['labelled']} accuracy={_f(r['accuracy'], 3)} est={_f(r['estimated_accuracy'], 3)}"
    if r.get("estimated_accuracy_low") is not None:
        text += f" [{_f(r['estimated_accuracy_low'], 3)}-{_f(r.get('estimated_accuracy_high'), 3)}]"
    if r.get("estimate_reliable") is not None:
        text += f" reliable={'yes' if r['estimate_reliable'] else 'no'}"
    if r["partial"]:
        text += " partial"
    cell = f"{start[:23]:<24}" if wide else f"{start[:19]:<19}"  # the window start column of window_header
    return f"{cell} {'labels':>6}  {text}"


def _start(r: dict) -> str:
    return (r["window_start"] or "-").replace("T", " ").replace("Z", "")


def _input_drift(r: dict, wide: bool) -> str:
    d_in = r["drift"]["input"]
    if d_in is None:
        text = r["skip_reason"] or "-"
        return text if wide else text[:_FEATURES_COMPACT]
    hits = [(n, f) for n, f in d_in["features"].items() if f["drifted"]]
    hits.sort(key=lambda nf: -nf[1]["statistic"])
    if not hits:
        return "none"
    name, f = hits[0]  # the strongest shift, then how many more features drifted
    if wide:
        more = f" (+{len(hits) - 1} more)" if len(hits) > 1 else ""
        return f"{name} D={f['statistic']:.2f} p={_p(f['p_value_adjusted'])}{more}"
    suffix = f" D={f['statistic']:.2f}" + (f" +{len(hits) - 1}" if len(hits) > 1 else "")
    return name[: _FEATURES_COMPACT - len(suffix)] + suffix


def _f(x, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
