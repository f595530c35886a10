"""detectors.sequential: contract (determinism, state round trip, reset, validation) and the A/A proof.

The proof: under continuous monitoring (a look every window) the always-valid test's false-positive rate
stays at or below alpha, while the naive z-test read at every look exceeds it; a real lift is detected.
"""

from __future__ import annotations

import math
import pickle

import msgspec
import numpy as np
import pytest
from scipy import stats

from detectors.sequential import (
    ArmStats,
    SequentialTest,
    mixture_half_width,
    mixture_p_value,
    tau2_for_sample_size,
)  # fmt: skip

ALPHA = 0.05


def _run(test: SequentialTest, rng, looks: int, p_a: float, p_b: float, batch: int = 200):
    result = None
    for _ in range(looks):
        result = test.update(ArmStats.from_successes(batch, int(rng.binomial(batch, p_a))),
                             ArmStats.from_successes(batch, int(rng.binomial(batch, p_b))))
    return result


# -- ArmStats -------------------------------------------------------------------------------------------------------
def test_armstats_merge_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.lognormal(3.0, 1.0, 1_000)
    merged = ArmStats()
    for chunk in np.array_split(x, 7):
        merged = merged + ArmStats.from_values(chunk)
    assert merged.n == 1_000 and merged.mean == pytest.approx(x.mean())
    assert merged.variance == pytest.approx(x.var(ddof=1)) and merged.sd == pytest.approx(x.std(ddof=1))
    assert ArmStats.from_successes(10, 3) == ArmStats.from_values([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("call, match", [
    (lambda: ArmStats(-1, 0.0, 0.0), "n must"),
    (lambda: ArmStats(2, math.nan, 0.0), "mean"),
    (lambda: ArmStats(2, 0.0, -1.0), "m2"),
    (lambda: ArmStats(0, 1.0, 0.0), "empty"),
    (lambda: ArmStats.from_successes(3, 4), "successes"),
    (lambda: ArmStats.from_values([1.0, math.inf]), "finite"),
])
def test_armstats_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- SequentialTest contract ------------------------------------------------------------------------------------------
def test_seeded_runs_are_deterministic_and_state_round_trips():
    a = _run(SequentialTest(), np.random.default_rng(5), 30, 0.10, 0.12)
    b = _run(SequentialTest(), np.random.default_rng(5), 30, 0.10, 0.12)
    assert a == b
    # A test restored mid-way (through msgpack, as the checkpoints do) continues identically.
    rng1, rng2 = np.random.default_rng(9), np.random.default_rng(9)
    full = SequentialTest("proportion")
    half = SequentialTest("proportion")
    _run(full, rng1, 10, 0.1, 0.1)
    _run(half, rng2, 10, 0.1, 0.1)
    restored = SequentialTest.from_state(msgspec.msgpack.decode(msgspec.msgpack.encode(half.to_state())))
    assert _run(full, rng1, 10, 0.1, 0.13) == _run(restored, rng2, 10, 0.1, 0.13)
    assert pickle.loads(pickle.dumps(full)).to_state() == full.to_state()


def test_reset_equals_a_fresh_instance():
    test = SequentialTest("mean", alpha=0.1, min_samples=5)
    test.update(ArmStats.from_values([1.0, 2.0, 3.0] * 5), ArmStats.from_values([2.0, 3.0, 4.0] * 5))
    test.reset()
    assert test.to_state() == SequentialTest("mean", alpha=0.1, min_samples=5).to_state()


def test_nothing_is_tested_before_min_samples():
    test = SequentialTest(min_samples=100)
    r = test.update(ArmStats.from_successes(99, 0), ArmStats.from_successes(99, 99))
    assert r.p_value == 1.0 and r.ci_low == -math.inf and r.ci_high == math.inf and not r.significant
    assert r.to_dict()["ci_low"] is None


def test_p_value_is_monotone_and_interval_nested():
    test = SequentialTest()
    rng = np.random.default_rng(2)
    last_p, last = 1.0, (-math.inf, math.inf)
    for _ in range(40):
        r = _run(test, rng, 1, 0.2, 0.2)
        assert r.p_value <= last_p and last[0] <= r.ci_low and r.ci_high <= last[1]
        last_p, last = r.p_value, (r.ci_low, r.ci_high)


def test_mixture_p_value_closed_form_and_half_width_inversion():
    # Lambda = (1 + r)^(-1/2) exp(r z^2 / (2 (1 + r))): at the half-width, Lambda is exactly 1/alpha.
    n, tau2, se = 5_000, 2e-3, 0.01
    half = float(mixture_half_width(se, n, n, tau2, ALPHA))
    assert float(mixture_p_value(half / se, n, n, tau2)) == pytest.approx(ALPHA)
    r = tau2 / (2 / n)
    z = 3.0
    assert float(mixture_p_value(z, n, n, tau2)) == pytest.approx(math.sqrt(1 + r) * math.exp(-r * z * z / (2 * (1 + r))))
    assert float(mixture_p_value(40.0, n, n, tau2)) < 1e-100  # log space: no overflow for a large z
    assert tau2_for_sample_size(16_000) == pytest.approx(1e-3, rel=0.01)


def test_direction_is_fixed_when_significance_is_reached():
    test = SequentialTest(min_samples=10)
    r = test.update(ArmStats.from_successes(2_000, 200), ArmStats.from_successes(2_000, 400))
    assert r.significant and r.direction == "increase"
    r = test.update(ArmStats.from_successes(20_000, 4_000), ArmStats.from_successes(2_000, 100))  # lift now < 0
    assert r.lift < 0 and r.direction == "increase"  # the decision made at the first look stands
    assert SequentialTest.from_state(test.to_state()).result.direction == "increase"


@pytest.mark.parametrize("kwargs, match", [
    ({"metric": "median"}, "metric"), ({"alpha": 0.0}, "alpha"), ({"tau2": 0.0}, "tau2"),
    ({"min_samples": 1}, "min_samples"), ({"min_samples": True}, "min_samples"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SequentialTest(**kwargs)
    with pytest.raises(ValueError, match="0/1"):
        SequentialTest().update(ArmStats.from_values([2.0, 3.0]), ArmStats())
    with pytest.raises(TypeError):
        SequentialTest().update((10, 0.5, 1.0), ArmStats())


# -- the proof under continuous monitoring ------------------------------------------------------------------------------
def test_aa_false_positive_rate_is_at_most_alpha_while_the_naive_z_test_exceeds_it():
    """300 A/A experiments, 60 looks of 200 per variant each: the dashboard reads both tests at every look."""
    rng = np.random.default_rng(20240601)
    experiments, looks, z_crit = 300, 60, stats.norm.ppf(1 - ALPHA / 2)
    always_valid = naive = 0
    for _ in range(experiments):
        test = SequentialTest("proportion", alpha=ALPHA)
        ever_naive = False
        for _ in range(looks):
            r = _run(test, rng, 1, 0.10, 0.10)
            pooled = (r.mean_a * r.n_a + r.mean_b * r.n_b) / (r.n_a + r.n_b)
            se = math.sqrt(pooled * (1 - pooled) * (1 / r.n_a + 1 / r.n_b))
            ever_naive |= abs(r.lift) / se > z_crit
        always_valid += r.significant  # the p-value is a running minimum: "ever significant"
        naive += ever_naive
    # Generous but failable: the true rates are about 0.02 and 0.35.
    assert always_valid / experiments <= ALPHA
    assert naive / experiments >= 3 * ALPHA


def test_a_real_lift_is_detected_and_the_interval_covers_it():
    rng = np.random.default_rng(7)
    detected, covered, samples = 0, 0, []
    for _ in range(40):
        test = SequentialTest("proportion", alpha=ALPHA)
        at = None
        for look in range(100):
            r = _run(test, rng, 1, 0.10, 0.13)
            if r.significant and at is None:
                at = r.n_a
        detected += r.significant and r.direction == "increase"
        covered += r.ci_low <= 0.03 <= r.ci_high
        if at is not None:
            samples.append(at)
    assert detected >= 36 and covered >= 36
    assert np.median(samples) < 100 * 200  # stops well before the horizon


def test_mean_metric_aa_stays_quiet_and_detects_a_shift():
    rng = np.random.default_rng(3)
    quiet = SequentialTest("mean")
    shifted = SequentialTest("mean")
    for _ in range(50):
        quiet.update(ArmStats.from_values(rng.lognormal(0, 1, 200)), ArmStats.from_values(rng.lognormal(0, 1, 200)))
        shifted.update(ArmStats.from_values(rng.lognormal(0, 1, 200)),
                       ArmStats.from_values(rng.lognormal(0, 1, 200) * 1.15))
    assert not quiet.result.significant
    assert shifted.result.significant and shifted.result.direction == "increase"
