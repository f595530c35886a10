"""``nlpmon history``: window results stored by the daemon in the SQL store, as a table or JSON lines."""

from __future__ import annotations

import sys
import time

import orjson

from monitor.cli.common import (
    EXIT_OK,
    SINCE_HELP,
    UsageError,
    add_config_flags,
    config_from_args,
    parse_since,
    read_store,
)  # fmt: skip

__all__ = ["add_parsers", "cmd_history"]


def add_parsers(sub) -> None:
    """Register ``history`` on an ``argparse`` subparsers object."""
    p = sub.add_parser(
        "history",
        help="print stored window results",
        description="Print window results stored by the daemon in the SQL store, oldest first. Reads only: a "
        "store that does not exist is an error (exit 2), never created. An unknown model or version exits 2 and "
        "lists the stored ones.",
    )
    p.add_argument("--model", required=True, metavar="NAME", help="the model whose windows to print (its name in the events)")
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
