"""The report in a real headless browser (Debian chromium): the file and the served page load without a
console line, fetch nothing, draw every chart with data, and the screenshot is not blank."""

from __future__ import annotations

import re

import numpy as np
import pytest

from monitor.report import load_report, render_report
from monitor.report.server import ReportServer
from tests.fixtures.browser import Page, load, png_rgb
from tests.fixtures.report_data import MODEL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def check_page(page: Page) -> str:
    """Assert what every report page must show in a browser; its DOM."""
    assert page.console == [], page.console  # the page logs nothing: no error, no warning, no message
    assert page.fetched == [], f"the page tried to fetch {page.fetched}"
    dom = page.dom
    expected = int(re.search(r'<body data-charts="(\d+)"', dom).group(1))
    assert expected >= 10 and f'data-charts-rendered="{expected}"' in dom  # every chart was drawn by plotly
    charts = re.findall(r'data-traces="(\d+)" data-points="(\d+)"[^>]*data-rendered="(\d+)"', dom)
    assert len(charts) == expected
    assert all(int(traces) == int(rendered) > 0 and int(points) > 0 for traces, points, rendered in charts)
    assert dom.count('class="main-svg"') >= 2 * expected  # plotly's SVG layers exist for each chart
    pixels = png_rgb(page.png)
    assert pixels.shape[:2] == (1400, 1280)
    ink = (pixels.min(axis=2) < 200).mean()  # share of pixels that are not white-ish: text, lines, fills
    assert ink > 0.03 and float(np.std(pixels)) > 10, (ink, np.std(pixels))
    return dom


def test_the_report_file_opens_offline_and_draws_everything(drifted, tmp_path):
    store, _ = drifted
    path = tmp_path / "report.html"
    path.write_text(render_report(load_report(store, model=MODEL)), encoding="utf-8")
    dom = check_page(load(path.as_uri(), height=1400))
    assert "Input drift since" in dom


def test_the_served_page_of_a_drifted_window_names_the_flagged_features(drifted):
    store, info = drifted
    with ReportServer(store, host="127.0.0.1", port=0) as server:
        url = f"http://127.0.0.1:{server.port}/report?model={MODEL}&version=3&window={info['first_drifted']}"
        dom = check_page(load(url, height=1400))
    lead = re.search(r'<p class="lead" id="lead">(.*?)</p>', dom).group(1)
    assert lead.startswith(f"Input drift since {info['first_drifted'][11:16]}")
    for feature in ("char_length", "word_count", "oov_rate"):
        assert f"({feature} median" in lead
    flagged = re.findall(r'<td class="flag">([^<]+)</td>', re.search(r'<table id="tests">.*?</table>', dom).group(0))
    assert sorted(flagged) == ["-", "char_length", "oov_rate", "word_count"]  # "-": the confidence test


def test_the_browser_helper_sees_console_lines_fetches_and_colours(tmp_path):
    """The checks above can fail: a page that logs, fetches and paints one colour is caught and decoded."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body style="margin:0;background:rgb(10,200,30)"><img src="http://cdn.example.org/x.png">'
                    '<script>console.error("boom")</script></body></html>')
    got = load(page.as_uri(), width=300, height=200, budget_ms=2000)
    assert any('"boom"' in line for line in got.console)
    assert "cdn.example.org" in got.fetched
    pixels = png_rgb(got.png)
    assert pixels.shape == (200, 300, 3)
    assert (pixels[150:, 100:] == (10, 200, 30)).all()  # away from the broken-image icon
