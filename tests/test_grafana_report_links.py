"""The drift panels link to the report server (issue 20): a data link per series, to that series' report over
the dashboard's time range, through the ``report_url`` variable. The link carries the series' segment
(window.by_segment), so a segment's series opens that segment's report and a segment-less one the stream's."""

from __future__ import annotations

import re
import urllib.request
from urllib.parse import quote

import pytest

from monitor.report.server import ReportServer
from sinks.sql import SqlStore
from tests.fixtures.report_data import FIVE_MIN, MODEL, START_MS, VERSION, fill_store
from tests.test_grafana import dashboard, exprs, helpers, panels, variables

# A drift panel: it plots a drift test's figures (nlp_drift_*, nlp_embedding_* series).
DRIFT_METRIC = re.compile(r"^nlp_(drift|embedding)_")
REPORT_LINK = ("${report_url}/report?model=${__field.labels.model}&version=${__field.labels.version}"
               "&segment=${__field.labels.segment}&from=${__from}&to=${__to}")
# The labels the link reads: every aggregation in a drift panel keeps them.
LINK_LABELS = {"model", "version", "segment"}


def drift_panels() -> list[dict]:
    return [p for p in panels() if any(DRIFT_METRIC.match(n) for e in exprs(p) for n in helpers.metric_names(e))]


def test_every_drift_panel_links_to_the_report_of_its_series():
    found = drift_panels()
    assert {p["title"] for p in found} >= {"Drift flags", "Drift p-value per feature", "Embedding drift: MMD p-value"}
    for p in found:
        links = p["fieldConfig"]["defaults"].get("links", [])
        assert [link["url"] for link in links] == [REPORT_LINK], p["title"]
        # The link takes the clicked series' model, version and segment: every query keeps those labels.
        for expr in exprs(p):
            aggregation = re.match(r"\s*\w+ by \(([^)]*)\)", expr)
            assert aggregation is None or LINK_LABELS <= {s.strip() for s in aggregation.group(1).split(",")}, (
                p["title"], expr)


def test_report_url_is_a_variable_with_a_default_and_the_dashboard_links_the_index():
    v = variables()["report_url"]
    assert v["type"] == "textbox" and re.fullmatch(r"https?://[^/\s]+", v["query"]) and v["current"]["value"] == v["query"]
    assert [link["url"] for link in dashboard()["links"]] == ["${report_url}/"]
    # Nothing else links to the report server with another base.
    text = str(dashboard())
    assert text.count("/report?") == len(drift_panels())


def grafana_link(url: str, base: str, labels: dict[str, str], lo: int, hi: int) -> str:
    """``url`` as Grafana interpolates a data link of a series with ``labels``: a label the series lacks (a
    segment-less stream carries no segment label) becomes "" and values are percent-encoded (the data-link
    default since Grafana 8.5)."""
    field = {f"${{__field.labels.{k}}}": quote(labels.get(k, ""), safe="") for k in LINK_LABELS}
    for var, value in {"${report_url}": base, "${__from}": str(lo), "${__to}": str(hi), **field}.items():
        url = url.replace(var, value)
    assert "${" not in url, url
    return url


@pytest.fixture(scope="module")
def report_server(tmp_path_factory):
    with SqlStore(f"sqlite:///{tmp_path_factory.mktemp('links') / 'nlpmon.db'}") as store:
        store.create_schema()
        fill_store(store, windows=12, drift_from=6)
        with ReportServer(store, host="127.0.0.1", port=0) as server:
            yield f"http://127.0.0.1:{server.port}"


@pytest.mark.parametrize("segment", ["fr", None])
def test_a_series_link_opens_the_report_of_its_segment_or_of_the_whole_stream(report_server, segment):
    labels = {"model": MODEL, "version": VERSION, **({"segment": segment} if segment else {})}
    lo, hi = START_MS, START_MS + 12 * FIVE_MIN
    url = grafana_link(REPORT_LINK, report_server, labels, lo, hi)
    assert ("&segment=fr&" if segment else "&segment=&") in url
    with urllib.request.urlopen(url, timeout=30) as reply:
        assert reply.status == 200
        page = reply.read().decode()
    # A segment's report names its segment and lists no segments; the stream's (empty segment) lists them,
    # each linked to its own report.
    assert ("segment fr" in page) == (segment is not None)
    assert ('<table id="segments">' in page) == (segment is None)
