"""The sidecar's HTTP endpoints: /metrics, /healthz, /readyz, /status.

``/healthz`` answers 200 while the process can serve at all (liveness: restart me if this fails);
``/readyz`` answers 200 only when the daemon is doing its job (readiness), else 503 with the reasons as JSON;
``/status`` is JSON: the latest window result of every stream plus counters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["HttpServer"]


class HttpServer:
    """Serve the endpoints in a background thread; ``port=0`` picks a free port (see :attr:`port`)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = "0.0.0.0",
        port: int = 9108,
        readiness: Callable[[], tuple[bool, dict]] = lambda: (True, {}),
        status: Callable[[], dict] = dict,
        # POST handlers get (headers, body, client address) and answer (status code, JSON object).
        post_handlers: dict[str, Callable[[dict, bytes, str], tuple[int, dict]]] | None = None,
    ):
        handler = _make_handler(registry, readiness, status, post_handlers or {})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="nlpmon-http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "HttpServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "HttpServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _make_handler(registry, readiness, status, post_handlers):
    class Handler(BaseHTTPRequestHandler):
        server_version = "nlpmon"

        def log_message(self, format, *args):  # noqa: A002 - scrapes every few seconds would flood the log
            pass

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj) -> None:
            self._send(code, orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n", "application/json")

        def do_GET(self):  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path == "/readyz":
                ready, reasons = readiness()
                self._json(200 if ready else 503, {"ready": ready, **reasons})
            elif path == "/status":
                self._json(200, status())
            else:
                self._json(404, {"error": f"no such endpoint {path}", "endpoints": ["/metrics", "/healthz", "/readyz", "/status"]})

        def do_POST(self):  # noqa: N802
            path = self.path.split("?", 1)[0]
            handler = post_handlers.get(path)
            if handler is None:
                self._json(404, {"error": f"no such endpoint {path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1 << 20)) if length else b""
            code, obj = handler(dict(self.headers), body, self.client_address[0])
            self._json(code, obj)

    return Handler
