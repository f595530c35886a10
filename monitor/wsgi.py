"""A WSGI application served on a background thread: the sidecar's probes and the report pages alike.

The standard library's ``wsgiref`` server, one thread per request (a slow scraper or a large report must not
hold up the probes; handler threads die with the process), and no access log (scrapes every few seconds would
flood it; the applications log their own errors, once).
"""

from __future__ import annotations

import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

__all__ = ["BackgroundServer"]


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - see the module docstring
        pass


class BackgroundServer:
    """Serve ``app`` on ``host:port`` in a thread named ``name``; ``port=0`` picks a free port (:attr:`port`)."""

    def __init__(self, app, *, host: str, port: int, name: str):
        self._server = make_server(host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
        # poll_interval: how long stop() may wait for the serving loop (its default, 0.5 s, delays every exit).
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=name, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
