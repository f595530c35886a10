"""The ``nlpmon`` command line.

Exit codes: 0 success (also when the input contained invalid events: they are counted, not fatal);
2 usage or configuration error, unreadable input, incompatible reference; 1 unexpected internal error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import orjson

from monitor import __version__
from monitor.cli.ab import add_parsers as add_ab_parsers
from monitor.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    SINCE_HELP,
    UsageError,
    add_config_flags,
    config_from_args,
    parse_since,
    read_store,
)  # fmt: skip
from monitor.cli.reeval import add_parsers as add_reeval_parsers
from monitor.config import ConfigError, EmbeddingConfig, config_as_dict, load_config, service_links
from monitor.logs import log_event, setup_logging

__all__ = ["main", "build_parser"]

def _add_window_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--window-events", type=int, metavar="N", help="count windows of N events (window.kind=count)")
    g.add_argument("--window-seconds", type=float, metavar="S", help="tumbling event-time windows of S seconds")
    p.add_argument("--min-events", type=int, metavar="N", help="test a window only with at least N events (default 200)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nlpmon",
        description="Monitoring and drift detection for NLP models in production.",
        epilog="Docs: docs/events.md (input), docs/results.md (output), docs/config.md, docs/metrics.md, "
        "docs/kafka.md (the sidecar), docs/storage.md, docs/reeval.md, docs/experiments.md, docs/runbooks.md.",
    )
    parser.add_argument("--version", action="version", version=f"nlpmon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

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
                   help="json (default): one result per line (docs/results.md); table: one readable line per window")
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
                       "the effective settings as JSON. Then check what `run` would need before it connects: the "
                       "source file, tokenizer and reference profiles exist and agree, the store URL names an "
                       "installed driver, the re-evaluation files exist (nothing is connected to). Exit 2 with the "
                       "offending key on any error, each on one line on stderr.")
    add_config_flags(p)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("reference", help="build reference profiles")
    rsub = p.add_subparsers(dest="reference_command", metavar="SUBCOMMAND")
    rsub.required = True
    b = rsub.add_parser(
        "build",
        help="compute a reference profile from a JSONL file of events",
        description="Compute the reference samples (features, confidences, class proportions, latency) of one "
        "model from EVENTS and write them to a profile JSON file.",
    )
    b.add_argument("events", metavar="EVENTS.jsonl")
    b.add_argument("--output", "-o", required=True, metavar="PROFILE.json")
    b.add_argument("--model", metavar="NAME", help="model to profile (required when the file holds several)")
    b.add_argument("--version", dest="versions", action="append", default=[], metavar="V", help="only these versions (repeatable)")
    b.add_argument("--sample-size", type=int, default=50_000, metavar="N", help="reservoir size per feature (default 50000)")
    b.add_argument("--config", "-c", metavar="FILE",
                   help="the daemon's TOML config: [tokenizer], [embedding] and validation.max_text_chars are read "
                   "from it, so the profile is built with the daemon's settings (--tokenizer and --max-length "
                   "override); with embedding.model the encoder embeds a seeded sample of the texts")
    b.add_argument("--tokenizer", metavar="DIR", help="served model's tokenizer directory (must match the daemon's)")
    b.add_argument("--max-length", type=int, metavar="N", help="tokenizer max_length (default: the config's, else 512)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--store", metavar="URL", help="also store the profile in this SQL store (SQLAlchemy URL)")
    b.add_argument("--activate", action="store_true", help="with --store: make it the model's active reference")
    b.add_argument("--by-segment", action="store_true",
                   help="also one profile per segment of the events, written next to --output as "
                   "NAME.segment=SEGMENT.json (SEGMENT percent-encoded) and stored as MODEL#segment=SEGMENT")
    b.set_defaults(func=cmd_reference_build)

    p = sub.add_parser(
        "history",
        help="print stored window results",
        description="Print window results stored by the daemon in the SQL store, oldest first. Reads only: a "
        "store that does not exist is an error (exit 2), never created. An unknown model or version exits 2 and "
        "lists the stored ones.",
    )
    p.add_argument("--model", required=True, metavar="NAME")
    p.add_argument("--version", metavar="V", help="only this model version")
    p.add_argument("--segment", metavar="S", help='only this segment (window.by_segment; "" for the segment-less stream)')
    p.add_argument("--since", metavar="TIME", help=f"only windows starting at or after TIME: {SINCE_HELP}")
    p.add_argument("--limit", type=int, metavar="N", help="at most the N most recent windows")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default, 120 columns) or JSON lines (every figure, docs/results.md)")
    p.add_argument("--wide", action="store_true", help="with --format table: every figure (about 150 columns)")
    p.add_argument("--store", metavar="URL", help="SQL store URL (default: store.url of the config)")
    add_config_flags(p)
    p.set_defaults(func=cmd_history)

    # Subcommands that live in their own modules.
    add_ab_parsers(sub)
    add_reeval_parsers(sub)
    return parser


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

    Its first column is the stream, model/version.
    """
    from monitor.cli.table import stream_cell, window_header, window_row

    header = [(stream_cell("stream") + window_header(wide=wide) + "\n").encode()]

    def write(result) -> None:
        if header:
            out.write(header.pop())
        r = result.to_dict()
        out.write((stream_cell(f"{r['model']}/{r['version']}") + window_row(r, wide=wide) + "\n").encode())
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
            return KafkaDaemon(config, shutdown=shutdown).run()
        finally:
            shutdown.uninstall()
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
    return EXIT_OK


def cmd_check_config(args) -> int:
    from monitor.runtime.checks import preflight

    config = config_from_args(args)
    sys.stdout.write(orjson.dumps(config_as_dict(config), option=orjson.OPT_INDENT_2).decode() + "\n")
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


def cmd_reference_build(args) -> int:
    from monitor.cli.segments import segment_profiles
    from monitor.ingest.profile_builder import build_profile
    from monitor.ingest.reference import save_profile
    from monitor.windowing.segments import profile_name
    from monitor.ingest.tokenizer import TokenizerFeaturizer

    if args.events != "-" and not Path(args.events).is_file():
        raise UsageError(f"cannot read {args.events}: no such file")
    if args.sample_size < 100:
        raise UsageError("--sample-size must be at least 100")
    # The daemon's own [tokenizer] and validation settings (environment included, as `nlpmon run` reads
    # them), so the profile passes the daemon's compatibility check; flags override.
    config = None
    if args.config:
        try:
            config = load_config(args.config, overrides={"source.kind": "stdin"})  # only its model settings count
        except ConfigError as exc:
            raise UsageError(f"config error: {exc}") from None
    path = args.tokenizer or (config.tokenizer.path if config else "") or None
    max_length = args.max_length or (config.tokenizer.max_length if config else 512)
    batch_size = config.tokenizer.batch_size if config else 256
    tokenizer = TokenizerFeaturizer(path, max_length=max_length, batch_size=batch_size) if path else None
    embedding = config.embedding if config else EmbeddingConfig()
    encoder = None
    if embedding.model:
        from monitor.reeval.encoder import OnnxEncoder

        if not path:
            raise UsageError("embedding.model: requires tokenizer.path (or --tokenizer)")
        encoder = OnnxEncoder(embedding.model, path, output=embedding.output or None, provider=embedding.provider,
                              batch_size=embedding.batch_size, max_length=max_length,
                              intra_op_threads=embedding.threads)
    profile, summary = build_profile(
        args.events, model=args.model, versions=tuple(args.versions), tokenizer=tokenizer,
        sample_cap=args.sample_size, seed=args.seed,
        max_text_chars=config.validation.max_text_chars if config else 10_000,
        embedding=embedding, encoder=encoder,
    )  # fmt: skip
    if args.activate and not args.store:
        raise UsageError("--activate needs --store URL")
    profiles = [(profile, args.output)]
    if args.by_segment:
        profiles += segment_profiles(args, summary, tokenizer, config, embedding=embedding, encoder=encoder)
    for p, output in profiles:
        save_profile(p, output)
    extra = {"segment_outputs": [out for _, out in profiles[1:]]} if args.by_segment else {}
    if args.store:
        from sinks.sql import SqlStore, StoreUnavailable

        try:
            with SqlStore(args.store) as store:
                versions = [store.save_profile(profile_name(p.model, p.segment), p.to_dict(), activate=args.activate)
                            for p, _ in profiles]
                extra["store_version"] = versions[0]
        except StoreUnavailable as exc:
            raise UsageError(f"cannot reach the store: {exc}") from None
        extra["active"] = args.activate
    sys.stderr.write(orjson.dumps({**summary, "output": args.output, **extra}).decode() + "\n")
    return EXIT_OK


def cmd_history(args) -> int:
    from monitor.cli.table import stream_cell, window_header, window_row

    url = args.store
    if not url:
        url = config_from_args(args, {"source.kind": "stdin"}).store.url
    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be >= 0")
    since = None if args.since is None else parse_since(args.since, now_ms=int(time.time() * 1000))
    with read_store(url) as store:
        try:
            rows = store.history(args.model, version=args.version, since=since, limit=args.limit, segment=args.segment)
        except ValueError as exc:  # the only argument the store still parses is --since
            raise UsageError(f"--since {args.since!r}: {exc}; it takes {SINCE_HELP}") from None
        if not rows:
            _check_known_stream(store.streams(), args.model, args.version)
    if not rows:
        sys.stderr.write(f"no stored windows for model {args.model!r}"
                         f"{f' version {args.version!r}' if args.version else ''}"
                         f"{f' segment {args.segment!r}' if args.segment is not None else ''}"
                         f"{f' since {args.since}' if args.since else ''}\n")
        return EXIT_OK
    out = sys.stdout
    if args.format == "json":
        for r in rows:
            out.write(orjson.dumps(r).decode() + "\n")
        return EXIT_OK
    # With segments, the stream cell is version/segment.
    cell = (lambda r: f"{r['version']}/{r['segment']}" if r.get("segment") else r["version"])
    segmented = any(r.get("segment") for r in rows)
    out.write(stream_cell("ver/segment" if segmented else "version") + window_header(wide=args.wide) + "\n")
    for r in rows:
        out.write(stream_cell(cell(r)) + window_row(r, wide=args.wide) + "\n")
    return EXIT_OK


def _check_known_stream(streams: list[tuple[str, str]], model: str, version: str | None) -> None:
    """Exit 2 naming the stored streams when ``model`` (or its ``version``) has no stored window at all."""
    versions = [v for m, v in streams if m == model]
    if not versions:
        known = ", ".join(sorted({m for m, _ in streams})) or "none: the store holds no window results"
        raise UsageError(f"no stored windows for model {model!r} (stored models: {known})")
    if version is not None and version not in versions:
        raise UsageError(f"no stored windows for model {model!r} version {version!r} "
                         f"(stored versions: {', '.join(versions)})")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from monitor.ingest.reference import ProfileError
    from monitor.ingest.tokenizer import TokenizerError
    from monitor.reeval.errors import ReevalError

    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader that went away (`| head -1`) is handled below
        return code
    except BrokenPipeError:
        # Before OSError, its base class. The reader stopped reading: end quietly, and point stdout at
        # /dev/null so the interpreter's final flush does not print "Exception ignored ... Broken pipe".
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (UsageError, ProfileError, TokenizerError, ReevalError) as exc:
        sys.stderr.write(f"nlpmon: error: {exc}\n")
        return EXIT_USAGE
    except OSError as exc:
        sys.stderr.write(f"nlpmon: error: {exc.strerror or exc}: {exc.filename or ''}\n".replace(": \n", "\n"))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
