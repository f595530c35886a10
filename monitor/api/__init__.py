"""The Python API: the daemon's checks on data sets, for notebooks, batch jobs and CI (docs/compare.md).

``compare(reference, current)`` tests a data set against a reference as the daemon tests a window against its
reference profile, with the same code (``comparing``); what it accepts (``inputs``) and the frozen report it
returns (``report``)::

    from monitor.api import compare
    report = compare(reference_texts, current_texts)
    report.drifted, report.drifted_tests, report.to_dict()
"""

from monitor.api.comparing import COMPARE_WINDOW_EVENTS, compare, compare_config
from monitor.api.inputs import TEXT_ONLY_CLASS, Columns, CompareError, TextFile
from monitor.api.report import CompareReport, InputSummary, TestResult

__all__ = ["compare", "compare_config", "CompareReport", "TestResult", "InputSummary", "Columns", "TextFile", "CompareError",
           "COMPARE_WINDOW_EVENTS", "TEXT_ONLY_CLASS"]
