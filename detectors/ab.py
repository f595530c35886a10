"""A/B experiment checks besides the always-valid test: sample-ratio mismatch, fixed-horizon tests, guardrails.

* :func:`sample_ratio_mismatch` asks whether the split itself works. When the observed assignment counts
  do not fit the intended shares, the variants no longer see comparable traffic and every other figure of
  the experiment is suspect, however significant.
* :func:`two_proportion_z_test`, :func:`welch_t_test` and :func:`required_sample_size` are the textbook
  fixed-horizon figures. They are valid only when read **once**, at the sample size planned before the
  experiment started; read on a dashboard every window, their false-positive rate is several times alpha
  (``bench/ab_simulation.py``). Their results carry ``valid_now`` and report ``significant`` only from the
  planned size on. For a verdict that may be read at any time use :class:`detectors.sequential.SequentialTest`.
* :func:`evaluate_guardrail` compares a metric that must not get worse (latency, error rate) with its
  tolerance.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from detectors.base import as_dict, check_in_range, finite_or_none

__all__ = [
    "SRMResult",
    "FixedHorizonResult",
    "GuardrailResult",
    "GUARDRAIL_DIRECTIONS",
    "sample_ratio_mismatch",
    "two_proportion_z_test",
    "welch_t_test",
    "required_sample_size",
    "evaluate_guardrail",
]

GUARDRAIL_DIRECTIONS = ("increase_is_bad", "decrease_is_bad")
# Pearson's chi-square is an asymptotic test; below this expected count per variant it is not trusted.
_MIN_EXPECTED = 5.0


def _alpha(value: object) -> float:
    return check_in_range("alpha", value, 0.0, 1.0, low_inclusive=False, high_inclusive=False)


def _count(name: str, value: object) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a nonnegative integer, got {value!r}.")
    return int(value)


# -- sample-ratio mismatch ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SRMResult:
    """Chi-square goodness-of-fit test of the assignment counts against the intended shares.

    ``variants`` are the intended ones, in the order given; a variant with no events has an observed
    count of 0. Traffic to variants that were not intended is not part of the chi-square test (it has no
    expected count) but is listed in ``unexpected_variants`` and counts as a mismatch on its own.
    ``reason`` says why ``mismatch`` is what it is: ``"ok"``, ``"chi_square"`` (``p_value < alpha``),
    ``"unexpected_variants"``, ``"too_few"`` (an expected count below 5: not tested, ``p_value`` is 1) or
    ``"no_data"``.
    """

    variants: tuple[str, ...]
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    intended_share: tuple[float, ...]
    statistic: float
    dof: int
    p_value: float
    alpha: float
    mismatch: bool
    reason: str
    n: int
    unexpected_variants: tuple[str, ...]
    unexpected_n: int

    def to_dict(self) -> dict:
        """Return the result as JSON-able values; per-variant figures are keyed by variant.

        Written by hand, unlike the other results (``as_dict``): the JSON regroups four parallel tuples into
        one object per variant and derives ``observed_share``.
        """
        return {
            "mismatch": bool(self.mismatch),
            "reason": self.reason,
            "p_value": finite_or_none(self.p_value),
            "statistic": finite_or_none(self.statistic),
            "dof": int(self.dof),
            "alpha": finite_or_none(self.alpha),
            "n": int(self.n),
            "variants": {
                v: {
                    "observed": int(o),
                    "expected": finite_or_none(e),
                    "observed_share": finite_or_none(o / self.n) if self.n else None,
                    "intended_share": finite_or_none(s),
                }
                for v, o, e, s in zip(self.variants, self.observed, self.expected, self.intended_share)
            },
            "unexpected_variants": list(self.unexpected_variants),
            "unexpected_n": int(self.unexpected_n),
        }


def sample_ratio_mismatch(
    counts: Mapping[str, int], intended: Mapping[str, float], alpha: float = 0.001
) -> SRMResult:
    """Test observed assignment counts against the intended traffic shares (Pearson's chi-square).

    The default ``alpha`` is small (0.001, as is usual for SRM checks) because the check runs every window:
    a mismatch stops the reading of the experiment, so a false alarm is expensive, and a real mismatch
    quickly grows far beyond any threshold.

    Parameters
    ----------
    counts : Mapping[str, int]
        Events (or users) assigned to each variant. Intended variants missing here count 0; other variants
        are reported as unexpected.
    intended : Mapping[str, float]
        Intended share of each variant, at least two, each greater than 0. Normalised to sum to 1, so
        ``{"a": 50, "b": 50}`` and ``{"a": 0.5, "b": 0.5}`` are the same split.
    alpha : float, default 0.001
        Significance level, in (0, 1).

    Returns
    -------
    SRMResult

    Examples
    --------
    >>> sample_ratio_mismatch({"control": 10_400, "treatment": 9_600}, {"control": 0.5, "treatment": 0.5}).mismatch
    True
    >>> r = sample_ratio_mismatch({"control": 10_050, "treatment": 9_950}, {"control": 50, "treatment": 50})
    >>> r.mismatch, r.reason, round(r.p_value, 3)
    (False, 'ok', 0.48)
    >>> sample_ratio_mismatch({"control": 9_000}, {"control": 0.5, "treatment": 0.5}).observed
    (9000, 0)
    """
    alpha = _alpha(alpha)
    if len(intended) < 2:
        raise ValueError(f"intended must name at least two variants, got {len(intended)}.")
    names = tuple(str(v) for v in intended)
    weights = np.array([check_in_range(f"intended[{v!r}]", intended[v], 0.0, math.inf, low_inclusive=False)
                        for v in intended])
    share = weights / weights.sum()
    observed = np.array([_count(f"counts[{v!r}]", counts.get(v, 0)) for v in names], dtype=np.int64)
    extra = {str(v): _count(f"counts[{v!r}]", c) for v, c in counts.items() if v not in intended}
    unexpected = tuple(sorted(v for v, c in extra.items() if c))
    unexpected_n = sum(extra.values())
    n = int(observed.sum())
    expected = share * n
    dof = len(names) - 1
    if n == 0:
        statistic, p_value, reason = math.nan, 1.0, "no_data"
    elif expected.min() < _MIN_EXPECTED:
        statistic, p_value, reason = math.nan, 1.0, "too_few"
    else:
        statistic = float(np.sum(np.square(observed - expected) / expected))
        p_value = float(stats.chi2.sf(statistic, dof))
        reason = "chi_square" if p_value < alpha else "ok"
    if unexpected_n and reason != "chi_square":
        reason = "unexpected_variants"
    return SRMResult(
        variants=names,
        observed=tuple(int(o) for o in observed),
        expected=tuple(float(e) for e in expected),
        intended_share=tuple(float(s) for s in share),
        statistic=statistic,
        dof=dof,
        p_value=p_value,
        alpha=alpha,
        mismatch=reason in ("chi_square", "unexpected_variants"),
        reason=reason,
        n=n,
        unexpected_variants=unexpected,
        unexpected_n=unexpected_n,
    )


# -- fixed-horizon tests --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FixedHorizonResult:
    """A fixed-horizon test of ``mean_b - mean_a``: valid only once both variants reach ``planned_n``.

    ``valid_now`` is ``min(n_a, n_b) >= planned_n``. Before that the p-value and interval are still
    reported (they are what a textbook would compute) but ``significant`` is False: reading them early,
    and again and again, is exactly what makes a fixed-horizon test lie. ``test`` is ``"z"`` (two
    proportions, pooled standard error for the statistic, unpooled for the interval) or ``"welch_t"``;
    ``dof`` is ``None`` for the z-test.
    """

    test: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    lift: float
    lift_relative: float
    statistic: float
    dof: float | None
    p_value: float
    ci_low: float
    ci_high: float
    alpha: float
    planned_n: int
    valid_now: bool
    significant: bool

    def to_dict(self) -> dict:
        """Return the result as JSON-able values (fields in order; undefined numbers are ``None``)."""
        return as_dict(self)


def _planned(planned_n: object) -> int:
    if not isinstance(planned_n, numbers.Integral) or isinstance(planned_n, bool) or planned_n < 2:
        raise ValueError(f"planned_n must be an integer at least 2, got {planned_n!r}.")
    return int(planned_n)


def _fixed_result(test, n_a, n_b, mean_a, mean_b, statistic, dof, p_value, half, alpha, planned_n):
    lift = mean_b - mean_a
    valid_now = min(n_a, n_b) >= planned_n
    return FixedHorizonResult(
        test=test, n_a=n_a, n_b=n_b, mean_a=mean_a, mean_b=mean_b, lift=lift,
        lift_relative=lift / abs(mean_a) if mean_a else math.nan,
        statistic=statistic, dof=dof, p_value=p_value, ci_low=lift - half, ci_high=lift + half, alpha=alpha,
        planned_n=planned_n, valid_now=valid_now, significant=bool(valid_now and p_value < alpha),
    )  # fmt: skip


def two_proportion_z_test(
    successes_a: int, n_a: int, successes_b: int, n_b: int, *, planned_n: int, alpha: float = 0.05
) -> FixedHorizonResult:
    """Two-sided two-proportion z-test of ``p_b - p_a``; valid once both variants reach ``planned_n``.

    The statistic uses the pooled standard error (the variance under ``p_a = p_b``), the Wald interval at
    level ``1 - alpha`` the unpooled one. Without variance (no successes or no failures at all) the
    p-value is 1 and the interval NaN.

    Parameters
    ----------
    successes_a, n_a, successes_b, n_b : int
        Successes and trials per variant, ``0 <= successes <= n``.
    planned_n : int
        Sample size per variant fixed before the experiment (:func:`required_sample_size`).
    alpha : float, default 0.05
        Two-sided significance level, in (0, 1).

    Examples
    --------
    >>> r = two_proportion_z_test(1_000, 10_000, 1_120, 10_000, planned_n=15_000)
    >>> round(r.p_value, 4), r.valid_now, r.significant  # p < 0.05, but looked at too early
    (0.0058, False, False)
    >>> two_proportion_z_test(1_500, 15_000, 1_680, 15_000, planned_n=15_000).significant
    True
    """
    alpha, planned_n = _alpha(alpha), _planned(planned_n)
    k_a, n_a, k_b, n_b = (_count(name, v) for name, v in
                          (("successes_a", successes_a), ("n_a", n_a), ("successes_b", successes_b), ("n_b", n_b)))
    if k_a > n_a or k_b > n_b:
        raise ValueError("successes must be at most the number of trials of their variant.")
    if n_a == 0 or n_b == 0:
        nan = math.nan
        return _fixed_result("z", n_a, n_b, k_a / n_a if n_a else nan, k_b / n_b if n_b else nan,
                             nan, None, 1.0, nan, alpha, planned_n)
    p_a, p_b = k_a / n_a, k_b / n_b
    pooled = (k_a + k_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    if se_pooled == 0:
        return _fixed_result("z", n_a, n_b, p_a, p_b, math.nan, None, 1.0, math.nan, alpha, planned_n)
    z = (p_b - p_a) / se_pooled
    p_value = float(2 * stats.norm.sf(abs(z)))
    return _fixed_result("z", n_a, n_b, p_a, p_b, z, None, p_value, stats.norm.ppf(1 - alpha / 2) * se,
                         alpha, planned_n)


def welch_t_test(
    mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int, *,
    planned_n: int, alpha: float = 0.05,
) -> FixedHorizonResult:  # fmt: skip
    """Two-sided Welch t-test of ``mean_b - mean_a`` from summary statistics; valid from ``planned_n`` on.

    The degrees of freedom are Welch–Satterthwaite's, and the interval is the matching t interval at level
    ``1 - alpha`` (the same as ``scipy.stats.ttest_ind(..., equal_var=False)``). With fewer than two
    values in a variant, or no variance in either, the p-value is 1 and the interval NaN.

    Parameters
    ----------
    mean_a, sd_a, n_a, mean_b, sd_b, n_b
        Mean, sample standard deviation (``ddof = 1``) and size of each variant
        (:class:`detectors.sequential.ArmStats` has all three).
    planned_n : int
        Sample size per variant fixed before the experiment (:func:`required_sample_size`).
    alpha : float, default 0.05
        Two-sided significance level, in (0, 1).

    Examples
    --------
    >>> r = welch_t_test(4.00, 1.2, 5_000, 4.05, 1.3, 5_000, planned_n=5_000)
    >>> round(r.p_value, 4), r.significant, round(r.dof)
    (0.0457, True, 9935)
    """
    alpha, planned_n = _alpha(alpha), _planned(planned_n)
    n_a, n_b = _count("n_a", n_a), _count("n_b", n_b)
    for name, v in (("mean_a", mean_a), ("mean_b", mean_b)):
        check_in_range(name, v, -math.inf, math.inf)
    for name, v in (("sd_a", sd_a), ("sd_b", sd_b)):
        check_in_range(name, v, 0.0, math.inf)
    mean_a, mean_b = float(mean_a), float(mean_b)
    va = sd_a**2 / n_a if n_a else math.nan
    vb = sd_b**2 / n_b if n_b else math.nan
    if min(n_a, n_b) < 2 or va + vb == 0:
        return _fixed_result("welch_t", n_a, n_b, mean_a if n_a else math.nan, mean_b if n_b else math.nan,
                             math.nan, None, 1.0, math.nan, alpha, planned_n)
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    t = (mean_b - mean_a) / se
    p_value = float(2 * stats.t.sf(abs(t), dof))
    return _fixed_result("welch_t", n_a, n_b, mean_a, mean_b, t, dof, p_value,
                         stats.t.ppf(1 - alpha / 2, dof) * se, alpha, planned_n)


def required_sample_size(
    *,
    mde: float,
    p_baseline: float | None = None,
    sd: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Return the sample size per variant a two-sided fixed-horizon test needs to detect ``mde``.

    Give exactly one of ``p_baseline`` (a proportion: the two-proportion z-test, with the variance under
    the null for the critical value and under the alternative for the power) or ``sd`` (a mean: the normal
    approximation of Welch's test with equal standard deviations)::

        proportion: n = (z_{1-alpha/2} sqrt(2 pbar (1 - pbar)) + z_power sqrt(p1 (1 - p1) + p2 (1 - p2)))^2 / mde^2
        mean:       n = 2 (z_{1-alpha/2} + z_power)^2 sd^2 / mde^2

    with ``p1 = p_baseline``, ``p2 = p_baseline + mde``, ``pbar = (p1 + p2) / 2``.

    Parameters
    ----------
    mde : float
        Minimum detectable effect, as an absolute difference (``0.01`` is one percentage point); nonzero,
        negative for a decrease. For a proportion, ``p_baseline + mde`` must be in (0, 1).
    p_baseline : float, optional
        Baseline proportion, in (0, 1).
    sd : float, optional
        Standard deviation of one observation, greater than 0.
    alpha : float, default 0.05
        Two-sided significance level, in (0, 1).
    power : float, default 0.8
        Probability of detecting an effect of size ``mde``, in (0, 1).

    Examples
    --------
    >>> required_sample_size(p_baseline=0.10, mde=0.01)
    14751
    >>> required_sample_size(sd=1.0, mde=0.1, power=0.9)
    2102
    """
    alpha = _alpha(alpha)
    power = check_in_range("power", power, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    mde = check_in_range("mde", mde, -math.inf, math.inf)
    if mde == 0:
        raise ValueError("mde must be a nonzero number, got 0.")
    if (p_baseline is None) == (sd is None):
        raise ValueError("give exactly one of p_baseline (a proportion) or sd (a mean).")
    z_alpha, z_power = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    if p_baseline is not None:
        p1 = check_in_range("p_baseline", p_baseline, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        p2 = p1 + mde
        if not 0.0 < p2 < 1.0:
            raise ValueError(f"p_baseline + mde must be in (0, 1), got {p2!r}.")
        pbar = (p1 + p2) / 2
        root = z_alpha * math.sqrt(2 * pbar * (1 - pbar)) + z_power * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
        n = root**2 / mde**2
    else:
        sd = check_in_range("sd", sd, 0.0, math.inf, low_inclusive=False)
        n = 2 * (z_alpha + z_power) ** 2 * sd**2 / mde**2
    # Round away float noise before the ceiling so that an exact integer answer is not pushed up by one.
    return max(2, math.ceil(round(n, 9)))


# -- guardrails -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GuardrailResult:
    """A guardrail metric of the treatment against the control, and whether it got worse than tolerated.

    ``delta`` is ``treatment - control``; ``threshold`` is the tolerated worsening as an absolute
    difference (``tolerance``, or ``tolerance * |control|`` when ``relative``). ``breached`` is True when
    the worsening exceeds it: judged on ``delta``, or, when an ``interval`` for the difference was given,
    on its end nearest to "no worse" (the breach is then established with the interval's confidence).
    ``evaluated`` is False when a value is missing or not finite; such a guardrail is never breached.
    """

    name: str
    value_control: float
    value_treatment: float
    delta: float
    delta_relative: float
    direction: str
    tolerance: float
    relative: bool
    threshold: float
    interval_low: float
    interval_high: float
    evaluated: bool
    breached: bool

    def to_dict(self) -> dict:
        """Return the result as JSON-able values (fields in order; undefined numbers are ``None``)."""
        return as_dict(self)


def _value(x: object) -> float:
    if x is None or isinstance(x, bool) or not isinstance(x, numbers.Real):
        return math.nan
    return float(x)


def evaluate_guardrail(
    name: str,
    value_control: float | None,
    value_treatment: float | None,
    direction: str,
    tolerance: float = 0.0,
    *,
    relative: bool = False,
    interval: tuple[float, float] | None = None,
) -> GuardrailResult:
    """Return whether the treatment's value of a guardrail metric is worse than the control's by more than tolerated.

    Parameters
    ----------
    name : str
        Guardrail name (``"latency_p99_ms"``, ``"error_rate"``, ``"low_confidence_ratio"``).
    value_control, value_treatment : float or None
        The metric per variant; ``None`` or NaN when unknown (not evaluated).
    direction : {"increase_is_bad", "decrease_is_bad"}
        Which way is worse.
    tolerance : float, default 0
        Worsening tolerated, at least 0: absolute (``0.005`` is half a point of error rate), or a fraction
        of the control's value when ``relative`` (``0.1``: 10% slower p99).
    relative : bool, default False
        Whether ``tolerance`` is relative to ``|value_control|``.
    interval : (float, float), optional
        A confidence interval (or sequence) for ``value_treatment - value_control``, e.g. a
        :class:`detectors.sequential.SequentialResult`'s ``(ci_low, ci_high)``. When given, the breach
        must hold for the whole interval, not only for the point estimate.

    Examples
    --------
    >>> evaluate_guardrail("latency_p99_ms", 120.0, 150.0, "increase_is_bad", 0.1, relative=True).breached
    True
    >>> evaluate_guardrail("error_rate", 0.020, 0.023, "increase_is_bad", 0.005).breached
    False
    >>> evaluate_guardrail("error_rate", 0.020, 0.030, "increase_is_bad", 0.005, interval=(0.004, 0.016)).breached
    False
    """
    if direction not in GUARDRAIL_DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(GUARDRAIL_DIRECTIONS)}, got {direction!r}.")
    tolerance = check_in_range("tolerance", tolerance, 0.0, math.inf)
    if not isinstance(relative, bool):
        raise ValueError(f"relative must be True or False, got {relative!r}.")
    low = high = math.nan
    if interval is not None:
        low, high = (_value(v) for v in interval)
        if math.isnan(low) or math.isnan(high) or low > high:
            raise ValueError(f"interval must be (low, high) with low <= high, got {interval!r}.")
    control, treatment = _value(value_control), _value(value_treatment)
    evaluated = math.isfinite(control) and math.isfinite(treatment)
    delta = treatment - control
    threshold = tolerance * abs(control) if relative else tolerance
    breached = False
    if evaluated:
        # The end of the interval nearest to "no worse" must itself be beyond the tolerance.
        if direction == "increase_is_bad":
            breached = (low if interval is not None else delta) > threshold
        else:
            breached = (high if interval is not None else delta) < -threshold
    return GuardrailResult(
        name=str(name), value_control=control, value_treatment=treatment,
        delta=delta if evaluated else math.nan,
        delta_relative=delta / abs(control) if evaluated and control else math.nan,
        direction=direction, tolerance=tolerance, relative=relative,
        threshold=threshold if math.isfinite(threshold) else math.nan,
        interval_low=low, interval_high=high, evaluated=evaluated, breached=bool(breached),
    )  # fmt: skip
