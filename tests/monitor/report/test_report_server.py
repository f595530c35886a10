"""The report server over a real store: index, reports by window, period and Grafana's from/to, 404/400/500."""

from __future__ import annotations

import logging
import re
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from monitor.report.server import ReportServer, parse_since_ms
from tests.fixtures import report_data
from tests.fixtures.report_data import MODEL


def get(url: str, method: str = "GET") -> tuple[int, str, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


@pytest.fixture(scope="module")
def server(drifted):
    store, info = drifted
    with ReportServer(store, host="127.0.0.1", port=0) as s:
        yield f"http://127.0.0.1:{s.port}", info


def test_the_index_links_every_model_to_its_report(server):
    base, info = server
    code, body, _ = get(base + "/")
    assert code == 200
    assert '<a href="/report?model=sentiment&amp;version=3">sentiment</a>' in body
    assert info["last"] in body and "drifted" in body
    assert get(base + "/healthz")[:2] == (200, "ok\n")


def test_grafana_data_links_open_the_report_of_the_dashboard_range(server):
    base, info = server
    lo = report_data.START_MS + 30 * report_data.FIVE_MIN
    hi = report_data.START_MS + 48 * report_data.FIVE_MIN
    code, page, headers = get(f"{base}/report?model=sentiment&version=3&from={lo}&to={hi}&var-extra=1")
    assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "18 windows" in page and "Input drift since" in page
    # The flagged features are named, and plotly.js comes from this server, once, cached.
    assert all(f in page for f in ("char_length", "word_count", "oov_rate"))
    (script,) = re.findall(r'<script src="([^"]+)"></script>', page)
    code, js, headers = get(base + script)
    assert code == 200 and len(js) > 1_000_000 and "immutable" in headers["Cache-Control"]
    # Segment links carry the stream's parameters.
    assert '<a href="/report?model=sentiment&amp;version=3&amp;segment=fr">fr</a>' in page


def test_a_window_a_duration_and_head(server):
    base, info = server
    code, page, _ = get(f"{base}/report?{urlencode({'model': MODEL, 'window': info['first_drifted']})}")
    assert code == 200 and f"Input drift since {info['first_drifted'][11:16]}" in page
    code, body, headers = get(f"{base}/report?model={MODEL}&since=1000000w", method="HEAD")
    assert code == 200 and body == "" and int(headers["Content-Length"]) > 10_000
    assert parse_since_ms("1h30m", now_ms=10_000_000) == 10_000_000 - 5_400_000
    assert parse_since_ms("2025-11-25T10:00:00Z", now_ms=0) == report_data.START_MS


@pytest.mark.parametrize("query, code, message", [
    ("model=nope", 404, "no stored windows for model &#x27;nope&#x27;"),
    ("model=sentiment&version=9", 404, "version &#x27;9&#x27;"),
    ("model=sentiment&window=2025-11-25T10:02:00Z", 404, "no window starting at"),
    ("model=sentiment&from=now-6h&to=now", 400, "from must be epoch milliseconds"),
    ("model=sentiment&since=someday", 400, "is not a time"),
    ("model=sentiment&window=2025-11-25T10:00:00Z&since=1h", 400, "not both"),
    ("version=3", 400, "the model parameter is required"),
    ("model=%3Cscript%3E", 404, "&lt;script&gt;"),
])  # fmt: skip
def test_unknown_is_404_and_bad_parameters_400_as_pages(server, query, code, message):
    base, _ = server
    got, page, headers = get(f"{base}/report?{query}")
    assert (got, headers["Content-Type"]) == (code, "text/html; charset=utf-8")
    assert message in page and "<script>" not in page and "Traceback" not in page
    assert get(base + "/nowhere")[0] == 404 and get(base + "/", method="POST")[0] == 405


class _BrokenStore:
    """A store whose every read fails in a way nobody planned for."""

    def streams(self):
        raise RuntimeError("disk on fire at /var/secret/path")


def test_an_internal_error_is_a_500_page_without_details_and_one_log_line(caplog):
    with ReportServer(_BrokenStore(), host="127.0.0.1", port=0) as s, caplog.at_level(logging.ERROR, "nlpmon"):
        code, page, _ = get(f"http://127.0.0.1:{s.port}/report?model=m")
        assert get(f"http://127.0.0.1:{s.port}/")[0] == 500
    assert code == 500 and "The report could not be built." in page
    assert "disk on fire" not in page and "Traceback" not in page
    lines = [r for r in caplog.records if r.getMessage() == "report: internal error"]
    assert len(lines) == 2 and "disk on fire" in lines[0].fields["error"]
