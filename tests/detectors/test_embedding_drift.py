"""EmbeddingDrift and PCAProjection: the detector contract, agreement with scipy, calibration, serialisation."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest
from scipy import stats

from detectors.embedding import EmbeddingDrift, PCAProjection, fit_reference

DIM = 24
SD = 1.0 / np.sqrt(1.0 + np.arange(DIM) / 3.0)  # a decaying spectrum, like real embeddings


def _draw(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    x = rng.normal(size=(n, DIM)) * SD
    x[:, 0] += shift
    return x


def _detector(seed: int = 0, **kwargs) -> EmbeddingDrift:
    rng = np.random.default_rng(seed)
    projection, sample = fit_reference(_draw(rng, 2000), components=8, seed=seed)
    kwargs = {"max_mmd_n": 150, **kwargs}
    return EmbeddingDrift(projection, sample, seed=seed, **kwargs)


@pytest.fixture(scope="module")
def detector() -> EmbeddingDrift:
    return _detector(0)


def test_same_seed_same_result(detector):
    window = _draw(np.random.default_rng(1), 300, shift=0.3)
    assert _detector(0).test(window) == _detector(0).test(window)
    # The window's own seed drives the MMD subsample and permutations: same seed, same result.
    assert detector.test(window, seed=9) == detector.test(window, seed=9)


def test_seed_changes_only_the_permutation_p_value(detector):
    window = _draw(np.random.default_rng(2), 300)
    a, b = detector.test(window, seed=1), detector.test(window, seed=2)
    # The KS part has no randomness (its adjusted p-values move with the MMD's: one family).
    assert [(c.statistic, c.p_value) for c in a.components] == [(c.statistic, c.p_value) for c in b.components]
    assert a.multivariate.p_value != b.multivariate.p_value


def test_testing_leaves_the_detector_unchanged(detector):
    null, shifted = _draw(np.random.default_rng(3), 200), _draw(np.random.default_rng(4), 200, shift=1.0)
    before = detector.test(null)
    detector.test(shifted)
    assert detector.test(null) == before


def test_pickle_round_trip_of_detector_and_result(detector):
    window = _draw(np.random.default_rng(5), 200, shift=0.5)
    result = detector.test(window)
    assert pickle.loads(pickle.dumps(detector)).test(window) == result
    assert pickle.loads(pickle.dumps(result)) == result


def test_quiet_on_a_sample_of_the_reference_distribution(detector):
    flagged = [detector.test(_draw(np.random.default_rng(100 + s), 250), seed=s).drifted for s in range(10)]
    assert sum(flagged) <= 1


def test_alarms_on_a_shifted_sample(detector):
    for s in range(3):
        result = detector.test(_draw(np.random.default_rng(200 + s), 250, shift=0.8), seed=s)
        assert result.drifted and result.multivariate.drifted
        assert result.drifted_share > 0
        assert "pc1" in [c.feature for c in result.components if c.drifted]


def test_mmd_alone_sees_a_change_no_component_shows():
    # Two components swap their joint structure (from independent to correlated) with unchanged marginals:
    # every per-component KS test stays quiet, the multivariate test does not.
    rng = np.random.default_rng(7)
    identity = PCAProjection(np.zeros(2), np.eye(2), np.ones(2), whiten=False)
    detector = EmbeddingDrift(identity, rng.normal(size=(2000, 2)), max_mmd_n=300, seed=1)
    z = rng.normal(size=(300, 2))
    correlated = np.column_stack([z[:, 0], 0.95 * z[:, 0] + np.sqrt(1 - 0.95**2) * z[:, 1]])
    result = detector.test(correlated)
    assert not any(c.drifted for c in result.components)
    assert result.multivariate.drifted and result.drifted


def test_ks_part_agrees_with_scipy(detector):
    window = _draw(np.random.default_rng(8), 300, shift=0.2)
    projected = detector.projection.project(window)
    result = detector.test(window)
    for j, component in enumerate(result.components):
        expected = stats.ks_2samp(detector._refs[j].sorted, projected[:, j], method="asymp")
        assert component.statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert component.p_value == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)
        assert component.window_n == 300 and component.reference_n == detector.reference_n


def test_the_family_is_adjusted_together(detector):
    from detectors.correction import adjust_p_values

    result = detector.test(_draw(np.random.default_rng(9), 200, shift=0.2), seed=3)
    raw = [c.p_value for c in result.components] + [result.multivariate.p_value]
    adjusted = [c.p_value_adjusted for c in result.components] + [result.multivariate.p_value_adjusted]
    np.testing.assert_array_equal(adjust_p_values(np.array(raw), "bh"), adjusted)


def test_permutation_p_value_has_the_plus_one_correction(detector):
    result = detector.test(_draw(np.random.default_rng(10), 200, shift=2.0))
    assert result.multivariate.p_value == pytest.approx(1.0 / (detector.permutations + 1))


@pytest.mark.parametrize("windows", [120])
def test_false_alarm_share_is_at_most_alpha(windows):
    """Over >= 100 no-drift windows the share flagged is <= alpha plus a binomial tolerance.

    With alpha = 0.05 (so the test has something to count) the tolerance is the 99.9% upper binomial
    quantile of Binomial(windows, alpha) / windows; the unadjusted MMD p-value is checked for calibration too.
    """
    alpha = 0.05
    detector = _detector(11, alpha=alpha, permutations=400, max_mmd_n=100)
    rng = np.random.default_rng(12)
    results = [detector.test(_draw(rng, 150), seed=s) for s in range(windows)]
    limit = stats.binom.ppf(0.999, windows, alpha) / windows
    assert np.mean([r.drifted for r in results]) <= limit
    assert np.mean([r.multivariate.p_value < alpha for r in results]) <= limit
    # ... and the MMD p-value is not degenerate: under no drift it spreads over (0, 1].
    assert np.mean([r.multivariate.p_value > 0.5 for r in results]) > 0.3


def test_the_projection_must_not_be_fitted_on_the_tested_sample():
    # Why fit_reference splits: the in-sample projection of isotropic data is over-dispersed, so fresh data
    # from the same distribution looks drifted to the MMD.
    rng = np.random.default_rng(13)
    reference = rng.normal(size=(2000, 64))
    in_sample = PCAProjection.fit(reference, components=16)
    naive = EmbeddingDrift(in_sample, in_sample.project(reference), seed=1)
    projection, sample = fit_reference(reference, components=16, seed=1)
    split = EmbeddingDrift(projection, sample, seed=1)
    window = rng.normal(size=(300, 64))
    assert naive.test(window).multivariate.p_value < 0.01
    assert split.test(window).multivariate.p_value > 0.01


def test_projection_round_trips_through_json_bit_for_bit():
    rng = np.random.default_rng(14)
    x = _draw(rng, 500)
    for whiten in (False, True):
        projection = PCAProjection.fit(x, components=5, whiten=whiten)
        text = json.dumps(projection.to_dict(), allow_nan=False)
        restored = PCAProjection.from_dict(json.loads(text))
        assert restored == projection
        assert np.array_equal(restored.project(x), projection.project(x))
    # Shortest float32 decimals: about 10 characters a value, not the 18 of a float64 repr.
    assert len(text) < 14 * (5 * DIM + DIM + 10)


def test_projection_is_orthonormal_and_sign_stable():
    rng = np.random.default_rng(15)
    x = _draw(rng, 800)
    projection = PCAProjection.fit(x, components=6)
    basis = projection.basis.astype(np.float64)
    np.testing.assert_allclose(basis @ basis.T, np.eye(6), atol=1e-6)
    assert (basis[np.arange(6), np.abs(basis).argmax(axis=1)] > 0).all()
    assert PCAProjection.fit(-(-x), components=6) == projection
    ratio = projection.explained_variance_ratio
    assert (np.diff(ratio) <= 0).all() and 0 < ratio.sum() <= 1
    whitened = PCAProjection.fit(x, components=6, whiten=True).project(x)
    np.testing.assert_allclose(whitened.std(axis=0, ddof=1), 1.0, rtol=1e-5)


def test_result_is_frozen_json_and_has_the_planned_keys(detector):
    result = detector.test(_draw(np.random.default_rng(16), 200, shift=1.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.drifted = False
    doc = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert list(doc) == ["drifted", "correction", "alpha", "min_effect", "drifted_share", "components",
                         "multivariate", "window_n", "reference_n"]
    assert list(doc["components"]) == [f"pc{i}" for i in range(1, 9)]
    assert set(doc["components"]["pc1"]) == {"statistic", "p_value", "p_value_adjusted", "threshold",
                                             "min_effect", "drifted", "window_n", "reference_n"}
    assert doc["multivariate"]["test"] == "mmd_rbf_permutation" and doc["drifted"] is True


def test_empty_and_non_finite_windows(detector):
    empty = detector.test(np.zeros((0, DIM)))
    assert not empty.drifted and empty.components == () and empty.multivariate is None
    window = _draw(np.random.default_rng(17), 100)
    with_nan = np.vstack([window, np.full((1, DIM), np.nan)])
    assert detector.test(with_nan) == detector.test(window)


BAD = [
    ("alpha", 0.0), ("alpha", 1.0), ("min_effect", 1.5), ("correction", "holm"), ("permutations", 0),
    ("permutations", 2.5), ("max_mmd_n", 1), ("seed", -1), ("seed", True),
]


@pytest.mark.parametrize("parameter, value", BAD)
def test_bad_parameter_is_named_in_the_error(parameter, value):
    x = _draw(np.random.default_rng(18), 50)
    projection = PCAProjection.fit(x, components=3)
    with pytest.raises(ValueError, match=rf"^{parameter} must be .*{value!r}"):
        EmbeddingDrift(projection, projection.project(x), **{parameter: value})


def test_shapes_are_checked(detector):
    with pytest.raises(ValueError, match=r"embeddings must have shape \(n, 24\)"):
        detector.test(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="components must be a positive integer"):
        PCAProjection.fit(np.zeros((5, 3)), components=0)
    with pytest.raises(ValueError, match=r"reference must have shape \(n, 8\)"):
        EmbeddingDrift(detector.projection, np.zeros((10, 3)))
