"""The ``nlpmon`` command line: one package, one module per group of subcommands.

``main`` is the dispatcher: it builds the parser from the subcommand modules, ``run`` (replay, run,
check-config), ``reference`` (reference build), ``history``, ``ab`` (A/B reports) and ``reeval``
(re-evaluation and quantization), and maps errors to exit codes. ``common`` holds what they share, ``table``
the window table people read; no subcommand module imports another.
"""

from monitor.cli.main import build_parser, main

__all__ = ["main", "build_parser"]
