"""Multiple-testing correction against scipy and the definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.correction import CORRECTIONS, adjust_p_values


def test_bh_equals_scipy_false_discovery_control():
    rng = np.random.default_rng(0)
    for m in range(1, 40):
        p = rng.uniform(0.0, 1.0, m) ** 3  # many small p-values, so the step-up matters
        if m > 3:
            p[:3] = p[3]  # ties
        np.testing.assert_allclose(adjust_p_values(p, "bh"), stats.false_discovery_control(p, method="bh"),
                                   rtol=1e-12, atol=0)


def test_bh_is_monotone_in_p_and_never_below_the_raw_p_value():
    p = np.array([0.04, 0.001, 0.03, 0.5, 0.02, 0.9])
    adjusted = adjust_p_values(p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert np.all(adjusted >= p) and np.all(adjusted <= 1.0)


def test_bh_known_values():
    # p * m / rank = [0.03, 0.04, 0.045]; step-up takes the running minimum from the largest p down.
    np.testing.assert_allclose(adjust_p_values(np.array([0.01, 0.03, 0.02])), [0.03, 0.03, 0.03])


def test_bonferroni_is_p_times_m_capped_at_one():
    p = np.array([0.001, 0.2, 0.3, 0.04])
    np.testing.assert_allclose(adjust_p_values(p, "bonferroni"), [0.004, 0.8, 1.0, 0.16])


@pytest.mark.parametrize("method", CORRECTIONS)
def test_empty_input_gives_empty_output(method):
    assert adjust_p_values(np.array([]), method).shape == (0,)


@pytest.mark.parametrize("method", CORRECTIONS)
def test_single_p_value_is_unchanged(method):
    assert adjust_p_values(np.array([0.003]), method).tolist() == [0.003]


def test_unknown_method_is_named_in_the_error():
    with pytest.raises(ValueError, match=r"correction must be one of bh, bonferroni, got 'holm'"):
        adjust_p_values(np.array([0.1]), "holm")


@pytest.mark.parametrize("bad", [[0.1, np.nan], [-0.1], [1.5]])
def test_p_values_outside_the_unit_interval_are_rejected(bad):
    with pytest.raises(ValueError, match="p_values"):
        adjust_p_values(np.array(bad))
