"""Readable one-line-per-window rendering of window results (demo, history)."""

from __future__ import annotations

__all__ = ["window_header", "window_row"]

_COLS = ("window_start", "events", "p50ms", "p99ms", "conf", "low%", "input drift", "conf", "class", "DRIFT")


def _p(x) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "<1e-300"  # below double precision: "0" would read as a certainty nobody has
    return f"{x:.0e}" if x < 1e-3 else f"{x:.3f}"


def window_header() -> str:
    return (f"{'window start (UTC)':<24} {'events':>6} {'p50ms':>6} {'p99ms':>6} {'conf':>5} {'low%':>5}  "
            f"{'input drift: top feature, KS D, adj. p':<44} {'conf p':>7} {'class p':>7}  drift")  # fmt: skip


def window_row(r: dict) -> str:
    lat, conf, drift = r["latency_ms"], r["confidence"], r["drift"]
    d_in = drift["input"]
    if d_in is None:
        features = r["skip_reason"] or "-"
    else:
        hits = [(n, f) for n, f in d_in["features"].items() if f["drifted"]]
        hits.sort(key=lambda nf: -nf[1]["statistic"])
        if hits:
            name, f = hits[0]  # the strongest shift, then how many more features drifted
            features = f"{name} D={f['statistic']:.2f} p={_p(f['p_value_adjusted'])}"
            if len(hits) > 1:
                features += f" (+{len(hits) - 1} more)"
        else:
            features = "none"
    cp = _p(drift["confidence"]["p_value"]) if drift["confidence"] else "-"
    kp = _p(drift["prediction"]["p_value"]) if drift["prediction"] else "-"
    flag = "DRIFT" if r["drifted"] else ("partial" if r["partial"] else "ok")
    if r["drifted"]:
        which = [k for k in ("input", "confidence", "prediction") if drift[k] and drift[k]["drifted"]]
        flag = "DRIFT " + "+".join(which)
    start = (r["window_start"] or "-").replace("T", " ").replace("Z", "")[:23]
    return (f"{start:<24} {r['events']:>6} {_f(lat['p50']):>6} {_f(lat['p99']):>6} {_f(conf['mean'], 2):>5} "
            f"{_f(conf['low_ratio'] and conf['low_ratio'] * 100, 1):>5}  {features[:44]:<44} {cp:>7} {kp:>7}  {flag}")  # fmt: skip


def _f(x, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
