"""The read-only report server: ``nlpmon report serve``, and the sidecar's ``[report]`` server (docs/report.md).

``/`` lists the stored models with their latest windows; ``/report?model=M&version=V&segment=S&window=START``
or ``&since=6h&until=T`` or Grafana's ``&from=<epoch ms>&to=<epoch ms>`` answers the report page (the same
renderer as the file, loading plotly.js from ``/static/``); ``/healthz`` answers 200. An unknown model or
window is a 404 page, a bad parameter a 400 page; anything else is logged in one line and answered with a
500 page that says nothing more: never a traceback.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from urllib.parse import parse_qs, urlencode

from monitor.ingest.reference import Profile
from monitor.logs import log_event
from monitor.report.load import NotFound, load_report, parse_time_ms
from monitor.report.render import plotly_js, plotly_version, render_report
from monitor.wsgi import BackgroundServer
from sinks.sql import StoreUnavailable

__all__ = ["ReportApp", "ReportServer", "parse_since_ms"]

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
PARAMS = ("model", "version", "segment", "window", "since", "until", "from", "to")


def parse_since_ms(text: str, *, now_ms: int) -> int:
    """``6h``, ``30m``, ``1d12h`` back from ``now_ms``, else a time as :func:`parse_time_ms` reads it."""
    text = text.strip()
    if _DURATION.fullmatch(text):
        return now_ms - int(sum(float(n) * _UNIT_MS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text)))
    return parse_time_ms(text, "since")


class ReportApp:
    """The WSGI application over a store (anything with the ``SqlStore`` read API)."""

    def __init__(self, store, *, profiles: Mapping[str, Profile] | None = None, clock: Callable[[], float] = time.time):
        self._store = store
        # The sidecar's file profiles (reference.paths), the reference where the store has no active one.
        self._profiles = profiles or {}
        self._clock = clock
        self._script = f"/static/plotly-{plotly_version()}.min.js"

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO") or "/", environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _reply(start_response, 405, _page("Method not allowed", "This server only reads."), method,
                          extra=[("Allow", "GET, HEAD")])
        try:
            if path == "/healthz":
                return _reply(start_response, 200, b"ok\n", method, content_type="text/plain; charset=utf-8")
            if path == self._script:
                return _reply(start_response, 200, plotly_js().encode(), method, content_type="text/javascript",
                              extra=[("Cache-Control", "public, max-age=31536000, immutable")])
            if path == "/":
                return _reply(start_response, 200, self._index().encode(), method)
            if path == "/report":
                return _reply(start_response, 200, self._report(environ.get("QUERY_STRING", "")).encode(), method)
            return _reply(start_response, 404, _page("Not found", f"No page at {path}; see the index at /."), method)
        except NotFound as exc:
            return _reply(start_response, 404, _page("Not found", f"{exc}. The index at / lists what is stored."), method)
        except ValueError as exc:
            return _reply(start_response, 400, _page("Bad request", str(exc)), method)
        except StoreUnavailable as exc:
            log_event(logging.WARNING, "report: store unavailable", error=type(exc).__name__)
            return _reply(start_response, 503, _page("Store unavailable", "The store does not answer; retry."), method)
        except Exception as exc:  # noqa: BLE001 - a page must never show a traceback
            log_event(logging.ERROR, "report: internal error", path=path, error=f"{type(exc).__name__}: {exc}")
            return _reply(start_response, 500, _page("Internal error", "The report could not be built."), method)

    def _report(self, query: str) -> str:
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items() if k in PARAMS}
        model = params.get("model", "").strip()
        if not model:
            raise ValueError("the model parameter is required: /report?model=NAME")
        since, until = params.get("since"), params.get("until")
        for key in ("from", "to"):  # Grafana's ${__from} / ${__to}: epoch milliseconds
            if params.get(key):
                if not params[key].isdigit():
                    raise ValueError(f"{key} must be epoch milliseconds, got {params[key]!r}")
                since, until = (int(params[key]), until) if key == "from" else (since, int(params[key]))
        if isinstance(since, str) and since:
            since = parse_since_ms(since, now_ms=int(self._clock() * 1000))
        data = load_report(self._store, model=model, version=params.get("version") or None,
                           segment=params.get("segment") or None, window=params.get("window") or None,
                           since=since or None, until=until or None, profile=self._profiles.get(model))
        base = {"model": model, "version": data.version or ""}
        links = {s: "/report?" + urlencode({**base, "segment": s}) for s in data.segments if s}
        return render_report(data, script=self._script, links=links)

    def _index(self) -> str:
        e = html.escape
        rows = []
        for model, version in self._store.streams():
            latest = self._store.history(model, version, limit=1)
            r = latest[-1] if latest else {}
            link = "/report?" + urlencode({"model": model, "version": version})
            state = '<span class="flag">drifted</span>' if r.get("drifted") else "ok"
            rows.append(f'<tr><td><a href="{e(link)}">{e(model)}</a></td><td>{e(version)}</td>'
                        f"<td>{e(str(r.get('window_start', '-')))}</td><td>{state}</td></tr>")
        table = ("<table><tr><th>model</th><th>version</th><th>latest window</th><th></th></tr>"
                 + "".join(rows) + "</table>") if rows else "<p>The store holds no window results yet.</p>"
        return _document("nlpmon reports", f"<h1>nlpmon reports</h1>{table}")


def _document(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            "<style>body{font:14px system-ui,sans-serif;margin:24px}td,th{padding:3px 10px;text-align:left}"
            f".flag{{color:#d62728}}</style></head><body>{body}</body></html>\n")


def _page(title: str, message: str) -> bytes:
    e = html.escape
    return _document(title, f'<h1>{e(title)}</h1><p id="message">{e(message)}</p><p><a href="/">Index</a></p>').encode()


def _reply(start_response, code: int, body: bytes, method: str, *, content_type="text/html; charset=utf-8", extra=()):
    start_response(f"{code} {HTTPStatus(code).phrase}",
                   [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra])
    return [] if method == "HEAD" else [body]


class ReportServer(BackgroundServer):
    """Serve :class:`ReportApp` in a background thread; ``port=0`` picks a free port (:attr:`port`)."""

    def __init__(self, store, *, host: str = "0.0.0.0", port: int = 8080, profiles: Mapping[str, Profile] | None = None):
        super().__init__(ReportApp(store, profiles=profiles), host=host, port=port, name="nlpmon-report")
