"""Re-evaluation: replay a labelled held-out set through the served ONNX model and report how good it still is.

``run_reeval(ReevalOptions(...)) -> ReevalResult`` is the job (``monitor.reeval.job``); the CLI
(``monitor.cli.reeval``) and the daemon's scheduler (``monitor.reeval.scheduler``, through the worker
process) call it. The options are defined once, with the ``[reeval]`` keys and the CLI flags they give
(``monitor.config.reeval``); the result is ``monitor.reeval.result``. See docs/reeval.md.
"""

from monitor.config.reeval import Baseline, ReevalOptions
from monitor.reeval.errors import DataError, ModelError, ProviderError, ReevalError
from monitor.reeval.job import run_reeval
from monitor.reeval.result import BaselineComparison, BatchConsistency, CandidateResult, ReevalResult, Timings

__all__ = [
    "run_reeval",
    "ReevalOptions",
    "ReevalResult",
    "Baseline",
    "BaselineComparison",
    "BatchConsistency",
    "CandidateResult",
    "Timings",
    "ReevalError",
    "DataError",
    "ModelError",
    "ProviderError",
]
