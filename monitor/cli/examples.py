"""``nlpmon examples``: a window's most unusual events, read back from Kafka or the file (docs/examples.md).

The store keeps only pointers to them (docs/evidence.md, *Exemplars*); the texts are read from the source now,
printed to standard output, and neither logged nor kept. A pointer whose event is gone (retention, a recreated
topic, a rotated file) is one line saying so.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

import orjson

from monitor.cli.common import EXIT_OK, UsageError, add_config_flags, config_from_args, read_store

__all__ = ["add_parsers", "cmd_examples", "EXIT_NONE_READ"]

EXIT_NONE_READ = 1  # no event could be read back (all gone, or the window has no pointers)
# Control characters a producer may have sent (terminal escapes): shown escaped, never sent to the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def add_parsers(sub) -> None:
    """Register ``examples`` on an ``argparse`` subparsers object."""
    p = sub.add_parser(
        "examples",
        help="print a window's most unusual events, read back from Kafka or the file",
        description="Print the events a stored window points at as most unlike the reference (its exemplars, "
        "most unusual first), read back from where the daemon read them: the Kafka topic (the [kafka] settings "
        "of the config, security included) or the JSONL file. The store keeps only their position; the text is "
        "printed here and nowhere else. An event that is gone (retention, a recreated topic, a rotated file) "
        "is one line saying so. Exit 0 when at least one event was printed, 1 when none was, 2 for an unknown "
        "model or window (docs/examples.md).",
    )
    p.add_argument("--model", required=True, metavar="NAME", help="the model whose window to show")
    p.add_argument("--window", required=True, metavar="START",
                   help="the window's start, as nlpmon history prints it (RFC 3339) or epoch seconds/ms")
    p.add_argument("--version", metavar="V", help="only this model version (default: every version's window)")
    p.add_argument("--segment", metavar="S", help='only this segment ("" for the segment-less stream)')
    p.add_argument("--store", metavar="URL", help="SQL store URL (default: store.url of the config)")
    p.add_argument("--bootstrap-servers", metavar="HOST:PORT[,...]",
                   help="the Kafka brokers to read from (default: kafka.bootstrap_servers of the config)")
    p.add_argument("--file", action="append", default=[], metavar="PATH",
                   help="a JSONL file the daemon read (a pointer names its base name; default: source.path of "
                   "the config); repeatable")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the broker and for each record (default 10)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text (default) or JSON lines, one per pointer (docs/examples.md)")
    add_config_flags(p, tokenizer=False)
    p.set_defaults(func=cmd_examples)


def cmd_examples(args) -> int:
    from sinks.sql.rows import to_ms

    if args.timeout <= 0:
        raise UsageError("--timeout must be > 0")
    config = config_from_args(args, {"kafka.bootstrap_servers": args.bootstrap_servers,
                                     **({} if args.config else {"source.kind": "stdin"})})
    try:
        start_ms = to_ms(args.window, "--window")
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{exc}: give the window's start as nlpmon history prints it") from None
    with read_store(args.store or config.store.url) as store:
        windows = store.window_evidence(args.model, args.version, segment=args.segment, since=start_ms,
                                        until=start_ms + 1)
        if not windows:
            _unknown(store.streams(), args)
    pointers = [(result, e) for result, evidence in windows for e in (evidence.exemplars if evidence else ())]
    found = _read_back([e.position for _, e in pointers], config, args)
    out, printed = sys.stdout, 0
    for result, evidence in windows:
        if args.format == "text":
            out.write(_window_header(result, evidence))
        for exemplar in (evidence.exemplars if evidence else ()):
            event, missing = _event(found[exemplar.position], exemplar.request_id)
            printed += event is not None
            if args.format == "json":
                out.write(orjson.dumps({
                    "model": result["model"], "version": result["version"], "segment": result.get("segment"),
                    "window_start": result["window_start"], "position": exemplar.position,
                    "request_id": exemplar.request_id, "score": exemplar.score, "event": event, "missing": missing,
                }).decode() + "\n")  # fmt: skip
            elif event is None:
                out.write(f"{exemplar.position}: {missing}\n")
            else:
                out.write(_event_text(exemplar, event))
    return EXIT_OK if printed else EXIT_NONE_READ


def _unknown(streams: list[tuple[str, str]], args) -> None:
    """Exit 2 with one line: the model (or version) is not stored, or none of its windows starts there."""
    versions = [v for m, v in streams if m == args.model]
    if not versions:
        known = ", ".join(sorted({m for m, _ in streams})) or "none"
        raise UsageError(f"no stored windows for model {args.model!r} (stored models: {known})")
    if args.version is not None and args.version not in versions:
        raise UsageError(f"no stored windows for model {args.model!r} version {args.version!r} "
                         f"(stored versions: {', '.join(versions)})")
    segment = f" segment {args.segment!r}" if args.segment is not None else ""
    raise UsageError(f"no stored window of model {args.model!r}{segment} starts at {args.window} "
                     f"(nlpmon history --model {args.model} lists them)")


def _read_back(positions: Iterable[str], config, args) -> dict:
    """Each position's :class:`~monitor.runtime.readback.ReadBack`: Kafka records, then file lines."""
    from monitor.runtime.readback import FilePosition, KafkaPosition, ReadBack, parse_position
    from monitor.runtime.readback import open_kafka_reader, read_file_lines
    from monitor.runtime.startup import NotYet

    parsed = {p: parse_position(p) for p in dict.fromkeys(positions)}
    found = {p: ReadBack(missing="not a Kafka or file position") for p, where in parsed.items() if where is None}
    kafka = {p: where for p, where in parsed.items() if isinstance(where, KafkaPosition)}
    if kafka:
        try:
            with open_kafka_reader(config, timeout_s=args.timeout) as reader:
                found.update((p, reader.read(where)) for p, where in kafka.items())
        except NotYet as exc:
            found.update((p, ReadBack(missing=str(exc))) for p in kafka)
    files = {Path(f).name: f for f in ([config.source.path] if config.source.kind == "file" else []) + args.file}
    lines: dict[str, list] = {}
    for p, where in parsed.items():
        if isinstance(where, FilePosition):
            lines.setdefault(where.name, []).append((p, where.line))
    for name, wanted in lines.items():
        if name == "stdin":
            found.update((p, ReadBack(missing="standard input cannot be read again")) for p, _ in wanted)
        elif name not in files:
            found.update((p, ReadBack(missing=f"no file named {name} is known here: give it with --file PATH"))
                         for p, _ in wanted)
        else:
            by_line = read_file_lines(files[name], [n for _, n in wanted])
            found.update((p, by_line[n]) for p, n in wanted)
    return found


def _event(read, request_id: str | None) -> tuple[dict | None, str | None]:
    """The event read back, or why it is not the pointer's: gone, not JSON, or another request id."""
    if read.value is None:
        return None, read.missing
    try:
        event = orjson.loads(read.value)
    except orjson.JSONDecodeError:
        return None, "holds no JSON event now (the source was rewritten?)"
    if not isinstance(event, dict):
        return None, "holds no JSON event now (the source was rewritten?)"
    if request_id is not None and event.get("request_id") != request_id:
        return None, (f"holds another event now (request id {event.get('request_id')!r}, the pointer's "
                      f"{request_id!r}): the topic was recreated or the file rotated")
    return event, None


def _window_header(result: dict, evidence) -> str:
    segment = f" segment {result['segment']}" if result.get("segment") else ""
    head = f"# {result['model']} version {result['version']}{segment}, window {result['window_start']}"
    if evidence is None:
        return f"{head}: no evidence stored (written before evidence, or evidence turned off)\n"
    if not evidence.exemplars:
        return f"{head}: no exemplars stored\n"
    by = f" by {evidence.exemplar_score}" if evidence.exemplar_score else ""
    return f"{head}: {len(evidence.exemplars)} exemplars{by}, most unusual first\n"


def _event_text(exemplar, event: dict) -> str:
    prediction = f"  prediction {_clean(str(event['prediction']))}" if event.get("prediction") is not None else ""
    head = f"{exemplar.position}  request {exemplar.request_id or '-'}  score {exemplar.score:.4g}{prediction}\n"
    text = event.get("text")
    if not isinstance(text, str):
        return head + "    (the event holds no text)\n"
    return head + "".join(f"    {line}\n" for line in _clean(text).split("\n"))


def _clean(text: str) -> str:
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)
