"""Input drift: a two-sample Kolmogorov–Smirnov test per feature, window against reference.

The statistic is exactly ``scipy.stats.ks_2samp``'s (ties included). The p-value is Smirnov's asymptotic
one, ``scipy.stats.kstwo.sf(D, round(n * m / (n + m)))``, which is what ``ks_2samp(method="asymp")``
returns. We do not use ``ks_2samp``'s default ``method="auto"``: it switches to the exact distribution at
and below 10,000 values per sample, so a window's p-value would change method, and jump, as the window
crosses that size. For samples of 200 values or more the asymptotic p-value is within 0.01 (absolute) of
the exact one, and within 10% (relative) of it below 0.05 (``tests/detectors/test_ks_drift.py`` checks both),
which is far from moving a verdict at ``alpha = 0.01``. The one deviation from scipy: when both samples hold
a single value the effective size rounds to 0, where scipy's p-value is NaN; we use 1 instead.

Speed comes from doing the reference's work once, at construction: each reference feature is sorted and its
empirical CDF evaluated at its own points. A window then costs one sort of all its features together and,
per feature, one linear merge with the sorted reference and a few linear passes; see ``bench/detectors.py``.
Most text features take few distinct values (counts, ratios of short texts, 0 for most texts): against such a
reference the statistic is read off at the window's distinct values only (:func:`_statistic_runs`), the same
float with a fraction of the work.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping

import numpy as np
from scipy import special, stats

from detectors.base import FeatureDrift, InputDriftResult, check_in_range
from detectors.correction import CORRECTIONS, adjust_p_values
from detectors.proportions import ProportionReference

__all__ = ["KSDrift", "KSReference", "ks_statistic_sorted", "ks_p_value"]


def ks_p_value(statistic, n_ref, n_window):
    """Return the asymptotic two-sided p-value of two-sample KS statistics; broadcasts over arrays.

    Equal to ``scipy.stats.ks_2samp(..., method="asymp").pvalue`` for the samples the statistic came from,
    except that an effective size that rounds to 0 (two one-value samples) is taken as 1 instead of giving
    NaN.

    Parameters
    ----------
    statistic : float or array_like
        KS statistics in [0, 1].
    n_ref, n_window : int or array_like
        Sizes of the two samples, each at least 1.

    Returns
    -------
    numpy.float64 or numpy.ndarray
        p-values in [0, 1], with the broadcast shape of the inputs.

    Examples
    --------
    >>> float(ks_p_value(0.0, 100, 100))
    1.0
    >>> ks_p_value([0.05, 0.2], 1000, 1000) < 0.01
    array([False,  True])
    """
    d, n1, n2 = np.broadcast_arrays(
        np.asarray(statistic, dtype=np.float64),
        np.asarray(n_ref, dtype=np.float64),
        np.asarray(n_window, dtype=np.float64),
    )
    n = np.maximum(np.round(n1 * n2 / (n1 + n2)), 1.0)
    # scipy evaluates this branch (n > 140, 2.2 <= n d^2 < 370, d < 0.5: every clearly significant statistic
    # of a realistic window) as 2 * scipy.special.smirnov(n, d), which takes ~5 ms at n = 5000 and would
    # dominate a window's test. We sum the same exact series vectorised instead (_smirnov_sf).
    t = n * d
    series = (n > 140) & (d < 0.5) & (t * d >= 2.2) & (t * d < 370.0)
    p = np.empty(d.shape)
    if series.any():
        p[series] = [2.0 * _smirnov_sf(n_i, d_i) for n_i, d_i in zip(n[series], d[series])]
    if not series.all():
        p[~series] = stats.kstwo.sf(d[~series], n[~series])
    return np.clip(p, 0.0, 1.0)[()]


def _smirnov_sf(n: float, x: float) -> float:
    """Return ``P(D+_n >= x)``, the one-sided Smirnov tail, by the Birnbaum–Tingey series.

    ``x * sum_j C(n, j) (1 - x - j/n)^(n - j) (x + j/n)^(j - 1)`` over ``j = 0 .. floor(n (1 - x))``: the
    series ``scipy.special.smirnov`` sums. Every term is positive, so summing them in log space loses
    nothing to cancellation; what is left is the rounding of the log-factorials (~1e-11 relative at
    n = 10^4, ~3e-10 at 5 * 10^5, against scipy).
    """
    log_factorial = _log_factorials(int(n))
    j = np.arange(int(np.floor(n * (1.0 - x))) + 1)
    jf = j.astype(np.float64)
    log_terms = (
        log_factorial[-1]
        - log_factorial[j]
        - log_factorial[int(n) - j]
        # The last base can round to a hair below 0; it is exactly 0 in the series' terms.
        + special.xlogy(n - jf, np.maximum(1.0 - x - jf / n, 0.0))
        + (jf - 1.0) * np.log(x + jf / n)
    )
    # logsumexp by hand: scipy.special.logsumexp's array-API dispatch costs more than the sum itself here.
    top = log_terms.max()
    return float(x * np.exp(top + np.log(np.exp(log_terms - top).sum())))


@functools.lru_cache(maxsize=8)
def _log_factorials(n: int) -> np.ndarray:
    """Return ``log(k!)`` for ``k = 0 .. n``; cached because every feature of a window shares one ``n``."""
    table = special.gammaln(np.arange(n + 1, dtype=np.float64) + 1.0)
    table.flags.writeable = False
    return table


def ks_statistic_sorted(ref_sorted: np.ndarray, window_sorted: np.ndarray) -> float:
    """Return the two-sample KS statistic of two sorted samples.

    Equal to ``scipy.stats.ks_2samp(ref, window).statistic`` (ties included) without sorting again.

    Parameters
    ----------
    ref_sorted, window_sorted : numpy.ndarray
        Non-empty, one-dimensional, finite and sorted in ascending order.

    Returns
    -------
    float
        The largest absolute difference between the two empirical CDFs, in [0, 1].

    Examples
    --------
    >>> ks_statistic_sorted(np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.0, 4.0, 5.0, 6.0]))
    0.5
    """
    ref = _sorted_1d("ref_sorted", ref_sorted)
    win = _sorted_1d("window_sorted", window_sorted)
    return _statistic(ref, _ecdf_counts(ref), win)


class KSReference:
    """A reference sample prepared once for two-sample KS tests against many windows.

    Its finite values are sorted and their empirical CDF counts computed here, once; both are read-only, so
    one reference is shared by every window of a stream (and by every detector that tests against it) and
    cannot drift itself. A window then costs one merge with the sorted reference.

    Parameters
    ----------
    values : numpy.ndarray
        One-dimensional reference sample; non-finite values are left out. It may be empty
        (:attr:`n` is then 0 and nothing can be tested against it).
    name : str, default "reference"
        What error messages call the sample.

    Examples
    --------
    >>> ref = KSReference(np.array([1.0, 2.0, 3.0, 4.0]))
    >>> ref.statistic(np.array([3.0, 4.0, 5.0, 6.0]))
    0.5
    >>> d, p = ref.test(np.array([6.0, 5.0, np.nan, 4.0, 3.0]))
    >>> d, p
    (0.5, 0.5)
    """

    __slots__ = ("sorted", "_right", "_runs")

    def __init__(self, values: np.ndarray, *, name: str = "reference"):
        self.sorted, self._right = _prepare_reference(name, values)
        self._runs = _reference_runs(self.sorted)

    @property
    def n(self) -> int:
        """Number of finite reference values."""
        return int(self.sorted.size)

    def statistic(self, window_sorted: np.ndarray) -> float:
        """Return the KS statistic against a sorted, finite, non-empty window (not checked: the hot path).

        Equal to ``scipy.stats.ks_2samp(reference, window).statistic``, ties included.
        """
        if self._runs is not None:
            return _statistic_runs(*self._runs, self.sorted.size, window_sorted)
        return _statistic(self.sorted, self._right, window_sorted)

    def test(self, window: np.ndarray) -> tuple[float, float]:
        """Return ``(statistic, p_value)`` against a window's finite values, in any order.

        A window (or reference) without a finite value gives ``(0.0, 1.0)``: nothing to compare is no evidence
        of a difference.
        """
        values = np.asarray(window, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"window must be one-dimensional, got shape {values.shape}.")
        win = np.sort(values[np.isfinite(values)])
        if win.size == 0 or self.sorted.size == 0:
            return 0.0, 1.0
        d = self.statistic(win)
        return d, float(ks_p_value(d, self.sorted.size, win.size))

    def __repr__(self) -> str:
        return f"KSReference(n={self.n})"


_Tested = tuple[float, float, int]  # one tested feature: statistic, p-value, window n


class KSDrift:
    """Two-sample Kolmogorov–Smirnov drift test of every input feature a window shares with the reference.

    A feature is tested when both the reference and the window hold at least one finite value of it;
    non-finite values are left out of that feature's test. The p-values of the tested features are adjusted
    together (``correction``), and a feature is drifted when its adjusted p-value is below ``alpha`` **and**
    its statistic is at least ``min_effect``: with a large window, a shift too small to matter is still
    significant, and the effect floor keeps it from raising an alarm.

    Features named in ``binary`` (0/1 values, like ``empty`` or ``truncated``) are tested as proportions
    instead (:class:`detectors.proportions.ProportionReference`: a two-proportion z-test, statistic the
    absolute difference of the shares of ones), against the ABSOLUTE floor ``min_proportion_delta``; a
    relative floor of 0.1 would let truncation rise from 0% to 8% unflagged. Their p-values are adjusted in
    the same family as the KS features'.

    Parameters
    ----------
    reference : Mapping[str, numpy.ndarray]
        One-dimensional reference sample per feature. Sorted once, here; the arrays are not kept.
    alpha : float, default 0.01
        Significance level of the adjusted p-values, in (0, 1).
    min_effect : float, default 0.1
        Smallest KS statistic (the largest gap between the two empirical CDFs) that counts as drift, in
        [0, 1].
    correction : {"bh", "bonferroni"}, default "bh"
        Multiple-testing correction across features; see :func:`detectors.correction.adjust_p_values`.
    binary : Collection[str], default ()
        Names of reference features holding 0/1 values, tested as proportions. Each must be a reference
        feature whose finite values are 0 or 1.
    min_proportion_delta : float, default 0.02
        Smallest absolute difference of the shares of ones (0.02: two percentage points) that counts as drift
        for a ``binary`` feature, in [0, 1].

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> reference = {"char_length": rng.normal(80, 20, 5000), "digit_ratio": rng.beta(1, 20, 5000)}
    >>> detector = KSDrift(reference, alpha=0.01, min_effect=0.1)
    >>> detector.feature_names
    ('char_length', 'digit_ratio')
    >>> window = {"char_length": rng.normal(110, 20, 1000), "digit_ratio": rng.beta(1, 20, 1000)}
    >>> result = detector.test(window)
    >>> result.drifted
    True
    >>> [(f.feature, f.drifted) for f in result.features]
    [('char_length', True), ('digit_ratio', False)]
    >>> result.to_dict()["features"]["char_length"]["window_n"]
    1000

    A 0/1 feature rising from 1% to 8% of the texts: a KS test's 0.1 floor would not flag it.

    >>> reference["truncated"] = (rng.random(5000) < 0.01).astype(float)
    >>> detector = KSDrift(reference, binary=["truncated"], min_proportion_delta=0.02)
    >>> window["truncated"] = (rng.random(1000) < 0.08).astype(float)
    >>> t = next(f for f in detector.test(window).features if f.feature == "truncated")
    >>> t.test, t.drifted, t.statistic > 0.05, t.min_effect
    ('proportion', True, True, 0.02)
    """

    def __init__(
        self,
        reference: Mapping[str, np.ndarray],
        *,
        alpha: float = 0.01,
        min_effect: float = 0.1,
        correction: str = "bh",
        binary: Collection[str] = (),
        min_proportion_delta: float = 0.02,
    ):
        self.alpha = check_in_range("alpha", alpha, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        self.min_effect = check_in_range("min_effect", min_effect, 0.0, 1.0)
        self.min_proportion_delta = check_in_range("min_proportion_delta", min_proportion_delta, 0.0, 1.0)
        if correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}.")
        self.correction = correction
        if isinstance(binary, str):
            raise ValueError(f"binary must be a collection of feature names, not the string {binary!r}.")
        self.binary = tuple(sorted(str(name) for name in set(binary)))
        unknown = set(self.binary) - {str(name) for name in reference}
        if unknown:
            raise ValueError(f"binary names features the reference does not have: {', '.join(sorted(unknown))}.")
        self._names = tuple(str(name) for name in reference)
        self._refs = tuple(
            ProportionReference(values, name=f"reference[{name!r}]") if str(name) in self.binary
            else KSReference(values, name=f"reference[{name!r}]")
            for name, values in reference.items()
        )  # fmt: skip

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the reference features, in the order results list them."""
        return self._names

    def test(self, window: Mapping[str, np.ndarray]) -> InputDriftResult:
        """Test one window's features against the reference.

        Parameters
        ----------
        window : Mapping[str, numpy.ndarray]
            One-dimensional values per feature. Features missing from the reference are ignored.

        Returns
        -------
        InputDriftResult
            One :class:`FeatureDrift` per tested feature, in reference order.
        """
        candidates = [i for i, name in enumerate(self._names) if name in window and self._refs[i].n]
        # 0/1 features: a proportion test each, merged into the family below in reference order.
        binary = [i for i in candidates if isinstance(self._refs[i], ProportionReference)]
        tested = self._test_proportions(window, binary)
        candidates = [i for i in candidates if not isinstance(self._refs[i], ProportionReference)]
        if not candidates and not tested:
            return self._result(())
        columns = [self._column(window, i) for i in candidates]
        if columns:
            tested.update(self._test_ks(candidates, columns))
        if not tested:
            return self._result(())
        return self._result(self._feature_drifts(tested))

    def _column(self, window: Mapping[str, np.ndarray], i: int) -> np.ndarray:
        column = np.asarray(window[self._names[i]], dtype=np.float64)
        if column.ndim != 1:
            raise ValueError(f"window[{self._names[i]!r}] must be one-dimensional, got shape {column.shape}.")
        return column

    def _test_proportions(self, window: Mapping[str, np.ndarray], binary: list[int]) -> dict[int, _Tested]:
        """Feature index -> (statistic, p-value, window n) of each 0/1 feature with a finite value in the window."""
        out = {}
        for i in binary:
            column = self._column(window, i)
            n = int(np.isfinite(column).sum())
            if n:
                out[i] = (*self._refs[i].test(column), n)
        return out

    def _test_ks(self, candidates: list[int], columns: list[np.ndarray]) -> dict[int, _Tested]:
        """Feature index -> (statistic, p-value, window n) of each KS feature with a finite value in the window."""
        # One block, one sort for every KS feature. Non-finite values become NaN, which np.sort puts last,
        # so each row's finite values are its sorted prefix.
        lengths = [c.size for c in columns]
        if len(set(lengths)) == 1:
            block = np.stack(columns)
        else:
            block = np.full((len(columns), max(lengths)), np.nan)
            for row, column in zip(block, columns):
                row[: column.size] = column
        finite = np.isfinite(block)
        if not finite.all():
            block[~finite] = np.nan
        block.sort(axis=-1)
        window_n = finite.sum(axis=-1)
        ks_rows = [(i, int(window_n[row]), row) for row, i in enumerate(candidates) if window_n[row]]
        if not ks_rows:
            return {}
        statistic = np.array([self._refs[i].statistic(block[row, :n]) for i, n, row in ks_rows])
        p_value = np.atleast_1d(ks_p_value(statistic, np.array([self._refs[i].n for i, _, _ in ks_rows]),
                                           np.array([n for _, n, _ in ks_rows])))
        return {i: (float(statistic[k]), float(p_value[k]), n) for k, (i, n, _) in enumerate(ks_rows)}

    def _feature_drifts(self, tested: dict[int, _Tested]) -> tuple[FeatureDrift, ...]:
        """One :class:`FeatureDrift` per tested feature, in reference order, its p-value adjusted in the family."""
        order = sorted(tested)  # reference order
        adjusted = adjust_p_values(np.array([tested[i][1] for i in order]), self.correction)
        features = []
        for k, i in enumerate(order):
            statistic_i, p_i, n = tested[i]
            proportion = isinstance(self._refs[i], ProportionReference)
            floor = self.min_proportion_delta if proportion else self.min_effect
            features.append(FeatureDrift(
                feature=self._names[i],
                statistic=statistic_i,
                p_value=p_i,
                p_value_adjusted=float(adjusted[k]),
                threshold=self.alpha,
                min_effect=floor,
                drifted=bool(adjusted[k] < self.alpha and statistic_i >= floor),
                window_n=n,
                reference_n=int(self._refs[i].n),
                test="proportion" if proportion else None,
            ))  # fmt: skip
        return tuple(features)

    def _result(self, features: tuple[FeatureDrift, ...]) -> InputDriftResult:
        return InputDriftResult(
            drifted=any(f.drifted for f in features),
            correction=self.correction,
            alpha=self.alpha,
            min_effect=self.min_effect,
            features=features,
        )

    def __repr__(self) -> str:
        return (f"KSDrift(features={list(self._names)}, alpha={self.alpha}, min_effect={self.min_effect}, "
                f"correction={self.correction!r}, binary={list(self.binary)}, "
                f"min_proportion_delta={self.min_proportion_delta})")


def _prepare_reference(name: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return a reference sample's finite values sorted, and its ECDF counts ``#{ref <= ref[i]}`` at them."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {values.shape}.")
    ref = np.sort(values[np.isfinite(values)])
    right = _ecdf_counts(ref)
    # Read-only: a detector is shared by every window of its stream and must not drift itself.
    ref.flags.writeable = False
    right.flags.writeable = False
    return ref, right


# A reference with at most this share of distinct values is tested by its runs of equal values
# (_statistic_runs); one with more by the merge (_statistic), which is then faster.
_RUNS_SHARE = 0.5


def _reference_runs(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The distinct values of a sorted reference with ``#{ref < v}`` and ``#{ref <= v}`` at each, each array
    ending past the last value (NaN, and the reference's size twice); None when most values are distinct."""
    n = ref.size
    if n == 0:
        return None
    starts = np.flatnonzero(np.concatenate(([True], ref[1:] != ref[:-1])))
    if starts.size > _RUNS_SHARE * n:
        return None
    values = np.append(ref[starts], np.nan)  # NaN sorts after every finite value, and equals none
    below = np.append(starts, n)
    at_or_below = np.concatenate((starts[1:], [n, n]))
    for a in (values, below, at_or_below):
        a.flags.writeable = False
    return values, below, at_or_below


def _sorted_1d(name: str, values: np.ndarray) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty one-dimensional array, got shape {a.shape}.")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must hold only finite values.")
    if np.any(a[1:] < a[:-1]):
        raise ValueError(f"{name} must be sorted in ascending order.")
    return a


def _ecdf_counts(a: np.ndarray) -> np.ndarray:
    """Return ``#{a <= a[j]}`` for every ``j`` of a sorted array, in linear time.

    A run of equal values shares the position one past its last element.
    """
    n = a.size
    ends = np.ones(n, dtype=bool)
    np.not_equal(a[1:], a[:-1], out=ends[:-1])
    return np.minimum.accumulate(np.where(ends, np.arange(1, n + 1), n)[::-1])[::-1]


def _statistic(ref: np.ndarray, ref_right: np.ndarray, win: np.ndarray) -> float:
    """Return the KS statistic of two sorted finite samples, given the reference's ECDF counts.

    ``F_ref - F_win`` only rises at reference values and only falls at window values, so its maximum is
    reached just below some window value (or is 0), and the maximum of ``F_win - F_ref`` at some window
    value. Both are therefore read off at the window's points alone. Within a run of equal window values
    the first (for the former) or last (for the latter) element gives the extreme, so the window's own
    positions stand in for its ECDF counts. The differences are formed as ``count1 / n1 - count2 / n2``, as
    scipy does, so the result is the same float.
    """
    n1 = ref.size
    below_window, at_window = _window_ecdf(win.size)
    below = _count_below(ref, win)
    # #{ref <= w}: where w equals a reference value, that value's precomputed ECDF count.
    at = np.minimum(below, n1 - 1)
    at_or_below = np.where(ref[at] == win, ref_right[at], below)
    d_plus = np.max(below / n1 - below_window)
    d_minus = np.max(at_window - at_or_below / n1)
    return float(max(d_plus, d_minus, 0.0))


def _statistic_runs(values: np.ndarray, below: np.ndarray, at_or_below: np.ndarray, n1: int, win: np.ndarray) -> float:
    """Return :func:`_statistic`'s float, reading the ECDFs at the window's distinct values only.

    ``values``, ``below``, ``at_or_below``: the reference's distinct values and its counts below and at each
    (:func:`_reference_runs`); ``n1`` its size. Within a run of equal window values ``F_ref`` is constant and
    the window's ECDF rises, so :func:`_statistic`'s ``d_plus`` is largest at the run's first element and
    ``d_minus`` at its last (float division and subtraction are monotone): the maximum over the runs' ends
    is the maximum over every element, formed from the same integer counts by the same operations.
    """
    n2 = win.size
    change = np.flatnonzero(win[1:] != win[:-1])  # the last element of every run but the last
    first = np.empty(change.size + 1, dtype=np.int64)
    first[0] = 0
    np.add(change, 1, out=first[1:])
    last = np.empty_like(first)
    last[:-1] = change
    last[-1] = n2 - 1
    w = win[first]
    k = np.searchsorted(values, w)  # the reference's distinct values below each run's value
    ref_below = below[k]
    ref_at_or_below = np.where(values[k] == w, at_or_below[k], ref_below)
    d_plus = np.max(ref_below / n1 - first / n2)
    d_minus = np.max((last + 1) / n2 - ref_at_or_below / n1)
    return float(max(d_plus, d_minus, 0.0))


@functools.lru_cache(maxsize=16)
def _window_ecdf(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``j / n`` and ``(j + 1) / n`` for ``j = 0 .. n - 1``.

    They are a sorted sample's ECDF just below and at each of its points. Cached: windows of a stream mostly
    have the same size (the reservoir's).
    """
    below = np.arange(n) / n
    at = np.arange(1, n + 1) / n
    below.flags.writeable = False
    at.flags.writeable = False
    return below, at


def _count_below(ref: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Return ``#{ref < w}`` for every value of the sorted window, ``ref`` sorted too.

    A stable sort of ``[win, ref]`` keeps every window value ahead of equal reference values, so the
    reference values ahead of ``win[j]`` in the merged order are those below it. The stable sort is a
    timsort, which merges the two sorted runs in linear time: about 2.5x cheaper than one binary search
    per window value (``np.searchsorted``) at 10,000 values each.
    """
    merged = np.argsort(np.concatenate((win, ref)), kind="stable")
    return np.flatnonzero(merged < win.size) - np.arange(win.size)
