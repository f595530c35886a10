"""``nlpmon report``: the report of a stream as a self-contained HTML file; ``nlpmon report serve``: as pages."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path

from monitor.cli.common import SINCE_HELP, EXIT_OK, UsageError, add_config_flags, config_from_args, parse_since, read_store
from monitor.logs import log_event, setup_logging

__all__ = ["add_parsers", "cmd_report"]


def add_parsers(sub) -> None:
    """Register ``report`` (and ``report serve``) on an ``argparse`` subparsers object."""
    p = sub.add_parser(
        "report",
        help="write the report of a stream as one HTML file, or serve reports (report serve)",
        description="Write what changed in a model's windows as one self-contained HTML file that opens offline: "
        "plain sentences first, then each test over the period, reference-vs-window distributions, shifted "
        "tokens, embeddings, confidence, class mix, latency, accuracy, segments and the exemplar pointers "
        "(docs/report.md). `nlpmon report serve --store URL` answers the same pages over HTTP. Reads only; an "
        "unknown model or window, or a bad parameter, exits 2.",
    )
    p.add_argument("action", nargs="?", choices=("serve",), help="serve: run the read-only report server")
    p.add_argument("--model", metavar="NAME", help="the model to report on (required unless serve)")
    p.add_argument("--version", metavar="V", help="the model version (default: the newest window's)")
    p.add_argument("--segment", metavar="S", help="one segment's stream (window.by_segment; default: the "
                   "segment-less stream, the segments listed beside it)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--window", metavar="START", help="describe the window starting at START (RFC 3339 or epoch "
                      "seconds/ms), with the six hours before it")
    when.add_argument("--since", metavar="TIME", help=f"windows starting at or after TIME: {SINCE_HELP} (default: "
                      "the day before the newest window)")
    p.add_argument("--until", metavar="TIME", help="windows starting before TIME (RFC 3339 or epoch seconds/ms)")
    p.add_argument("--profile", metavar="FILE", help="reference profile file, used when the store has no active "
                   "profile for the model (else the report shows the window side only)")
    p.add_argument("-o", "--output", metavar="FILE", default="report.html", help="the HTML file to write "
                   "(default report.html; - for stdout)")
    p.add_argument("--host", default="0.0.0.0", help="serve: address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8080, help="serve: port (default 8080; 0 picks a free one)")
    p.add_argument("--store", metavar="URL", help="SQL store URL (default: store.url of the config)")
    add_config_flags(p, tokenizer=False)
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    config = config_from_args(args, {"source.kind": "stdin"})
    url = args.store or config.store.url
    if args.action == "serve":
        return _serve(args, url, config)
    from monitor.report import NotFound, load_report, render_report

    if not args.model:
        raise UsageError("--model is required (or `nlpmon report serve`)")
    if args.until is not None and args.window is not None:
        raise UsageError("--until goes with --since, not with --window")
    since = None if args.since is None else parse_since(args.since, now_ms=int(time.time() * 1000))
    with read_store(url) as store:
        try:
            data = load_report(store, model=args.model, version=args.version, segment=args.segment,
                               window=args.window, since=since, until=args.until, profile=args.profile)
        except (NotFound, ValueError) as exc:
            raise UsageError(str(exc)) from None
    page = render_report(data)
    if args.output == "-":
        sys.stdout.write(page)
    else:
        Path(args.output).write_text(page, encoding="utf-8")
        sys.stderr.write(f"wrote {args.output}: {len(data.windows)} windows of {data.model} version {data.version}, "
                         f"{len(page.encode()) / 1e6:.1f} MB\n")
    return EXIT_OK


def _serve(args, url: str, config) -> int:
    from monitor.report.server import ReportServer

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    setup_logging(config.logging.level, config.logging.format)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with read_store(url) as store, ReportServer(store, host=args.host, port=args.port) as server:
        log_event(logging.INFO, "serving reports", url=f"http://{args.host}:{server.port}/")
        stop.wait()
    return EXIT_OK
