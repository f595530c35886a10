"""Pass/fail bars on a re-evaluation result: the gates of ``nlpmon reeval`` (docs/reeval.md, *Gates*).

A gate compares one figure of a :class:`~monitor.reeval.result.ReevalResult` with a bar and says in one line
whether the bar was met, and by how much it was missed. Gates belong to the one-shot command, whose exit code
a CI job reads; the daemon's scheduled runs report and store, they do not exit, so ``[reeval]`` has no gate key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from monitor.reeval.result import ReevalResult

__all__ = ["Gates", "GateOutcome", "check_gates"]

# A drop is a difference of two accuracies (0.87 - 0.85 = 0.020000000000000018): a figure that equals its bar
# must not miss it by a rounding error.
TOLERANCE = 1e-9


def _bar(help: str, *, candidate: bool = False):
    """One bar: its ``nlpmon reeval`` flag is ``--`` and the field's name, ``help`` its help text."""
    return field(default=None, metadata={"help": help, "candidate": candidate})


@dataclass(frozen=True, kw_only=True)
class Gates:
    """The bars a run must meet; ``None`` checks nothing. Each is a share in [0, 1]."""

    min_accuracy: float | None = _bar("fail (exit 1) when the accuracy is below X")
    max_drop: float | None = _bar(
        "fail when the accuracy is more than X below the baseline: --baseline-accuracy, else the first stored "
        "run of --store"
    )
    min_agreement: float | None = _bar(
        "with --candidate: fail when the two models give the same class on less than this share of the sentences "
        "(of the held-out set, and of the --traffic texts when given)",
        candidate=True,
    )
    max_accuracy_drop: float | None = _bar(
        "with --candidate: fail when the candidate's accuracy is more than X below the model's", candidate=True
    )

    def __post_init__(self):
        for name, value in self.given().items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{flag(name)} must be a number in [0, 1], got {value!r}")

    def given(self) -> dict[str, float]:
        """The bars that were set, by field name, in the order of the fields."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def candidate_flags(self) -> list[str]:
        """The flags given that judge a candidate (they need ``--candidate``)."""
        return [flag(name) for name in self.given() if self.__dataclass_fields__[name].metadata["candidate"]]


def flag(name: str) -> str:
    """The command-line flag of the gate ``name``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class GateOutcome:
    """One bar checked: the figure measured (``None`` when there was nothing to measure it against) and the line."""

    flag: str
    bar: float
    value: float | None
    passed: bool
    line: str


def _num(x: float) -> str:
    """Up to six decimals, trailing zeros dropped: shares of up to a million sentences print exactly."""
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _outcome(name: str, figure: str, value: float, bar: float, *, upper: bool, detail: str = "") -> GateOutcome:
    """``figure`` against the bar of the gate ``name``: a ceiling when ``upper``, else a floor."""
    passed = value <= bar + TOLERANCE if upper else value >= bar - TOLERANCE
    sign = ("<=" if passed else ">") if upper else (">=" if passed else "<")
    extra = detail
    if not passed:
        miss = f"over by {_num(value - bar)}" if upper else f"short by {_num(bar - value)}"
        extra = miss + (f"; {detail}" if detail else "")
    line = f"gate {'passed' if passed else 'failed'}: {figure} {_num(value)} {sign} {flag(name)} {_num(bar)}"
    return GateOutcome(flag(name), bar, value, passed, line + (f" ({extra})" if extra else ""))


def _baseline_name(result: ReevalResult) -> str:
    b = result.baseline
    if b.source == "configured":
        return f"configured baseline {_num(b.accuracy)}"  # --baseline-accuracy, or the key of --config
    if b.source == "first_run":
        return f"baseline {_num(b.accuracy)} of stored run {b.run}"
    return f"baseline {_num(b.accuracy)} ({b.source}{' ' + b.run if b.run else ''})"


def _max_drop(result: ReevalResult, bar: float) -> GateOutcome:
    if result.baseline is None:
        # Only with --store and no earlier run: this run becomes the baseline, it cannot have dropped from itself.
        return GateOutcome(flag("max_drop"), bar, None, True,
                           f"gate passed: --max-drop {_num(bar)} (no baseline yet: no earlier run of "
                           f"{result.model_name} on {result.dataset} is stored; this run becomes it)")
    return _outcome("max_drop", "accuracy drop", result.baseline.accuracy_drop, bar, upper=True,
                    detail=_baseline_name(result))


def _candidate(result: ReevalResult, name: str):
    if result.candidate is None:
        raise ValueError(f"{flag(name)} judges a candidate model: the run has none (--candidate)")
    return result.candidate


def check_gates(result: ReevalResult, gates: Gates) -> tuple[GateOutcome, ...]:
    """Check every bar of ``gates`` on ``result``, in the order of the fields; one outcome per figure checked.

    ``--min-agreement`` gives two outcomes when the candidate also scored logged traffic.
    """
    out: list[GateOutcome] = []
    for name, bar in gates.given().items():
        if name == "min_accuracy":
            out.append(_outcome(name, "accuracy", result.accuracy, bar, upper=False))
        elif name == "max_drop":
            out.append(_max_drop(result, bar))
        elif name == "min_agreement":
            cand = _candidate(result, name)
            c = cand.comparison
            out.append(_outcome(name, "candidate agreement", c.agreement, bar, upper=False,
                                detail=f"{c.disagreements} of {c.n} held-out sentences disagree"))
            if cand.traffic is not None:
                t = cand.traffic
                out.append(_outcome(name, "candidate agreement on traffic", t.agreement, bar, upper=False,
                                    detail=f"{t.disagreements} of {t.n} logged texts disagree"))
        elif name == "max_accuracy_drop":
            cand = _candidate(result, name)
            model, candidate = result.accuracy, cand.metrics.accuracy
            out.append(_outcome(name, "candidate accuracy drop", model - candidate, bar, upper=True,
                                detail=f"model {_num(model)}, candidate {_num(candidate)}"))
    return tuple(out)
