"""Re-evaluation: replay a labelled held-out set through the served ONNX model and report how good it still is.

``run_reeval(ReevalOptions(...)) -> ReevalResult`` is the job (``monitor.reeval.job``); the CLI
(``monitor.cli.reeval``) and, later, the daemon's triggers call it. See docs/reeval.md.
"""

from monitor.reeval.errors import DataError, ModelError, ProviderError, ReevalError
from monitor.reeval.job import (
    Baseline,
    BaselineComparison,
    BatchConsistency,
    CandidateResult,
    ReevalOptions,
    ReevalResult,
    Timings,
    run_reeval,
)

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
