"""An Alertmanager webhook receiver: a loopback HTTP server that records every notification it gets."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Notification", "WebhookReceiver", "webhook_receiver"]


@dataclass(frozen=True)
class Notification:
    received_at: float  # wall clock, seconds since the epoch
    path: str  # /<receiver name> (monitor.devkit.stack.local_alertmanager_config)
    payload: dict

    def alerts(self, status: str = "firing") -> list[dict]:
        return [a for a in self.payload.get("alerts", []) if a.get("status") == status]

    def alert_names(self, status: str = "firing") -> set[str]:
        return {a["labels"].get("alertname", "") for a in self.alerts(status)}


class WebhookReceiver:
    """Notifications received so far, in arrival order; ``url`` is the base URL to give Alertmanager."""

    def __init__(self, server: ThreadingHTTPServer):
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._lock = threading.Lock()
        self._received: list[Notification] = []

    def record(self, path: str, body: bytes) -> None:
        with self._lock:
            self._received.append(Notification(time.time(), path, json.loads(body)))

    @property
    def notifications(self) -> list[Notification]:
        with self._lock:
            return list(self._received)

    def first_firing(self, alertname: str) -> Notification | None:
        return next((n for n in self.notifications if alertname in n.alert_names()), None)


@contextlib.contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """Serve on a free loopback port in a background thread for the body of the ``with`` block."""
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.record(self.path, body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = WebhookReceiver(server)
    thread = threading.Thread(target=server.serve_forever, name="webhook", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
