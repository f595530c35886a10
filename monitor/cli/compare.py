"""``nlpmon compare REF CUR``: the daemon's drift verdict on two data sets, for CI jobs (docs/compare.md).

Exit codes: 0 compared (drifted or not), 1 with ``--fail-on drift`` when the data drifted (``--fail-on
untested``: when the window was not tested, e.g. too few events), 2 for unusable input (one line on stderr).
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from monitor.cli.common import EXIT_OK, UsageError, add_config_flags, config_from_args
from monitor.logs import setup_logging

__all__ = ["add_parsers", "cmd_compare", "EXIT_FAILED"]

EXIT_FAILED = 1  # a --fail-on condition held
_TABLES = (".csv", ".parquet")


def add_parsers(sub) -> None:
    """Register ``compare`` on an ``argparse`` subparsers object."""
    p = sub.add_parser(
        "compare",
        help="test a data set against a reference as the daemon tests a window (for CI)",
        description="Test CUR against REF with the daemon's detectors, floors and corrections: REF becomes a "
        "reference profile as `nlpmon reference build` makes it (or REF is one already), and CUR is run through "
        "the pipeline as ONE window (docs/compare.md). Each of REF and CUR is a JSONL file of events "
        "(docs/events.md), a plain text file (one text per line), or a CSV/Parquet table (needs pandas). Exit 0 "
        "when compared, 1 when a --fail-on condition holds, 2 for unusable input.",
    )
    p.add_argument("reference", metavar="REF", help="reference data (JSONL, text lines, CSV/Parquet) or a profile JSON")
    p.add_argument("current", metavar="CUR", help="current data (JSONL, text lines, CSV/Parquet)")
    p.add_argument("--fail-on", action="append", choices=("drift", "untested"), default=[],
                   help="exit 1 when the data drifted (drift) or the window was not tested, e.g. fewer events than "
                   "window.min_events (untested); repeatable")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="also write the report as one self-contained HTML page (opens offline; docs/report.md)")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default): the verdict and one line per test; json: the whole report")
    p.add_argument("--input-format", choices=("auto", "jsonl", "text"), default="auto",
                   help="how to read REF and CUR that are not CSV/Parquet: auto (default) reads a file whose first "
                   "line is a JSON object as events, any other as one text per line")
    p.add_argument("--model", metavar="NAME", help="the model to compare when a JSONL file holds several")
    p.add_argument("--text-column", default="text", metavar="C", help="CSV/Parquet: the text column (default text)")
    p.add_argument("--prediction-column", default="prediction", metavar="C",
                   help="CSV/Parquet: the predicted class column, read when present (default prediction)")
    add_config_flags(p)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from monitor.api import Columns, CompareError, compare

    config = config_from_args(args, {"source.kind": "stdin"})  # only its model and detector settings count
    setup_logging(config.logging.level if args.log_level else "warning", config.logging.format)
    columns = Columns(text=args.text_column, prediction=args.prediction_column)
    try:
        reference = _open(args.reference, args, side="reference", profile_ok=True)
        current = _open(args.current, args, side="current", profile_ok=False)
        report = compare(reference, current, config=config, columns=columns, model=args.model)
    except CompareError as exc:
        raise UsageError(str(exc)) from None
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(report.to_dict()) + b"\n")
    else:
        sys.stdout.write(render_table(report))
    if args.output:
        try:
            report.save_html(args.output)
        except OSError as exc:
            raise UsageError(f"cannot write the report to {args.output}: {exc.strerror or exc}") from None
    failed = ("drift" in args.fail_on and report.drifted) or ("untested" in args.fail_on and not report.tested)
    return EXIT_FAILED if failed else EXIT_OK


def _open(path: str, args, *, side: str, profile_ok: bool):
    """What ``compare`` takes for a file: its path (JSONL, profile), a DataFrame (CSV/Parquet) or its lines."""
    from monitor.api.inputs import is_profile_file

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"cannot read {path}: no such file")
    if p.suffix.lower() in _TABLES:
        return _table(p)
    if is_profile_file(p):
        if not profile_ok:
            raise UsageError(f"{path} is a reference profile; CUR must be data (JSONL, text lines, CSV/Parquet)")
        return str(p)
    if args.input_format == "jsonl" or (args.input_format == "auto" and _first_line(p).startswith(b"{")):
        return str(p)
    from monitor.api import TextFile

    return TextFile(p)


def _first_line(path: Path) -> bytes:
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                return line.lstrip()
    return b""


def _table(path: Path):
    try:
        import pandas as pd
    except ImportError:
        raise UsageError(f"{path}: reading CSV/Parquet needs pandas (pip install 'nlpmon[pandas]')") from None
    try:
        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except (ValueError, ImportError, OSError) as exc:
        raise UsageError(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def render_table(report) -> str:
    """The report for a terminal: the verdict, the inputs, then one line per test (flagged ones marked)."""
    r = report.result
    if report.tested:
        verdict = "DRIFT" if report.drifted else "no drift"
    else:
        verdict = f"not tested ({report.skip_reason}: {r.events} events, window.min_events is the floor)"
    lines = [f"verdict: {verdict}"]
    for side in (report.reference, report.current):
        invalid = sum(side.invalid.values())
        lines.append(f"{'reference' if side is report.reference else 'current':<9}  {side.kind:<9} {side.name}: "
                     f"{side.events} events" + (f", {invalid} invalid" if invalid else ""))
    if report.tests:
        lines.append(f"{'test':<14} {'name':<20} {'statistic':>10} {'p':>9} {'adj. p':>9}  drifted")
    for t in report.tests:
        lines.append(f"{t.test:<14} {t.name[:20]:<20} {t.statistic:>10.4g} {_p(t.p_value):>9} "
                     f"{_p(t.p_value_adjusted):>9}  {'YES' if t.drifted else '-'}")
    return "\n".join(lines) + "\n"


def _p(x: float) -> str:
    if x == 0:
        return "<1e-300"  # below double precision
    return f"{x:.1e}" if x < 1e-3 else f"{x:.3f}"
