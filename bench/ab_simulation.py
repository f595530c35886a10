"""Continuous monitoring of simulated experiments: always-valid test against a z-test looked at every window.

    .venv/bin/python bench/ab_simulation.py                       # 1,000 experiments x 100 looks
    .venv/bin/python bench/ab_simulation.py --experiments 4000 --looks 200 --batch 100

Every simulated experiment is watched the way a dashboard is: after each batch (a window) of ``--batch``
observations per variant the test is read, and the experiment "stops" the first time it says significant.

* A/A (no difference): the false-positive rate is the share of experiments *ever* declared significant.
  The always-valid test (:class:`detectors.sequential.SequentialTest`) must stay at or below alpha; the naive
  fixed-horizon z-test, read at every look, goes far above it. The same z-test read once, at the last look
  only (the planned horizon), is shown for comparison: it is valid when used as planned.
* A/B (a real lift): the share of experiments detected within the horizon, the median number of
  observations per variant it took, and how often the confidence sequence covered the true lift at every
  look at once (it must do so in at least 1 - alpha of the experiments).

Two metrics: a proportion (error rate, 10% vs 10% / 11%), with a random 50/50 assignment so the variants'
sizes differ a little as they would in production, and the mean of a skewed outcome (lognormal, 5% relative
lift), with equal batches. Everything is vectorised over experiments x looks and seeded; figures are
printed with their 95% Wilson intervals (Monte Carlo uncertainty of the rates themselves).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# First on the path: this script's own directory is there too.
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from detectors.sequential import DEFAULT_TAU2, mixture_half_width, mixture_p_value  # noqa: E402


@dataclass(frozen=True)
class Outcome:
    """What continuous monitoring of ``experiments`` simulated experiments found."""

    experiments: int
    always_valid_rejections: int  # experiments ever significant under the always-valid test
    naive_rejections: int  # experiments ever significant under the z-test read at every look
    final_look_rejections: int  # significant under the z-test read once, at the last look
    covered: int  # experiments whose confidence sequence covered the true lift at every look
    samples_to_detect: np.ndarray  # per detected experiment: observations per variant at detection

    @property
    def always_valid_rate(self) -> float:
        return self.always_valid_rejections / self.experiments

    @property
    def naive_rate(self) -> float:
        return self.naive_rejections / self.experiments


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Return the Wilson score interval of a binomial proportion ``k / n``."""
    z = stats.norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _monitor(n_a, n_b, lift_hat, se_test, se_ci, true_lift, *, alpha, tau2, min_samples) -> Outcome:
    """Score cumulative per-look statistics (arrays experiments x looks) as a watched dashboard would."""
    tested = (n_a >= min_samples) & (n_b >= min_samples) & (se_test > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(tested, lift_hat / se_test, 0.0)
    # The always-valid p-value is the running minimum of the per-look mixture p-values.
    p = np.minimum.accumulate(np.where(tested, mixture_p_value(z, n_a, n_b, tau2), 1.0), axis=1)
    detected = p <= alpha
    ever = detected.any(axis=1)
    first = detected.argmax(axis=1)
    rows = np.flatnonzero(ever)
    samples = (n_a[rows, first[rows]] + n_b[rows, first[rows]]) / 2.0

    naive = tested & (np.abs(z) > stats.norm.ppf(1 - alpha / 2))
    half = mixture_half_width(np.where(se_ci > 0, se_ci, np.inf), n_a, n_b, tau2, alpha)
    misses = tested & (np.abs(lift_hat - true_lift) >= half)
    return Outcome(
        experiments=n_a.shape[0],
        always_valid_rejections=int(ever.sum()),
        naive_rejections=int(naive.any(axis=1).sum()),
        final_look_rejections=int(naive[:, -1].sum()),
        covered=int((~misses.any(axis=1)).sum()),
        samples_to_detect=samples,
    )


def simulate_proportions(rng, *, experiments, looks, batch, p_a, p_b, alpha=0.05, tau2=DEFAULT_TAU2,
                         min_samples=100) -> Outcome:
    """Monitor Bernoulli experiments; each look adds ``2 * batch`` observations split 50/50 at random."""
    shape = (experiments, looks)
    new_a = rng.binomial(2 * batch, 0.5, shape)
    new_b = 2 * batch - new_a
    n_a, n_b = np.cumsum(new_a, axis=1), np.cumsum(new_b, axis=1)
    k_a = np.cumsum(rng.binomial(new_a, p_a), axis=1)
    k_b = np.cumsum(rng.binomial(new_b, p_b), axis=1)
    # The same variances as SequentialTest: pooled for the test, smoothed unpooled for the interval.
    pooled = (k_a + k_b) / (n_a + n_b)
    se_test = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    sa, sb = (k_a + 0.5) / (n_a + 1), (k_b + 0.5) / (n_b + 1)
    se_ci = np.sqrt(sa * (1 - sa) / n_a + sb * (1 - sb) / n_b)
    return _monitor(n_a, n_b, k_b / n_b - k_a / n_a, se_test, se_ci, p_b - p_a,
                    alpha=alpha, tau2=tau2, min_samples=min_samples)


def simulate_means(rng, *, experiments, looks, batch, relative_lift, alpha=0.05, tau2=DEFAULT_TAU2,
                   min_samples=100, chunk=100) -> Outcome:
    """Monitor experiments on a lognormal(0, 1) outcome; variant b's is scaled by ``1 + relative_lift``.

    Raw values are drawn (the outcome is skewed, so its sufficient statistics have no simple law), ``chunk``
    experiments at a time to bound memory.
    """
    sums = {"a": [], "b": [], "a2": [], "b2": []}
    for start in range(0, experiments, chunk):
        rows = min(chunk, experiments - start)
        for arm, scale in (("a", 1.0), ("b", 1.0 + relative_lift)):
            x = rng.lognormal(0.0, 1.0, (rows, looks, batch)) * scale
            sums[arm].append(x.sum(axis=2))
            sums[arm + "2"].append(np.square(x).sum(axis=2))
    n = batch * np.arange(1, looks + 1, dtype=np.float64)[None, :].repeat(experiments, axis=0)
    mean_a = np.cumsum(np.concatenate(sums["a"]), axis=1) / n
    mean_b = np.cumsum(np.concatenate(sums["b"]), axis=1) / n
    var_a = (np.cumsum(np.concatenate(sums["a2"]), axis=1) - n * mean_a**2) / (n - 1)
    var_b = (np.cumsum(np.concatenate(sums["b2"]), axis=1) - n * mean_b**2) / (n - 1)
    se = np.sqrt(var_a / n + var_b / n)
    true_lift = math.exp(0.5) * relative_lift  # E[lognormal(0, 1)] = e^(1/2)
    return _monitor(n, n, mean_b - mean_a, se, se, true_lift, alpha=alpha, tau2=tau2, min_samples=min_samples)


def _rate(k: int, n: int) -> str:
    low, high = wilson_interval(k, n)
    return f"{k / n:6.3f}  [{low:.3f}, {high:.3f}]"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=1000, help="simulated experiments per scenario")
    parser.add_argument("--looks", type=int, default=100, help="looks (windows) per experiment")
    parser.add_argument("--batch", type=int, default=200, help="observations per variant per look")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--tau2", type=float, default=DEFAULT_TAU2)
    parser.add_argument("--min-samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args(argv)
    if min(args.experiments, args.looks, args.batch) < 1:
        parser.error("--experiments, --looks and --batch must be at least 1")
    rng = np.random.default_rng(args.seed)
    common = dict(experiments=args.experiments, looks=args.looks, batch=args.batch, alpha=args.alpha,
                  tau2=args.tau2, min_samples=args.min_samples)
    horizon = args.looks * args.batch
    print(f"{args.experiments} experiments x {args.looks} looks x {args.batch} per variant per look "
          f"(horizon {horizon} per variant), alpha={args.alpha}, tau2={args.tau2}, seed={args.seed}")
    print("rates are followed by their 95% Wilson interval (Monte Carlo uncertainty)\n")

    started = time.perf_counter()
    scenarios = [
        ("proportion 10% vs 10%  (A/A)", lambda: simulate_proportions(rng, p_a=0.10, p_b=0.10, **common)),
        ("proportion 10% vs 11%  (A/B)", lambda: simulate_proportions(rng, p_a=0.10, p_b=0.11, **common)),
        ("lognormal mean, +0%    (A/A)", lambda: simulate_means(rng, relative_lift=0.0, **common)),
        ("lognormal mean, +5%    (A/B)", lambda: simulate_means(rng, relative_lift=0.05, **common)),
    ]
    for name, run in scenarios:
        out = run()
        e = out.experiments
        print(name)
        if "A/A" in name:
            print(f"  false-positive rate, always-valid, any look : {_rate(out.always_valid_rejections, e)}")
            print(f"  false-positive rate, z-test, every look     : {_rate(out.naive_rejections, e)}"
                  f"  = {out.naive_rate / args.alpha:.1f} x alpha")
            print(f"  false-positive rate, z-test, last look only : {_rate(out.final_look_rejections, e)}")
        else:
            print(f"  detected within horizon, always-valid       : {_rate(out.always_valid_rejections, e)}")
            print(f"  detected at the last look, z-test (planned) : {_rate(out.final_look_rejections, e)}")
            if out.samples_to_detect.size:
                q25, q50, q75 = np.percentile(out.samples_to_detect, [25, 50, 75])
                print(f"  samples per variant to detect (median [IQR]): {q50:.0f} [{q25:.0f}, {q75:.0f}]"
                      f" of {horizon}")
        print(f"  confidence sequence covered the truth at every look: {_rate(out.covered, e)}\n")
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
