"""Batch jobs over a whole file of prediction-log events, run once by the CLI (not by the daemon).

``profile_builder``: the reference profile of a model (``nlpmon reference build``). A job reads its file as the
line daemon does (``monitor.runtime.sources``) and samples with the windows' own seeded reservoirs
(``monitor.windowing``), so it sits above both.
"""

__all__ = ["profile_builder"]
