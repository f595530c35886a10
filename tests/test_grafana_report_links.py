"""The drift panels link to the report server (issue 20): a data link per series, to that series' report over
the dashboard's time range, through the ``report_url`` variable."""

from __future__ import annotations

import re

from tests.test_grafana import dashboard, exprs, helpers, panels, variables

# A drift panel: it plots a drift test's figures (nlp_drift_*, nlp_embedding_* series).
DRIFT_METRIC = re.compile(r"^nlp_(drift|embedding)_")
REPORT_LINK = ("${report_url}/report?model=${__field.labels.model}&version=${__field.labels.version}"
               "&from=${__from}&to=${__to}")


def drift_panels() -> list[dict]:
    return [p for p in panels() if any(DRIFT_METRIC.match(n) for e in exprs(p) for n in helpers.metric_names(e))]


def test_every_drift_panel_links_to_the_report_of_its_series():
    found = drift_panels()
    assert {p["title"] for p in found} >= {"Drift flags", "Drift p-value per feature", "Embedding drift: MMD p-value"}
    for p in found:
        links = p["fieldConfig"]["defaults"].get("links", [])
        assert [link["url"] for link in links] == [REPORT_LINK], p["title"]
        # The link takes the clicked series' model and version: every query keeps those labels.
        for expr in exprs(p):
            aggregation = re.match(r"\s*\w+ by \(([^)]*)\)", expr)
            assert aggregation is None or {"model", "version"} <= {s.strip() for s in aggregation.group(1).split(",")}, (
                p["title"], expr)


def test_report_url_is_a_variable_with_a_default_and_the_dashboard_links_the_index():
    v = variables()["report_url"]
    assert v["type"] == "textbox" and re.fullmatch(r"https?://[^/\s]+", v["query"]) and v["current"]["value"] == v["query"]
    assert [link["url"] for link in dashboard()["links"]] == ["${report_url}/"]
    # Nothing else links to the report server with another base.
    text = str(dashboard())
    assert text.count("/report?") == len(drift_panels())
