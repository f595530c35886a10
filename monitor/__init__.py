"""The nlpmon daemon: config, sources, windowing, scheduling, re-evaluation and the CLI.

It wires ``detectors`` to ``sinks`` and owns every side effect.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
