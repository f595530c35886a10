"""``nlpmon replay``, ``run`` and ``check-config``: the pipeline over a file, the daemon, and its config.

Exit codes as in ``monitor.cli.main``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import orjson

from monitor.cli.common import EXIT_OK, EXIT_USAGE, UsageError, add_config_flags, config_from_args
from monitor.config import config_as_dict, service_links
from monitor.logs import log_event, setup_logging

__all__ = ["add_parsers", "cmd_replay", "cmd_run", "cmd_check_config"]


def add_parsers(sub) -> None:
    """Register ``replay``, ``run`` and ``check-config`` on an ``argparse`` subparsers object."""
    p = sub.add_parser(
        "replay",
        help="run the whole pipeline over a JSONL file of events and print window results",
        description="Run the pipeline over EVENTS (JSONL, '-' for stdin) and write one JSON window result per "
        "line (with [labels] enabled, also each window's realised accuracy, \"result_kind\": \"labels\", on its own "
        "line). Open windows are flushed at the end (\"partial\": true). A one-line JSON summary goes to stderr. "
        "Exit 0 whenever the input could be read, whatever it contained.",
    )
    p.add_argument("events", metavar="EVENTS.jsonl", help="prediction-log events, one JSON object per line ('-' = stdin)")
    p.add_argument("--reference", "-r", action="append", default=[], metavar="PROFILE",
                   help="reference profile from `nlpmon reference build` (repeatable, one per model)")
    p.add_argument("--output", "-o", default="-", metavar="FILE", help="where to write results ('-' = stdout, the default)")
    p.add_argument("--metrics-port", type=int, metavar="PORT", help="serve /metrics on PORT while replaying (0 = any free port)")
    p.add_argument("--dead-letter", metavar="FILE", help="append rejected events with their reason to FILE (JSONL)")
    p.add_argument("--format", choices=("json", "table"), default="json",
                   help="json (default): one result per line (docs/results.md); table: one readable line per window "
                   "(and per labels result)")
    p.add_argument("--wide", action="store_true", help="with --format table: every figure (about 150 columns)")
    _add_window_flags(p)
    add_config_flags(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "run",
        help="run the daemon from a config file",
        description="Run the monitoring daemon as configured: [source] kind = kafka is the sidecar (docs/kafka.md; "
        "windows, checkpoints and re-evaluation runs in the SQL store), file or stdin read a JSONL prediction log. "
        "Serves /metrics, /healthz, /readyz, /status (and POST /reeval with [reeval] enabled). The first "
        "SIGTERM/SIGINT stops consuming and drains (Kafka: final checkpoint within daemon.grace_seconds; file: "
        "open windows flushed), exit 0; a second signal exits at once.",
    )
    add_config_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config and print the effective settings",
                       description="Load the config (file, NLPMON_* environment, --set flags), validate it, and print "
                       "the effective settings as TOML (secrets redacted; --format json for JSON). Then check what `run` would need before it connects: the "
                       "source file, tokenizer and reference profiles exist and agree, the store URL names an "
                       "installed driver, the re-evaluation files exist (nothing is connected to). Exit 2 with the "
                       "offending key on any error, each on one line on stderr.")
    add_config_flags(p)
    p.add_argument("--format", choices=("toml", "json"), default="toml",
                   help="how to print the effective settings: toml (the format of the config file, default) or json")
    p.set_defaults(func=cmd_check_config)


def _add_window_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--window-events", type=int, metavar="N", help="count windows of N events (window.kind=count)")
    g.add_argument("--window-seconds", type=float, metavar="S", help="tumbling event-time windows of S seconds")
    p.add_argument("--min-events", type=int, metavar="N", help="test a window only with at least N events (default 200)")


# -- helpers -------------------------------------------------------------------------------------------------
def _window_overrides(args) -> dict:
    out: dict = {}
    if args.window_events is not None:
        out["window.kind"] = "count"
        out["window.events"] = args.window_events
        if args.min_events is None and args.window_events < 200:
            # A count window smaller than the default min_events would never be tested; say so by testing it.
            out["window.min_events"] = args.window_events
    if args.window_seconds is not None:
        out["window.kind"] = "time"
        out["window.size_seconds"] = args.window_seconds
    if args.min_events is not None:
        out["window.min_events"] = args.min_events
    return out


# -- commands ------------------------------------------------------------------------------------------------
def cmd_replay(args) -> int:
    from monitor.runtime.line_daemon import run_line_source

    extra = {"source.kind": "file" if args.events != "-" else "stdin", "source.path": args.events,
             **_window_overrides(args)}
    if args.reference:
        extra["reference.paths"] = list(args.reference)
    if args.dead_letter:
        extra["validation.dead_letter_path"] = args.dead_letter
    if args.metrics_port is not None:
        extra["metrics.port"] = args.metrics_port
    config = config_from_args(args, extra)
    setup_logging(config.logging.level if args.log_level else "warning", config.logging.format)
    if args.events != "-" and not Path(args.events).is_file():
        raise UsageError(f"cannot read {args.events}: no such file")
    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")
    try:
        if args.format == "json":
            summary = run_line_source(config, path=args.events, output=out, serve_metrics=args.metrics_port is not None)
        else:
            summary = run_line_source(config, path=args.events, output=None, serve_metrics=args.metrics_port is not None,
                                      on_result=_table_writer(out, wide=args.wide))
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    sys.stderr.write(orjson.dumps(summary.to_dict()).decode() + "\n")
    return EXIT_OK


def _table_writer(out, *, wide: bool):
    """An ``on_result`` callback writing the window table (the demo's, monitor/cli/table.py) to ``out``.

    Its first column is the stream, model/version; a labels result is a ``labels`` line of the table.
    """
    from monitor.cli.table import labels_row, stream_cell, window_header, window_row

    header = [(stream_cell("stream") + window_header(wide=wide) + "\n").encode()]

    def write(result) -> None:
        if header:
            out.write(header.pop())
        r = result.to_dict()
        row = labels_row if r.get("result_kind") == "labels" else window_row
        out.write((stream_cell(f"{r['model']}/{r['version']}") + row(r, wide=wide) + "\n").encode())
        out.flush()

    return write


def cmd_run(args) -> int:
    from monitor.runtime.line_daemon import run_line_source
    from monitor.runtime.shutdown import Shutdown

    config = config_from_args(args)
    setup_logging(config.logging.level, config.logging.format)
    for name in service_links():
        log_event(logging.DEBUG, "ignored a Kubernetes service-link variable", variable=name)
    _preflight(config)
    if config.source.kind == "kafka":
        from monitor.runtime.kafka_daemon import KafkaDaemon

        shutdown = Shutdown().install()
        try:
            code = KafkaDaemon(config, shutdown=shutdown).run()
        finally:
            shutdown.uninstall()
        args.exit_at_once = True  # every resource is closed: no interpreter teardown (cli/main.py)
        return code
    path = config.source.path if config.source.kind == "file" else "-"
    out = None
    if config.output.results_path:
        out = sys.stdout.buffer if config.output.results_path == "-" else open(config.output.results_path, "ab")
    shutdown = Shutdown().install()
    try:
        summary = run_line_source(config, path=path, output=out, serve_metrics=True, shutdown=shutdown)
    finally:
        shutdown.uninstall()
        if out is not None and out is not sys.stdout.buffer:
            out.close()
    logging.getLogger("nlpmon").info("stopped: %s", orjson.dumps(summary.to_dict()).decode())
    args.exit_at_once = True  # every resource is closed: no interpreter teardown (cli/main.py)
    return EXIT_OK


def cmd_check_config(args) -> int:
    from monitor.runtime.checks import preflight

    config = config_from_args(args)
    effective = config_as_dict(config)
    if args.format == "json":
        sys.stdout.write(orjson.dumps(effective, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        from monitor.config import secret_keys
        from monitor.config.toml_out import dumps

        # A secret is not a file setting (the loader refuses it there): a comment that says where it comes from.
        notes = {(s, k): f"a secret, {'set' if effective[s][k] else 'unset'}; not printed: NLPMON_{s.upper()}_{k.upper()} "
                 "in the environment" for s, k in secret_keys()}
        sys.stdout.write(dumps(effective, commented=notes))
    problems = preflight(config)
    for problem in problems:
        sys.stderr.write(f"nlpmon: error: {problem}\n")
    return EXIT_USAGE if problems else EXIT_OK


def _preflight(config) -> None:
    """Stop before any connection when the config cannot work: exit 2, one line, no traceback."""
    from monitor.runtime.checks import preflight

    problems = preflight(config)
    if problems:
        raise UsageError("; ".join(problems))
