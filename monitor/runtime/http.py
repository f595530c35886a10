"""The sidecar's HTTP endpoints: /metrics, /healthz, /readyz, /status, and POST hooks such as /reeval.

``/metrics`` is prometheus_client's own exposition (``make_wsgi_app``): it negotiates OpenMetrics from the
``Accept`` header, gzips when the scraper accepts it and honours ``name[]`` filters; ``HEAD`` answers like
``GET`` without the body. ``/healthz`` answers 200 while the daemon's loop makes progress or waits legitimately
(liveness: restart me if this fails; :mod:`monitor.runtime.heartbeat`), else 503 with a one-line reason; ``/readyz`` answers 200 only when the daemon is doing its job (readiness), else 503 with the
reasons as JSON; ``/status`` is JSON: the latest window result of every stream plus counters.
"""

from __future__ import annotations

from http import HTTPStatus
from collections.abc import Callable

import orjson
from prometheus_client import CollectorRegistry, make_wsgi_app

from monitor.wsgi import BackgroundServer

__all__ = ["HttpServer"]

ENDPOINTS = ["/metrics", "/healthz", "/readyz", "/status"]
# A POST body larger than this is cut: the hooks take small JSON requests, never uploads.
MAX_POST_BYTES = 1 << 20

PostHandler = Callable[[dict, bytes, str], tuple[int, dict]]


class HttpServer(BackgroundServer):
    """Serve the endpoints in a background thread; ``port=0`` picks a free port (see :attr:`port`)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = "0.0.0.0",
        port: int = 9108,
        readiness: Callable[[], tuple[bool, dict]] = lambda: (True, {}),
        # (alive, one-line reason): a Heartbeat's check; the default is alive while HTTP is served.
        liveness: Callable[[], tuple[bool, str]] = lambda: (True, "ok"),
        status: Callable[[], dict] = dict,
        # POST handlers get (headers, body, client address) and answer (status code, JSON object).
        post_handlers: dict[str, PostHandler] | None = None,
    ):
        app = _App(make_wsgi_app(registry), readiness, status, post_handlers or {}, liveness=liveness)
        super().__init__(app, host=host, port=port, name="nlpmon-http")


class _App:
    """The WSGI application: /metrics from prometheus_client, the probes and POST hooks beside it."""

    def __init__(self, metrics_app, readiness, status, post_handlers: dict[str, PostHandler], *, liveness):
        self._metrics = metrics_app
        self._liveness = liveness
        self._readiness = readiness
        self._status = status
        self._post = post_handlers

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO") or "/", environ["REQUEST_METHOD"]
        if method == "POST":
            return self._post_hook(path, environ, start_response)
        if method not in ("GET", "HEAD"):
            return _reply(start_response, 405, b"", content_type="text/plain", method=method, extra=[("Allow", "GET, HEAD, POST")])
        if path == "/metrics":
            return self._metrics_reply(environ, start_response, method)
        if path == "/healthz":
            alive, reason = self._liveness()
            return _reply(start_response, 200 if alive else 503, reason.encode() + b"\n",
                          content_type="text/plain; charset=utf-8", method=method)
        if path == "/readyz":
            ready, reasons = self._readiness()
            return _json(start_response, 200 if ready else 503, {"ready": ready, **reasons}, method)
        if path == "/status":
            return _json(start_response, 200, self._status(), method)
        return _json(start_response, 404, {"error": f"no such endpoint {path}", "endpoints": ENDPOINTS}, method)

    def _metrics_reply(self, environ, start_response, method: str):
        if method == "GET":
            return self._metrics(environ, start_response)
        # HEAD: prometheus_client answers GET only; render as for GET and send the headers alone.
        captured: list = []
        body = b"".join(self._metrics({**environ, "REQUEST_METHOD": "GET"},
                                      lambda status, headers, exc_info=None: captured.extend((status, headers))))
        status, headers = captured
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return []

    def _post_hook(self, path: str, environ, start_response):
        handler = self._post.get(path)
        if handler is None:
            return _json(start_response, 404, {"error": f"no such endpoint {path}"}, "POST")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(min(length, MAX_POST_BYTES)) if length > 0 else b""
        code, obj = handler(_request_headers(environ), body, environ.get("REMOTE_ADDR", ""))
        return _json(start_response, code, obj, "POST")


def _request_headers(environ) -> dict:
    """The request headers under their HTTP names (``Authorization``, ``Content-Type``)."""
    out = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            out[key.replace("_", "-").title()] = environ[key]
    return out


def _reply(start_response, code: int, body: bytes, *, content_type: str, method: str, extra: list = ()):
    start_response(f"{code} {HTTPStatus(code).phrase}",
                   [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra])
    return [] if method == "HEAD" else [body]


def _json(start_response, code: int, obj, method: str):
    return _reply(start_response, code, orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n",
                  content_type="application/json", method=method)
