"""The report: what changed in a stream, as one self-contained HTML page (docs/report.md).

Two doors, one renderer: ``nlpmon report`` writes the page to a file, ``nlpmon report serve`` (or the sidecar's
``[report]`` server) answers it over HTTP. :func:`load_report` reads a :class:`ReportData` from the store;
:func:`render_report` turns any ``ReportData`` (a notebook can build one with :meth:`ReportData.build`) into
HTML without I/O.
"""

from monitor.report.data import ReportData
from monitor.report.load import NotFound, load_report
from monitor.report.render import render_report

__all__ = ["ReportData", "NotFound", "load_report", "render_report"]
