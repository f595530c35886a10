"""Report render time for a day of 5-minute windows (288), target < 2 s (median), and the page's size.

    .venv/bin/python bench/report.py [--windows 288] [--repeats 7]

A SQLite store holds one drifted stream with evidence, two segments, its profile and labels
(tests/fixtures/report_data.py). Timed, median of the repeats: ``load_report`` (the store's reads),
``render_report`` with plotly.js inlined (the file) and served apart (the page), and, as the baseline in the
same process, ``orjson.dumps`` of the same windows' result JSON (the least any page of this data costs).
The target holds for load + render, what ``nlpmon report`` and a served page spend.
Prints the HTML sizes: with plotly.js inlined, without it, and gzipped.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # before bench/: bench/detectors.py would shadow the package

import orjson  # noqa: E402

from monitor.report import load_report, render_report  # noqa: E402
from monitor.report.render import plotly_js  # noqa: E402
from sinks.sql import SqlStore  # noqa: E402
from tests.fixtures.report_data import MODEL, fill_store  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=288)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    plotly_js()  # read once per process, as a server would have
    with tempfile.TemporaryDirectory() as tmp:
        with SqlStore(f"sqlite:///{tmp}/r.db") as store:
            store.create_schema()
            fill_store(store, windows=args.windows)
            load_s, data = timed(lambda: load_report(store, model=MODEL), args.repeats)
    render_s, page = timed(lambda: render_report(data), args.repeats)
    served_s, served = timed(lambda: render_report(data, script="/static/plotly.js"), args.repeats)
    base_s, _ = timed(lambda: orjson.dumps([r for r, _ in data.windows]), args.repeats)
    page_b, served_b = page.encode(), served.encode()
    print(f"windows {len(data.windows)} (+ {sum(len(v) for v in data.segments.values())} of segments), "
          f"median of {args.repeats}")
    print(f"load_report            {load_s * 1000:8.1f} ms")
    print(f"render_report (file)   {render_s * 1000:8.1f} ms")
    print(f"render_report (served) {served_s * 1000:8.1f} ms")
    print(f"load + render (file)   {(load_s + render_s) * 1000:8.1f} ms   target < 2000 ms")
    print(f"orjson.dumps baseline  {base_s * 1000:8.1f} ms   render / baseline {render_s / base_s:.1f}x")
    print(f"HTML with plotly.js    {len(page_b) / 1e6:8.2f} MB   gzipped {len(gzip.compress(page_b)) / 1e6:.2f} MB")
    print(f"HTML without plotly.js {len(served_b) / 1e3:8.1f} kB   gzipped {len(gzip.compress(served_b)) / 1e3:.1f} kB")
    return 0 if load_s + render_s < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
