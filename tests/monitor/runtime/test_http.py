"""The sidecar's HTTP server: prometheus_client's exposition behind /metrics, the probes and POST hooks beside it."""

from __future__ import annotations

import gzip
import http.client
import json

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from monitor.runtime.http import HttpServer


@pytest.fixture
def server():
    registry = CollectorRegistry()
    Counter("nlpmon_test_events", "Test events.", registry=registry).inc(3)
    posts = []

    def hook(headers, body, client):
        posts.append((headers, body, client))
        return 202, {"status": "accepted"}

    with HttpServer(registry, host="127.0.0.1", port=0, readiness=lambda: (False, {"kafka_connected": False}),
                    status=lambda: {"windows": []}, post_handlers={"/reeval": hook}) as s:
        s.posts = posts
        yield s


def request(server, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_get_metrics_is_the_text_format(server):
    status, headers, body = request(server, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=")
    assert b"nlpmon_test_events_total 3.0" in body and "content-encoding" not in headers


def test_head_metrics_answers_200_with_the_headers_of_get_and_no_body(server):
    _, get_headers, get_body = request(server, "GET", "/metrics")
    status, headers, body = request(server, "HEAD", "/metrics")
    assert status == 200 and body == b""
    assert headers["content-type"] == get_headers["content-type"]
    assert int(headers["content-length"]) == len(get_body)


def test_gzip_when_the_scraper_accepts_it(server):
    status, headers, body = request(server, "GET", "/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert b"nlpmon_test_events_total 3.0" in gzip.decompress(body)


def test_openmetrics_when_the_scraper_asks_for_it(server):
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    status, headers, body = request(server, "GET", "/metrics", {"Accept": accept})
    assert status == 200 and headers["content-type"].startswith("application/openmetrics-text")
    text = body.decode()
    assert text.endswith("# EOF\n")
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "nlpmon_test_events"]
    assert family.type == "counter" and family.samples[0].value == 3


def test_probes_status_and_unknown_paths(server):
    assert request(server, "GET", "/healthz")[::2] == (200, b"ok\n")
    status, _, body = request(server, "GET", "/readyz")
    assert status == 503 and json.loads(body) == {"ready": False, "kafka_connected": False}
    status, headers, body = request(server, "HEAD", "/readyz")
    assert status == 503 and body == b"" and int(headers["content-length"]) > 0
    assert json.loads(request(server, "GET", "/status")[2]) == {"windows": []}
    status, _, body = request(server, "GET", "/nope")
    assert status == 404 and "/metrics" in json.loads(body)["endpoints"]
    assert request(server, "DELETE", "/metrics")[0] == 405


def test_post_hook_gets_headers_body_and_client(server):
    status, _, body = request(server, "POST", "/reeval", {"Authorization": "Bearer t0k"}, b'{"x": 1}')
    assert status == 202 and json.loads(body) == {"status": "accepted"}
    ((headers, posted, client),) = server.posts
    assert headers["Authorization"] == "Bearer t0k" and posted == b'{"x": 1}' and client == "127.0.0.1"
    assert request(server, "POST", "/other", body=b"")[0] == 404


def test_reeval_is_503_with_the_reason_until_the_scheduler_exists():
    """The server answers before the daemon has started (so /readyz can say why it waits); /reeval must then say
    "retry", not fail with a 500."""
    from types import SimpleNamespace

    from monitor.runtime.probes import post_reeval
    from monitor.runtime.startup import Waiting
    from sinks.prometheus import PrometheusSink

    waiting = Waiting(PrometheusSink(CollectorRegistry()))
    d = SimpleNamespace(reeval=None, waiting=waiting)
    assert post_reeval(d, {}, b"", "127.0.0.1") == (503, {
        "status": "starting", "error": "re-evaluation starts once the daemon has started; retry", "waiting_for": "startup"})
    waiting.wait("broker", "connection refused")
    code, body = post_reeval(d, {}, b"", "127.0.0.1")
    assert code == 503 and body["waiting_for"] == "waiting for broker: connection refused"
    calls = []
    d.reeval = SimpleNamespace(handle_post=lambda *a: calls.append(a) or (202, {"status": "accepted"}))
    assert post_reeval(d, {"X": "1"}, b"b", "10.0.0.1") == (202, {"status": "accepted"})
    assert calls == [({"X": "1"}, b"b", "10.0.0.1")]
