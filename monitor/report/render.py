"""One function from :class:`ReportData` to a self-contained HTML page: the report file and the served page.

No I/O: the page is a string built from the data; the only thing read is plotly.js, shipped inside the plotly
package, once per process (:func:`plotly_js`). Every text that comes from the data (model names, features,
tokens, positions) is escaped with :func:`html.escape`, and the chart JSON is made safe inside ``<script>``,
so a hostile token is shown, never run.
"""

from __future__ import annotations

import functools
import html
import shlex
from collections.abc import Mapping

import orjson

from monitor.report import charts
from monitor.report.data import ReportData, flags
from monitor.report.summary import headline, hhmm, num, sentences

__all__ = ["render_report", "plotly_js", "INLINE"]

INLINE = "inline"
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:16px 24px;color:#222}
h1{font-size:22px;margin:4px 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.lead{font-size:17px;background:#fff4e5;border-left:4px solid #d62728;padding:10px 14px;margin:12px 0}
.lead.ok{background:#eef7ee;border-color:#2ca02c}.muted{color:#666}.grid{display:grid;grid-template-columns:1fr 1fr;gap:8px}
table{border-collapse:collapse;margin:6px 0}td,th{border-bottom:1px solid #eee;padding:3px 10px;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}code,pre{background:#f4f4f4;padding:2px 4px;border-radius:3px}
pre{padding:8px;overflow-x:auto}.chart{min-height:240px}.flag{color:#d62728;font-weight:600}
"""


@functools.cache
def plotly_js() -> str:
    """The plotly.js bundle the installed plotly ships (read once; it makes pages work offline)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def plotly_version() -> str:
    import plotly

    return plotly.__version__


def render_report(data: ReportData, *, script: str = INLINE, links: Mapping[str, str] | None = None) -> str:
    """Return the report of ``data`` as one HTML page.

    ``script``: ``"inline"`` embeds plotly.js (a file that opens offline, ~4.6 MB); else the URL the page
    loads it from (the report server serves its own copy). ``links``: segment -> URL of that segment's report
    (the server's), else the segments table names the command.
    """
    e = html.escape
    page = _Page()
    page.add(f"<h1>{e(data.model)}{_stream_label(data)}</h1>")
    page.add(f'<p class="muted">{e(_period(data))}{e(_reference_line(data))}</p>')
    for note in data.notes:
        page.add(f'<p class="muted">{e(note)}</p>')
    page.add(_lead(data))
    focus = data.focus_window
    if focus is not None:
        result, evidence = focus
        page.section("Tests over the period", charts.timeline(data))
        page.add(_flag_table(result))
        page.add(f"<h2>Reference vs window {e(hhmm(result.get('window_start')))}: distributions</h2>")
        if evidence is None:
            page.add('<p class="muted">This window has no stored evidence (explain turned off, or written before it).</p>')
        specs = charts.overlays(data, result, evidence)
        if specs:
            page.add('<div class="grid">' + "".join(page.chart(spec) for _, spec in specs) + "</div>")
        page.add(_tokens(evidence))
        bars = charts.tokens(evidence)
        if bars is not None:
            page.add(page.chart(bars))
        page.section("Embedding", charts.embedding(data, evidence), heading=False)
        page.section("Confidence", charts.confidence(data))
        page.section("Class mix", charts.class_mix(data))
        page.section("Latency", charts.latency(data))
        page.section("Accuracy", charts.accuracy(data))
        if data.baseline_note:
            page.add(f'<p class="muted">Baseline: {e(data.baseline_note)}</p>')
        page.add(_segments(data, links))
        page.add(_exemplars(data.model, result, evidence))
    return page.html(f"nlpmon report: {data.model}", script)


class _Page:
    """The page being built: its HTML parts and the charts' specs."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.specs: list[dict] = []

    def add(self, part: str) -> None:
        if part:
            self.parts.append(part)

    def chart(self, spec: dict) -> str:
        i = len(self.specs)
        self.specs.append(spec)
        traces = spec["data"]
        points = sum(len(t.get("x") or ()) for t in traces)
        return f'<div class="chart" id="chart{i}" data-traces="{len(traces)}" data-points="{points}"></div>'

    def section(self, title: str, spec: dict | None, *, heading: bool = True) -> None:
        if spec is None:
            if heading:
                self.add(f"<h2>{html.escape(title)}</h2><p class=\"muted\">Nothing stored to draw.</p>")
            return
        self.add(f"<h2>{html.escape(title)}</h2>" + self.chart(spec))

    def html(self, title: str, script: str) -> str:
        figures = _script_json([{"id": f"chart{i}", **spec} for i, spec in enumerate(self.specs)])
        if script == INLINE:
            lib = f"<script>{plotly_js()}</script>"
        else:
            lib = f'<script src="{html.escape(script)}"></script>'
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
                f"<body data-charts=\"{len(self.specs)}\">" + "\n".join(self.parts) + lib
                + f"<script>{_BOOT.replace('FIGURES', figures)}</script></body></html>\n")


# Draws every chart; each chart div then says how many traces plotly drew (data-rendered), and the body how
# many charts were drawn (data-charts-rendered): what the browser tests read from the DOM.
_BOOT = """(function(){var figs=FIGURES,done=0;var cfg={displaylogo:false,responsive:true};
figs.forEach(function(f){var el=document.getElementById(f.id);
Plotly.newPlot(el,f.data,f.layout,cfg).then(function(gd){gd.setAttribute('data-rendered',String(gd._fullData.length));
done+=1;document.body.setAttribute('data-charts-rendered',String(done));});});})();"""


def _script_json(obj) -> str:
    """JSON that is safe inside ``<script>``: no ``</script>``, ``<!--`` or line separators can end it early."""
    text = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return text


def _stream_label(data: ReportData) -> str:
    parts = [f"version {data.version}" if data.version else "", f"segment {data.segment}" if data.segment else ""]
    label = ", ".join(p for p in parts if p)
    return f' <span class="muted">{html.escape(label)}</span>' if label else ""


def _period(data: ReportData) -> str:
    if not data.windows:
        return "No windows."
    first, last = data.windows[0][0], data.windows[-1][0]
    drifted = sum(1 for r, _ in data.windows if r.get("drifted"))
    return (f"{len(data.windows)} windows from {first.get('window_start')} to {last.get('window_end')}, "
            f"{drifted} drifted. ")


def _reference_line(data: ReportData) -> str:
    if not data.reference:
        return "No reference profile: the window side only."
    return f"Reference: {data.reference_note or 'the profile given'}."


def _lead(data: ReportData) -> str:
    head, rest = headline(data), sentences(data)
    ok = data.drift_onset() is None
    text = head if not rest else head.rstrip(".") + ": " + "; ".join(rest) + "."
    return f'<p class="lead{" ok" if ok else ""}" id="lead">{html.escape(text)}</p>'


def _flag_table(result: Mapping) -> str:
    rows = [f for f in flags(result)]
    if not rows:
        return ""
    rows.sort(key=lambda f: (not f.drifted, f.p_value if f.p_value is not None else 1.0))
    e = html.escape
    body = "".join(
        f'<tr><td>{e(f.detector)}</td><td class="{"flag" if f.drifted else ""}">{e(f.feature or "-")}</td>'
        f'<td class="n">{e(num(f.statistic))}</td><td class="n">{e(num(f.p_value, 2))}</td>'
        f"<td>{'drifted' if f.drifted else ''}</td></tr>" for f in rows)
    return (f"<p>Tests of the window {e(hhmm(result.get('window_start')))} (p-values adjusted for multiple testing):</p>"
            f'<table id="tests"><tr><th>detector</th><th>feature</th><th class="n">statistic</th>'
            f'<th class="n">p-value</th><th></th></tr>{body}</table>')


def _tokens(evidence) -> str:
    e = html.escape
    out = ["<h2>Shifted tokens</h2>"]
    if evidence is None or not (evidence.tokens_rising or evidence.tokens_falling):
        out.append('<p class="muted">No token passed the privacy floor, or token evidence is turned off.</p>')
        return "".join(out)
    out.append(f'<p class="muted">Tokens from the {e(evidence.token_source or "?")}; each seen in at least the '
               "privacy floor of distinct events of the window.</p>")
    rows = []
    for label, shifts in (("rising", evidence.tokens_rising), ("falling", evidence.tokens_falling)):
        for s in shifts:
            ratio = "new" if s.ratio is None else f"{s.ratio:.2f}x"
            rows.append(f"<tr><td>{label}</td><td><code>{e(s.token)}</code></td>"
                        f'<td class="n">{s.window_events}/{s.window_total}</td>'
                        f'<td class="n">{s.reference_events}/{s.reference_total}</td><td class="n">{e(ratio)}</td>'
                        f'<td class="n">{s.log_odds:.2f}</td><td class="n">{s.z:.1f}</td></tr>')
    out.append('<table id="tokens"><tr><th></th><th>token</th><th class="n">window events</th>'
               '<th class="n">reference events</th><th class="n">ratio</th><th class="n">log-odds</th>'
               f'<th class="n">z</th></tr>{"".join(rows)}</table>')
    return "".join(out)


def _segments(data: ReportData, links: Mapping[str, str] | None) -> str:
    if not data.segments:
        return ""
    e = html.escape
    rows = []
    for segment, results in sorted(data.segments.items()):
        last = results[-1] if results else {}
        names = ", ".join(f.name for f in flags(last) if f.drifted) or "-"
        label = e(segment or "(no segment)")
        if links and segment in links:
            label = f'<a href="{e(links[segment])}">{label}</a>'
        drifted = sum(1 for r in results if r.get("drifted"))
        rows.append(f'<tr><td>{label}</td><td class="n">{len(results)}</td><td class="n">{drifted}</td>'
                    f"<td>{e(names)}</td></tr>")
    return ('<h2>Segments</h2><table id="segments"><tr><th>segment</th><th class="n">windows</th>'
            f'<th class="n">drifted</th><th>flagged in its latest window</th></tr>{"".join(rows)}</table>')


def _exemplars(model: str, result: Mapping, evidence) -> str:
    e = html.escape
    command = f"nlpmon examples --model {shlex.quote(model)} --window {shlex.quote(str(result.get('window_start')))}"
    out = ["<h2>Exemplars</h2>"]
    if evidence is None or not evidence.exemplars:
        out.append('<p class="muted">No exemplar pointers stored for this window.</p>')
        return "".join(out)
    out.append(f"<p>The {len(evidence.exemplars)} events of this window most unlike the reference (by "
               f"{e(evidence.exemplar_score or '?')}), by where they are; their text is never stored. Fetch them "
               f"from the source with:</p><pre id=\"examples-command\">{e(command)}</pre>")
    rows = "".join(f'<tr><td><code>{e(x.position)}</code></td><td>{e(x.request_id or "-")}</td>'
                   f'<td class="n">{x.score:.3g}</td></tr>' for x in evidence.exemplars)
    out.append(f'<table id="exemplars"><tr><th>position</th><th>request id</th><th class="n">score</th></tr>{rows}</table>')
    return "".join(out)
