"""The ``nlpmon`` command line: one package, one module per group of subcommands.

``main`` (replay, run, check-config, reference, history), ``ab`` (A/B reports), ``reeval`` (re-evaluation
and quantization); ``common`` holds what they share, ``table`` the window table people read.
"""

from monitor.cli.main import build_parser, main

__all__ = ["main", "build_parser"]
