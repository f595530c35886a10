"""The ``nlpmon`` command line: the dispatcher.

It builds the parser from the subcommand modules (``COMMANDS``, in the order ``nlpmon --help`` lists them), runs
the chosen handler and turns the errors a user can fix into exit codes: 0 success (also when the input
contained invalid events: they are counted, not fatal); 2 usage or configuration error, unreadable input,
incompatible reference, a store whose schema this nlpmon may not write; 1 unexpected internal error.
"""

from __future__ import annotations

import argparse
import os
import sys

from monitor import __version__
from monitor.cli import ab, compare, db, examples, history, reeval, reference, report, run, sample
from monitor.cli.common import EXIT_OK, EXIT_USAGE, UsageError

__all__ = ["main", "build_parser", "COMMANDS"]

# Each registers its subcommands with ``add_parsers(subparsers)``; none imports another (``common`` holds
# what they share).
COMMANDS = (run, reference, compare, history, examples, report, ab, reeval, db, sample)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nlpmon",
        description="Monitoring and drift detection for NLP models in production.",
        epilog="Docs: docs/events.md (input), docs/results.md (output), docs/config.md, docs/metrics.md, "
        "docs/kafka.md (the sidecar), docs/storage.md, docs/reeval.md, docs/experiments.md, docs/runbooks.md.",
    )
    parser.add_argument("--version", action="version", version=f"nlpmon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help="nlpmon COMMAND --help for its options")
    sub.required = True
    for command in COMMANDS:
        command.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from monitor.ingest.reference import ProfileError
    from monitor.ingest.tokenizer import TokenizerError
    from monitor.onnx.errors import ModelJobError  # re-evaluation's ReevalError and the embedding encoder's
    from sinks.sql.schema import SchemaVersionError  # a store this nlpmon may not write (docs/storage.md)
    from monitor.runtime.startup import StartupTimeout  # a startup deadline the user set (docs/kafka.md)

    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader that went away (`| head -1`) is handled below
        if argv is None and getattr(args, "exit_at_once", False):
            _exit_at_once(code)
        return code
    except BrokenPipeError:
        # Before OSError, its base class. The reader stopped reading: end quietly, and point stdout at
        # /dev/null so the interpreter's final flush does not print "Exception ignored ... Broken pipe".
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (UsageError, ProfileError, TokenizerError, ModelJobError, SchemaVersionError, StartupTimeout) as exc:
        sys.stderr.write(f"nlpmon: error: {exc}\n")
        return EXIT_USAGE
    except OSError as exc:
        sys.stderr.write(f"nlpmon: error: {exc.strerror or exc}: {exc.filename or ''}\n".replace(": \n", "\n"))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _exit_at_once(code: int) -> None:
    """End the process now, without the interpreter's teardown (docs/kafka.md, "Start in any order").

    Only for a daemon (``nlpmon run`` as the process itself, never a call from Python) that stopped cleanly:
    its ``ExitStack`` has closed everything (the final checkpoint committed, the store, consumer, producer,
    HTTP server and output file closed, its threads stopped), so what is left is freeing numpy, scipy,
    tokenizers and onnxruntime module by module: up to 2 s on a loaded 2-core node, time a SIGTERM's grace
    period should not spend. The log handlers and stdout/stderr are flushed first; nothing else is pending.
    """
    import logging

    logging.shutdown()  # flushes and closes every handler
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
