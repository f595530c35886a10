"""Always-valid inference for the difference between two variants: a p-value and a confidence sequence.

A fixed-horizon test (a z-test at the end of an experiment) is valid only when it is looked at once, at the
sample size that was planned. A dashboard is looked at all the time, and stopping the first time ``p < 0.05``
inflates the false-positive rate several-fold (``bench/ab_simulation.py`` measures it). The test here stays
valid at every look, whenever and however often it is made, including the look that decides to stop.

The math
--------
Write ``theta = mean_b - mean_a`` (the lift), ``theta_hat`` its estimate after ``n_a`` and ``n_b``
observations, ``V`` the variance of ``theta_hat`` and ``z = theta_hat / sqrt(V)``. The mixture sequential
probability ratio test (mSPRT; Robbins 1970, Johari, Koomen, Pekelis & Walsh 2017 "Peeking at A/B tests",
KDD, and Johari, Pekelis & Walsh 2022 "Always valid inference", Operations Research 70(3)) compares
``theta = 0`` with a normal mixture of alternatives, ``theta ~ N(0, tau2 * sigma^2)``. For a Gaussian
statistic the mixture likelihood ratio is in closed form::

    Lambda_n = (1 + r)^(-1/2) * exp(r * z^2 / (2 * (1 + r))),      r = tau2 / (1/n_a + 1/n_b)

Under ``theta = 0``, ``Lambda_n`` is a nonnegative martingale with mean 1, so by Ville's inequality
``P(sup_n Lambda_n >= 1/alpha) <= alpha``: ``p_n = min(1, min_{k <= n} 1 / Lambda_k)`` is an always-valid
p-value (the running minimum is part of the definition, not a cosmetic choice). ``sigma^2`` is the
per-observation variance: ``tau2`` is the mixing variance of the *standardised* effect ``theta / sigma``,
which makes it unit-free and lets one default serve error rates, confidences and outcome scores alike.

Inverting the same ratio at every ``theta`` (``Lambda_n(theta) < 1/alpha``) gives the normal-mixture
confidence sequence (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric,
nonasymptotic confidence sequences", Annals of Statistics 49(2), eq. (14))::

    theta_hat +- sqrt(V) * sqrt((1 + r) / r * (2 * log(1/alpha) + log(1 + r)))

which covers ``theta`` at every look simultaneously with probability ``1 - alpha``; so does the running
intersection of the intervals, which is what is reported.

What is asymptotic
------------------
The closed form is exact for Gaussian observations with a known variance. Here the variance is a plug-in
estimate and the observations are Bernoulli or arbitrary, so the guarantee holds as the sample grows, by
the central limit theorem and the consistency of the variance estimate (the "asymptotic confidence
sequences" of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas 2024, "Time-uniform central limit theory and
asymptotic confidence sequences", Annals of Statistics, make this precise). Early looks are where the
approximation is worst, so nothing is tested until both variants hold ``min_samples`` observations.

* Proportions (accuracy, error rate): ``V`` for the p-value is the pooled ``p(1 - p)(1/n_a + 1/n_b)`` (the
  variance under ``theta = 0``, which a rare event cannot make vanish in one variant alone). For the
  interval, which must hold away from 0 too, ``V`` is the unpooled variance of the two proportions, each
  smoothed as ``(successes + 0.5) / (n + 1)`` so an interval never collapses to a point while a variant has
  seen no successes (or no failures) yet: the running intersection would keep that point forever.
* Means (an ``outcome`` score, mean confidence): ``V = s_a^2 / n_a + s_b^2 / n_b`` (Welch), for both.

Because the p-value and the interval use different ``V`` for proportions, ``significant`` (``p <= alpha``)
and "the interval excludes 0" can disagree near the boundary; ``significant`` is the verdict.

Choosing ``tau2``
-----------------
At a fixed sample size the interval is narrowest when ``r`` is about ``2 log(1/alpha) + log(1 + 2
log(1/alpha))`` (7.9 at ``alpha = 0.05``), and its width is flat around that optimum: within 7% for sample
sizes 4x smaller or larger, within 10% for 16x larger. The default ``tau2 = 1e-3`` (standardised effects of
about +-0.03 standard deviations, e.g. one point on a 10% error rate) puts the optimum near 16,000
observations per variant at ``alpha = 0.05``, the size of a typical experiment on a per-prediction metric;
:func:`tau2_for_sample_size` gives the value for another planned size.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from detectors.base import as_dict, check_in_range, finite_or_none

__all__ = [
    "ArmStats",
    "welford_update",
    "SequentialResult",
    "SequentialTest",
    "METRICS",
    "DEFAULT_TAU2",
    "mixture_p_value",
    "mixture_half_width",
    "tau2_for_sample_size",
]

METRICS = ("proportion", "mean")
DEFAULT_TAU2 = 1e-3


def _check_count(name: str, value: object) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a nonnegative integer, got {value!r}.")
    return int(value)


def welford_update(n: int, mean: float, m2: float, x: float) -> tuple[int, float, float]:
    """Add one value to running ``(n, mean, m2)`` (Welford); return the new triple.

    One value at a time, in arrival order, gives the same floats whatever the batching of the source, which
    an exactly-once replay needs; :class:`ArmStats` is the frozen form of the same triple.

    Examples
    --------
    >>> state = (0, 0.0, 0.0)
    >>> for x in (1.0, 2.0, 3.0):
    ...     state = welford_update(*state, x)
    >>> state
    (3, 2.0, 2.0)
    """
    n += 1
    delta = x - mean
    mean += delta / n
    return n, mean, m2 + delta * (x - mean)


@dataclass(frozen=True, slots=True)
class ArmStats:
    """Sufficient statistics of one variant: count, mean and sum of squared deviations from the mean.

    Kept as ``(n, mean, m2)`` rather than raw sums so that merging batches (``a + b``, Chan et al.'s
    pairwise update) does not lose precision to cancellation when the mean is large against the spread.
    Build one with :meth:`from_values`, :meth:`from_successes` or :meth:`from_sums`.

    Examples
    --------
    >>> a = ArmStats.from_values([1.0, 2.0, 3.0]) + ArmStats.from_sums(2, 9.0, 41.0)
    >>> a.n, a.mean, round(a.variance, 6)
    (5, 3.0, 2.5)
    >>> ArmStats.from_successes(10, 3).mean
    0.3
    """

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def __post_init__(self):
        _check_count("n", self.n)
        if not (isinstance(self.mean, numbers.Real) and math.isfinite(self.mean)):
            raise ValueError(f"mean must be a finite number, got {self.mean!r}.")
        if not (isinstance(self.m2, numbers.Real) and math.isfinite(self.m2) and self.m2 >= 0):
            raise ValueError(f"m2 must be a finite number at least 0, got {self.m2!r}.")
        if self.n == 0 and (self.mean != 0 or self.m2 != 0):
            raise ValueError("an empty ArmStats (n = 0) must have mean 0 and m2 0.")

    @classmethod
    def from_values(cls, values) -> ArmStats:
        """Return the statistics of a one-dimensional sample of finite numbers (0/1 for proportions)."""
        x = np.asarray(values, dtype=np.float64).ravel()
        if not np.isfinite(x).all():
            raise ValueError("values must all be finite.")
        if x.size == 0:
            return cls()
        mean = float(x.mean())
        return cls(int(x.size), mean, float(np.square(x - mean).sum()))

    @classmethod
    def from_successes(cls, n: int, successes: int) -> ArmStats:
        """Return the statistics of ``n`` Bernoulli trials of which ``successes`` succeeded."""
        n, k = _check_count("n", n), _check_count("successes", successes)
        if k > n:
            raise ValueError(f"successes must be at most n ({n}), got {successes!r}.")
        if n == 0:
            return cls()
        p = k / n
        return cls(n, p, k * (1.0 - p))  # sum (x - p)^2 = k (1 - p)^2 + (n - k) p^2 = k (1 - p)

    @classmethod
    def from_sums(cls, n: int, total: float, total_sq: float) -> ArmStats:
        """Return the statistics of ``n`` values given their sum and their sum of squares.

        Prefer :meth:`from_values` where the values are at hand: ``total_sq - total^2 / n`` cancels badly
        when the mean is large against the spread.
        """
        n = _check_count("n", n)
        if n == 0:
            return cls()
        mean = float(total) / n
        return cls(n, mean, max(float(total_sq) - float(total) * mean, 0.0))

    def __add__(self, other: ArmStats) -> ArmStats:
        if not isinstance(other, ArmStats):
            return NotImplemented
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return ArmStats(n, self.mean + delta * other.n / n, self.m2 + other.m2 + delta * delta * self.n * other.n / n)

    @property
    def total(self) -> float:
        """Sum of the values (successes, for proportions)."""
        return self.n * self.mean

    @property
    def variance(self) -> float:
        """Sample variance (``ddof = 1``); NaN below two observations."""
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    @property
    def sd(self) -> float:
        """Sample standard deviation (``ddof = 1``); NaN below two observations."""
        return math.sqrt(self.variance) if self.n > 1 else math.nan


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """The always-valid comparison of variant ``b`` against ``a`` after the latest look.

    ``p_value`` is the running minimum over looks and ``ci_low``/``ci_high`` the running intersection of the
    confidence sequence for ``lift`` (at level ``1 - alpha``), so both are monotone and stay valid however
    often they are read. Before both variants hold ``min_samples`` observations nothing is tested:
    ``p_value`` is 1 and the interval is unbounded (``None`` in ``to_dict``). ``direction`` is
    ``"increase"`` (b above a) or ``"decrease"`` once ``significant``, ``"none"`` before: the sign of the
    lift at the look that first made the test significant. That decision is final, like the running
    minimum it rests on, even if the point estimate later changes sign.
    """

    metric: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    lift: float
    lift_relative: float
    p_value: float
    ci_low: float
    ci_high: float
    alpha: float
    significant: bool
    direction: str
    looks: int

    def to_dict(self) -> dict:
        """Return the result as JSON-able values (fields in order; undefined numbers are ``None``)."""
        return as_dict(self)


def mixture_p_value(z, n_a, n_b, tau2: float = DEFAULT_TAU2):
    """Return ``min(1, 1 / Lambda)``, the mSPRT p-value of one look; broadcasts over arrays.

    This is the p-value of a single look. The always-valid p-value is its running minimum over looks
    (``np.minimum.accumulate`` along the look axis), which :class:`SequentialTest` keeps for you.

    Parameters
    ----------
    z : float or array_like
        ``(mean_b - mean_a) / sqrt(V)``, the usual z statistic of the difference.
    n_a, n_b : int or array_like
        Observations per variant so far, each at least 1.
    tau2 : float
        Mixing variance of the standardised effect (see the module docstring).

    Returns
    -------
    numpy.float64 or numpy.ndarray
        Values in (0, 1].

    Examples
    --------
    >>> float(mixture_p_value(0.0, 10_000, 10_000))
    1.0
    >>> p = mixture_p_value([1.96, 4.0, 6.0], 10_000, 10_000)
    >>> [bool(x < 0.05) for x in p]  # 1.96 is far from enough at a look that may be one of many
    [False, True, True]
    """
    z, n_a, n_b = (np.asarray(x, dtype=np.float64) for x in (z, n_a, n_b))
    r = tau2 / (1.0 / n_a + 1.0 / n_b)
    # log space: exp(r z^2 / 2(1+r)) overflows for a large z long before the p-value underflows to 0.
    log_p = 0.5 * np.log1p(r) - r * np.square(z) / (2.0 * (1.0 + r))
    return np.exp(np.minimum(log_p, 0.0))[()]


def mixture_half_width(se, n_a, n_b, tau2: float = DEFAULT_TAU2, alpha: float = 0.05):
    """Return the half-width of the normal-mixture confidence sequence at one look; broadcasts.

    Parameters
    ----------
    se : float or array_like
        Standard error of ``mean_b - mean_a``, ``sqrt(V)``.
    n_a, n_b : int or array_like
        Observations per variant so far, each at least 1.
    tau2 : float
        Mixing variance of the standardised effect.
    alpha : float
        1 minus the coverage of the sequence (over all looks together).

    Examples
    --------
    >>> round(float(mixture_half_width(1.0, 8_200, 8_200, tau2=2e-3)), 2)  # near the optimum r
    3.04
    """
    se, n_a, n_b = (np.asarray(x, dtype=np.float64) for x in (se, n_a, n_b))
    r = tau2 / (1.0 / n_a + 1.0 / n_b)
    return (se * np.sqrt((1.0 + r) / r * (2.0 * math.log(1.0 / alpha) + np.log1p(r))))[()]


def tau2_for_sample_size(n_per_variant: float, alpha: float = 0.05) -> float:
    """Return the ``tau2`` whose confidence sequence is narrowest at ``n_per_variant`` per variant.

    Uses Howard et al.'s (2021) approximation of the optimal ``r``, ``2 log(1/alpha) + log(1 + 2
    log(1/alpha))``, with ``1/n_a + 1/n_b = 2 / n_per_variant``.

    Examples
    --------
    >>> round(tau2_for_sample_size(16_000), 5)
    0.00099
    """
    n = check_in_range("n_per_variant", n_per_variant, 1.0, math.inf)
    alpha = check_in_range("alpha", alpha, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    two_log = 2.0 * math.log(1.0 / alpha)
    return (two_log + math.log1p(two_log)) * 2.0 / n


class SequentialTest:
    """Always-valid test of ``mean_b - mean_a``: update it with each batch, read it at any time.

    Each :meth:`update` adds one batch of observations per variant (a window's) and is one look. The
    p-value is the running minimum of the mixture SPRT's (Johari et al. 2022) and the interval the running
    intersection of the normal-mixture confidence sequence (Howard et al. 2021); the module docstring has
    the math and what is asymptotic about it.

    Parameters
    ----------
    metric : {"proportion", "mean"}, default "proportion"
        ``"proportion"`` for 0/1 outcomes (accuracy, error rate): the variance follows from the mean.
        ``"mean"`` for numeric outcomes: the variance is estimated (Welch).
    alpha : float, default 0.05
        Significance level, in (0, 1): the probability that an A/A comparison is *ever* declared
        significant, over all looks together.
    tau2 : float, default 1e-3
        Mixing variance of the standardised effect, greater than 0; see :func:`tau2_for_sample_size`.
    min_samples : int, default 100
        Observations each variant needs before anything is tested (at least 2): the normal approximation
        is poorest in the first looks, and a running minimum or intersection never forgets an early error.

    Examples
    --------
    >>> rng = np.random.default_rng(7)
    >>> test = SequentialTest("proportion", alpha=0.05)
    >>> for _ in range(50):  # 50 windows of 400 predictions per variant; b is 3 points more accurate
    ...     result = test.update(ArmStats.from_successes(400, int(rng.binomial(400, 0.80))),
    ...                          ArmStats.from_successes(400, int(rng.binomial(400, 0.83))))
    >>> result.significant, result.direction, result.looks
    (True, 'increase', 50)
    >>> result.ci_low > 0 and result.ci_low <= result.lift <= result.ci_high
    True
    >>> test.to_state() == SequentialTest.from_state(test.to_state()).to_state()
    True
    """

    def __init__(
        self,
        metric: str = "proportion",
        *,
        alpha: float = 0.05,
        tau2: float = DEFAULT_TAU2,
        min_samples: int = 100,
    ):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}.")
        self.metric = metric
        self.alpha = check_in_range("alpha", alpha, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        self.tau2 = check_in_range("tau2", tau2, 0.0, math.inf, low_inclusive=False)
        if not isinstance(min_samples, numbers.Integral) or isinstance(min_samples, bool) or min_samples < 2:
            raise ValueError(f"min_samples must be an integer at least 2, got {min_samples!r}.")
        self.min_samples = int(min_samples)
        self.reset()

    def reset(self) -> None:
        """Forget every observation and look."""
        self._a = ArmStats()
        self._b = ArmStats()
        self._looks = 0
        self._p = 1.0
        self._low = -math.inf
        self._high = math.inf
        self._direction = "none"

    def update(self, a: ArmStats, b: ArmStats) -> SequentialResult:
        """Add one batch of observations per variant (either may be empty) and look; return the result."""
        for name, arm in (("a", a), ("b", b)):
            if not isinstance(arm, ArmStats):
                raise TypeError(f"{name} must be an ArmStats, got {type(arm).__name__}.")
            if self.metric == "proportion" and arm.n and not 0.0 <= arm.mean <= 1.0:
                raise ValueError(f"{name} must hold 0/1 outcomes for a proportion, got mean {arm.mean!r}.")
        self._a, self._b = self._a + a, self._b + b
        self._looks += 1
        p, low, high = self._look()
        self._p = min(self._p, p)
        if self._direction == "none" and self._p <= self.alpha:
            # Fixed when the decision is made: a later sign change of the estimate does not undo a rejection.
            self._direction = "increase" if self._b.mean > self._a.mean else "decrease"
        new_low, new_high = max(self._low, low), min(self._high, high)
        if new_low <= new_high:
            self._low, self._high = new_low, new_high
        else:
            # Only possible once the sequence has already failed to cover (probability <= alpha): an empty
            # interval would say nothing, so start the intersection again from this look.
            self._low, self._high = low, high
        return self.result

    def _look(self) -> tuple[float, float, float]:
        a, b = self._a, self._b
        if min(a.n, b.n) < self.min_samples:
            return 1.0, -math.inf, math.inf
        lift = b.mean - a.mean
        if self.metric == "proportion":
            pooled = (a.total + b.total) / (a.n + b.n)
            var_test = pooled * (1.0 - pooled) * (1.0 / a.n + 1.0 / b.n)
            pa, pb = (a.total + 0.5) / (a.n + 1.0), (b.total + 0.5) / (b.n + 1.0)
            var_ci = pa * (1.0 - pa) / a.n + pb * (1.0 - pb) / b.n
        else:
            var_test = var_ci = a.variance / a.n + b.variance / b.n
        p = float(mixture_p_value(lift / math.sqrt(var_test), a.n, b.n, self.tau2)) if var_test > 0 else 1.0
        if var_ci > 0:
            half = float(mixture_half_width(math.sqrt(var_ci), a.n, b.n, self.tau2, self.alpha))
            return p, lift - half, lift + half
        # Constant values in both variants: no variance to build an interval from at this look.
        return p, -math.inf, math.inf

    @property
    def result(self) -> SequentialResult:
        """The result after the latest look (before any look: nothing tested)."""
        a, b = self._a, self._b
        mean_a = a.mean if a.n else math.nan
        mean_b = b.mean if b.n else math.nan
        lift = mean_b - mean_a
        significant = self._p <= self.alpha
        return SequentialResult(
            metric=self.metric,
            n_a=a.n,
            n_b=b.n,
            mean_a=mean_a,
            mean_b=mean_b,
            lift=lift,
            lift_relative=lift / abs(mean_a) if mean_a else math.nan,
            p_value=self._p,
            ci_low=self._low,
            ci_high=self._high,
            alpha=self.alpha,
            significant=significant,
            direction=self._direction,
            looks=self._looks,
        )

    def to_state(self) -> dict:
        """Return the whole state as JSON-able values (infinities as ``None``), for checkpoints."""
        return {
            "metric": self.metric, "alpha": self.alpha, "tau2": self.tau2, "min_samples": self.min_samples,
            "a": [self._a.n, self._a.mean, self._a.m2], "b": [self._b.n, self._b.mean, self._b.m2],
            "looks": self._looks, "p_value": self._p, "ci_low": finite_or_none(self._low), "ci_high": finite_or_none(self._high),
            "direction": self._direction,
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict) -> SequentialTest:
        """Rebuild a test from :meth:`to_state`; it continues exactly where the original was."""
        test = cls(state["metric"], alpha=state["alpha"], tau2=state["tau2"], min_samples=state["min_samples"])
        test._a, test._b = ArmStats(*state["a"]), ArmStats(*state["b"])
        test._looks, test._p = int(state["looks"]), float(state["p_value"])
        test._low = -math.inf if state["ci_low"] is None else float(state["ci_low"])
        test._high = math.inf if state["ci_high"] is None else float(state["ci_high"])
        direction = state.get("direction")
        if direction is None:  # a state written before the direction was kept: as it was then reported
            lift = test._b.mean - test._a.mean
            direction = ("increase" if lift > 0 else "decrease") if test._p <= test.alpha else "none"
        test._direction = direction
        return test

    def __repr__(self) -> str:
        return (f"SequentialTest({self.metric!r}, alpha={self.alpha}, tau2={self.tau2}, "
                f"min_samples={self.min_samples})")
