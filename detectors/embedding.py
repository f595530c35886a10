"""Embedding drift: has what the texts are *about* changed, as the served model's own embeddings see it?

Shape features (length, character mix) miss a change of subject at the same shape. The served model's
embeddings do not. A window's embeddings are projected onto the principal components of the reference's
(:class:`PCAProjection`, fitted once, stored in the reference profile), and :class:`EmbeddingDrift` tests the
projected window against the projected reference sample in two ways:

- a two-sample KS test per component (:class:`detectors.ks.KSReference`, the same statistic and asymptotic
  p-value as input drift), a component being drifted when its adjusted p-value is below ``alpha`` **and**
  its statistic is at least ``min_effect``, exactly as an input feature is;
- one multivariate test: the maximum mean discrepancy (MMD) with a Gaussian (RBF) kernel whose bandwidth is
  the median heuristic on the reference sample, and a permutation p-value ``(1 + #{MMD_b >= MMD}) / (1 + B)``
  (the +1 makes it a valid p-value for any number of permutations ``B``). It sees shifts no single
  component shows (a change of correlation, a shift spread thinly over many components).

The ``k`` component tests and the multivariate test are one family of ``k + 1`` hypotheses, adjusted
together with ``correction`` (BH by default). Under no drift the window is then flagged with probability at
most ``alpha`` (BH controls the family-wise error when every hypothesis is null), instead of up to
``2 * alpha`` for two tests each run at ``alpha``; ``bench/embedding_calibration.py`` measures it.

The permutations are drawn from a ``seed``: a window tested twice (a replay, a restart from a checkpoint)
gets the same p-value. ``test(window, seed=...)`` lets the daemon derive the seed from the window's
identity, as its reservoir does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from detectors.base import FeatureDrift, as_dict, check_in_range, json_field
from detectors.correction import CORRECTIONS, adjust_p_values
from detectors.ks import KSReference, ks_p_value

__all__ = ["PCAProjection", "EmbeddingDrift", "EmbeddingDriftResult", "MultivariateDrift", "fit_reference", "MMD_TEST"]

MMD_TEST = "mmd_rbf_permutation"


def _float32_list(a: np.ndarray) -> list:
    """The float32 values of ``a`` as the shortest decimals that round back to the same float32 bits.

    ``float(np.float32(x))`` would print up to 17 digits of a float64 that only carries 24 bits; the
    shortest float32 decimal (``str(np.float32)``) is about half as long and reads back bit for bit.
    """
    return [float(str(v)) for v in np.asarray(a, dtype=np.float32).ravel()]


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class PCAProjection:
    """A principal-component projection fitted on reference embeddings, stored as plain lists.

    The fitted arrays are kept in float32 (what :meth:`to_dict` stores) and the projection is computed in
    float64 from those float32 values, so a projection read back with :meth:`from_dict` projects to the same
    bits as the one that was fitted. Each component's sign is fixed (its largest loading is positive), so a
    refit on the same data gives the same components on any LAPACK.

    Parameters
    ----------
    mean : array_like, shape (dim,)
        The reference embeddings' mean.
    basis : array_like, shape (components, dim)
        Orthonormal principal directions, largest variance first.
    scale : array_like, shape (components,)
        Standard deviation of the reference along each direction (used when ``whiten``).
    whiten : bool
        Divide each projected component by its reference standard deviation.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 8)) * np.array([5.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    >>> pca = PCAProjection.fit(x, components=2)
    >>> pca.components, pca.dim, pca.project(x).shape
    (2, 8, (500, 2))
    >>> same = PCAProjection.from_dict(pca.to_dict())
    >>> bool(np.array_equal(same.project(x), pca.project(x)))
    True
    """

    __slots__ = ("mean", "basis", "scale", "whiten", "explained_variance_ratio")

    def __init__(self, mean, basis, scale, *, whiten: bool, explained_variance_ratio=None):
        mean = np.asarray(mean, dtype=np.float32)
        basis = np.asarray(basis, dtype=np.float32)
        scale = np.asarray(scale, dtype=np.float32)
        if mean.ndim != 1 or basis.ndim != 2 or basis.shape[1] != mean.size or scale.shape != (basis.shape[0],):
            raise ValueError(
                f"mean (dim,), basis (components, dim) and scale (components,) must agree, got shapes "
                f"{mean.shape}, {basis.shape} and {scale.shape}."
            )
        if not (np.isfinite(mean).all() and np.isfinite(basis).all() and (scale > 0).all()):
            raise ValueError("mean and basis must be finite and every scale positive.")
        if not isinstance(whiten, bool):
            raise ValueError(f"whiten must be True or False, got {whiten!r}.")
        self.mean = _readonly(mean)
        self.basis = _readonly(basis)
        self.scale = _readonly(scale)
        self.whiten = whiten
        ratio = np.full(basis.shape[0], np.nan) if explained_variance_ratio is None else explained_variance_ratio
        self.explained_variance_ratio = _readonly(np.asarray(ratio, dtype=np.float32))

    @classmethod
    def fit(cls, embeddings: np.ndarray, *, components: int = 16, whiten: bool = False) -> PCAProjection:
        """Fit the projection on reference embeddings (rows with a non-finite value are left out).

        ``components`` is capped at ``min(rows - 1, dim)``. ``whiten=False`` is the default, from
        measurement: a per-component KS test does not depend on scale at all, so whitening only changes the
        MMD, and there the unwhitened kernel (distances dominated by the high-variance components, where a
        subject lives) detected partial subject switches more often than the whitened one, which amplifies
        the noisy low-variance components. ``bench/embedding_calibration.py`` on the tiny encoder, 256 rows a
        window, 100 windows each: MMD power 0.10 vs 0.02 at a 10% phone share, 0.62 vs 0.49 at 15%, whole
        detector 0.27 vs 0.22 and 0.80 vs 0.76; equal on the synthetic sets; no-drift false alarms 1/100 and
        1/100.
        """
        if not isinstance(components, int) or isinstance(components, bool) or components < 1:
            raise ValueError(f"components must be a positive integer, got {components!r}.")
        x = _finite_rows(embeddings, 2, " to fit a projection")
        k = min(components, x.shape[0] - 1, x.shape[1])
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        vt = vt[:k]
        # The sign of a singular vector is arbitrary (LAPACK builds differ): make the largest loading positive.
        signs = np.sign(vt[np.arange(k), np.abs(vt).argmax(axis=1)])
        vt = vt * signs[:, None]
        variance = s**2 / (x.shape[0] - 1)
        total = variance.sum()
        # A component without variance (constant data) gets scale 1: whitening must not divide by 0.
        scale = np.where(variance[:k] > 0, np.sqrt(variance[:k]), 1.0)
        ratio = variance[:k] / total if total > 0 else np.zeros(k)
        return cls(mean, vt, scale, whiten=whiten, explained_variance_ratio=ratio)

    @property
    def components(self) -> int:
        """Number of projected components."""
        return int(self.basis.shape[0])

    @property
    def dim(self) -> int:
        """Dimension of the embeddings it projects."""
        return int(self.basis.shape[1])

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """Return the ``(n, components)`` float64 projection of ``(n, dim)`` embeddings."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"embeddings must have shape (n, {self.dim}), got {x.shape}.")
        z = (x - self.mean.astype(np.float64)) @ self.basis.astype(np.float64).T
        if self.whiten:
            z /= self.scale.astype(np.float64)
        return z

    def project_rows(self, embeddings: np.ndarray) -> np.ndarray:
        """:meth:`project`, with each row's result bit-identical whatever other rows are projected with it.

        A matrix product through BLAS may pick another kernel (and another summation order) for another
        number of rows; ``einsum`` without optimisation sums every output over ``dim`` in one fixed order,
        so the daemon's windows do not depend on how the stream was batched. Slower than :meth:`project`
        (about 2x for 16 x 64), and only paid for events that carry an embedding.
        """
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"embeddings must have shape (n, {self.dim}), got {x.shape}.")
        z = np.einsum("nd,kd->nk", x - self.mean.astype(np.float64), self.basis.astype(np.float64), optimize=False)
        if self.whiten:
            z /= self.scale.astype(np.float64)
        return z

    def to_dict(self) -> dict:
        """Return the projection as JSON-ready lists (float32 values written as their shortest decimals)."""
        return {
            "kind": "pca",
            "components": self.components,
            "dim": self.dim,
            "whiten": self.whiten,
            "mean": _float32_list(self.mean),
            "basis": [_float32_list(row) for row in self.basis],
            "scale": _float32_list(self.scale),
            "explained_variance_ratio": [
                None if not np.isfinite(v) else v for v in _float32_list(self.explained_variance_ratio)
            ],
        }

    @classmethod
    def from_dict(cls, doc: Mapping) -> PCAProjection:
        """Read a projection written by :meth:`to_dict`."""
        if doc.get("kind") != "pca":
            raise ValueError(f"projection kind must be 'pca', got {doc.get('kind')!r}.")
        ratio = [np.nan if v is None else v for v in doc.get("explained_variance_ratio") or []] or None
        return cls(doc["mean"], doc["basis"], doc["scale"], whiten=doc["whiten"], explained_variance_ratio=ratio)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PCAProjection):
            return NotImplemented
        return (self.whiten == other.whiten and np.array_equal(self.mean, other.mean)
                and np.array_equal(self.basis, other.basis) and np.array_equal(self.scale, other.scale))

    def __getstate__(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state):
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"PCAProjection(components={self.components}, dim={self.dim}, whiten={self.whiten})"


def fit_reference(
    embeddings: np.ndarray,
    *,
    components: int = 16,
    whiten: bool = False,
    fit_share: float = 0.5,
    max_reference: int = 2000,
    seed: int = 0,
) -> tuple[PCAProjection, np.ndarray]:
    """Fit the projection on part of the reference embeddings and project the rest: the stored sample.

    The reference sample the windows are tested against must not be the rows the projection was fitted
    on: PCA finds the directions in which *those* rows vary most, so their projection is more spread out
    than that of any new sample from the same distribution, and every window would look drifted (with
    64-dimensional isotropic embeddings and 2,000 rows, the MMD flagged windows from the reference
    distribution at the smallest possible p-value). A seeded split keeps the two apart.

    Parameters
    ----------
    embeddings : numpy.ndarray, shape (n, dim)
        The reference embeddings, at least 4 finite rows.
    components, whiten
        See :meth:`PCAProjection.fit`.
    fit_share : float, default 0.5
        Share of the rows the projection is fitted on, in (0, 1); the others form the reference sample.
    max_reference : int, default 2000
        Most projected rows kept (a seeded subsample beyond it): what the profile stores.
    seed : int, default 0
        Seed of the split.

    Returns
    -------
    tuple[PCAProjection, numpy.ndarray]
        The projection and the ``(min(held-out rows, max_reference), components)`` projected sample.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(1000, 8))
    >>> pca, sample = fit_reference(x, components=3, max_reference=300)
    >>> pca.components, sample.shape
    (3, (300, 3))
    """
    share = check_in_range("fit_share", fit_share, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    keep = _positive_int("max_reference", max_reference, 2)
    x = _finite_rows(embeddings, 4)
    order = np.random.default_rng([_seed(seed), 0x5350_4C54]).permutation(x.shape[0])
    cut = min(max(2, int(round(share * x.shape[0]))), x.shape[0] - 2)
    projection = PCAProjection.fit(x[order[:cut]], components=components, whiten=whiten)
    held = np.sort(order[cut:][:keep])
    return projection, projection.project(x[held])


@dataclass(frozen=True, slots=True)
class MultivariateDrift:
    """The MMD permutation test of a projected window against the projected reference sample.

    ``statistic`` is the (biased, V-statistic) squared MMD in kernel units; ``bandwidth`` the kernel's
    median-heuristic scale; ``window_n`` and ``reference_n`` the sizes after the ``max_mmd_n`` caps.
    """

    test: str
    statistic: float
    p_value: float
    p_value_adjusted: float
    threshold: float
    drifted: bool
    permutations: int
    bandwidth: float
    window_n: int
    reference_n: int

    def to_dict(self) -> dict:
        """Return ``drift.embedding.multivariate``."""
        return as_dict(self)


@dataclass(frozen=True, slots=True)
class EmbeddingDriftResult:
    """Per-component KS tests and one multivariate test of a window's embeddings, adjusted together."""

    drifted: bool
    correction: str
    alpha: float
    min_effect: float
    drifted_share: float  # drifted components / tested components (0 when none was tested)
    components: tuple[FeatureDrift, ...] = json_field(key_by="feature")
    multivariate: MultivariateDrift | None = None
    window_n: int = 0
    reference_n: int = 0

    def to_dict(self) -> dict:
        """Return ``drift.embedding`` of the window result."""
        return as_dict(self)


class EmbeddingDrift:
    """Drift of a window's embeddings against the reference's: KS per PCA component plus an MMD test.

    See the module docstring for the tests and why they are adjusted as one family.

    Parameters
    ----------
    projection : PCAProjection
        The projection fitted on the reference embeddings.
    reference : numpy.ndarray, shape (n, components)
        The projected reference sample (what the profile stores); rows with a non-finite value are left out.
    alpha : float, default 0.01
        Significance level of the adjusted p-values, in (0, 1).
    min_effect : float, default 0.1
        Smallest KS statistic that counts as a drifted component, in [0, 1] (as for input drift).
    correction : {"bh", "bonferroni"}, default "bh"
        Multiple-testing correction over the components and the multivariate test.
    permutations : int, default 2000
        Permutations of the MMD test, at least 1. The smallest possible p-value is ``1 / (permutations + 1)``;
        alone in a family of ``k + 1`` it is significant only when ``(k + 1) / (permutations + 1) < alpha``,
        which 1000 permutations allow for ``k <= 8`` at ``alpha = 0.01`` and 2000 for ``k <= 18`` (the
        default 16 components). At 256 + 300 rows the MMD takes ~85 ms per window on one (shared) core
        (``bench/embedding.py``).
    max_mmd_n : int, default 300
        Rows of the window and of the reference that enter the MMD (a seeded subsample beyond it), at least
        2. The kernel matrix is ``(2 * max_mmd_n)^2``; the KS tests always use every row.
    seed : int, default 0
        Seed of the reference subsample and, unless :meth:`test` is given one, of the permutations.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> pca, sample = fit_reference(rng.normal(size=(4000, 32)), components=4)
    >>> detector = EmbeddingDrift(pca, sample, seed=1)
    >>> quiet = detector.test(rng.normal(size=(300, 32)))
    >>> quiet.drifted
    False
    >>> shifted = detector.test(rng.normal(size=(300, 32)) + 0.5 * pca.basis[0])
    >>> shifted.drifted, shifted.multivariate.drifted, [c.feature for c in shifted.components if c.drifted]
    (True, True, ['pc1'])
    >>> shifted.to_dict()["components"]["pc1"]["window_n"]
    300
    """

    def __init__(
        self,
        projection: PCAProjection,
        reference: np.ndarray,
        *,
        alpha: float = 0.01,
        min_effect: float = 0.1,
        correction: str = "bh",
        permutations: int = 2000,
        max_mmd_n: int = 300,
        seed: int = 0,
    ):
        if not isinstance(projection, PCAProjection):
            raise ValueError(f"projection must be a PCAProjection, got {type(projection).__name__}.")
        self.alpha = check_in_range("alpha", alpha, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        self.min_effect = check_in_range("min_effect", min_effect, 0.0, 1.0)
        if correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}.")
        self.correction = correction
        self.permutations = _positive_int("permutations", permutations, 1)
        self.max_mmd_n = _positive_int("max_mmd_n", max_mmd_n, 2)
        self.seed = _seed(seed)
        self.projection = projection
        ref = np.asarray(reference, dtype=np.float64)
        if ref.ndim != 2 or ref.shape[1] != projection.components:
            raise ValueError(f"reference must have shape (n, {projection.components}), got {ref.shape}.")
        ref = ref[np.isfinite(ref).all(axis=1)]
        if ref.shape[0] < 2:
            raise ValueError(f"reference must hold at least 2 finite rows, got {ref.shape[0]}.")
        self.reference_n = int(ref.shape[0])
        self._names = tuple(f"pc{i + 1}" for i in range(projection.components))
        self._refs = tuple(KSReference(ref[:, j], name=f"reference[:, {j}]") for j in range(ref.shape[1]))
        # The MMD's reference rows and bandwidth are fixed here, once: neither depends on the window, so the
        # permutation null stays exact, and a window costs only its own kernel rows.
        rng = np.random.default_rng([self.seed, 0x4D4D44])
        take = rng.permutation(ref.shape[0])[: self.max_mmd_n] if ref.shape[0] > self.max_mmd_n else slice(None)
        self._mmd_ref = _readonly(np.ascontiguousarray(ref[take]))
        d2 = _sq_distances(self._mmd_ref, self._mmd_ref)
        median = float(np.median(d2[np.triu_indices_from(d2, k=1)]))
        # Median heuristic: k(x, y) = exp(-|x - y|^2 / median |x - y|^2). A reference of identical rows has
        # median 0; any positive scale then gives the same (degenerate) kernel.
        self.bandwidth = median if median > 0 else 1.0
        self._k_ref = _readonly(np.exp(-d2 / self.bandwidth))

    @property
    def component_names(self) -> tuple[str, ...]:
        """Names of the components (``pc1`` ...), in the order results list them."""
        return self._names

    def test(self, embeddings: np.ndarray, *, seed: int | None = None) -> EmbeddingDriftResult:
        """Test one window's raw embeddings ``(n, dim)``: project them, then :meth:`test_projected`."""
        return self.test_projected(self.projection.project(embeddings), seed=seed)

    def test_projected(self, window: np.ndarray, *, seed: int | None = None) -> EmbeddingDriftResult:
        """Test one window's projected embeddings ``(n, components)`` against the reference.

        Rows with a non-finite value are left out. A window without a row is not drifted (no component
        tested, no multivariate test). ``seed`` (default: the constructor's) draws the window's MMD
        subsample and the permutations.
        """
        z = np.asarray(window, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != len(self._names):
            raise ValueError(f"window must have shape (n, {len(self._names)}), got {z.shape}.")
        z = z[np.isfinite(z).all(axis=1)]
        n = int(z.shape[0])
        if n == 0:
            return EmbeddingDriftResult(False, self.correction, self.alpha, self.min_effect, 0.0, (), None,
                                        0, self.reference_n)
        rng = np.random.default_rng([self.seed if seed is None else _seed(seed), 0x5045524D])

        block = np.sort(z.T, axis=1)  # one sort for every component
        statistic = np.array([ref.statistic(block[j]) for j, ref in enumerate(self._refs)])
        p_ks = np.atleast_1d(ks_p_value(statistic, self.reference_n, n))
        mmd, p_mmd, mmd_n = self._mmd(z, rng)

        adjusted = adjust_p_values(np.append(p_ks, p_mmd), self.correction)
        drifted = (adjusted[:-1] < self.alpha) & (statistic >= self.min_effect)
        components = tuple(
            FeatureDrift(
                feature=name,
                statistic=float(statistic[j]),
                p_value=float(p_ks[j]),
                p_value_adjusted=float(adjusted[j]),
                threshold=self.alpha,
                min_effect=self.min_effect,
                drifted=bool(drifted[j]),
                window_n=n,
                reference_n=self.reference_n,
            )
            for j, name in enumerate(self._names)
        )
        multivariate = MultivariateDrift(
            test=MMD_TEST,
            statistic=mmd,
            p_value=p_mmd,
            p_value_adjusted=float(adjusted[-1]),
            threshold=self.alpha,
            drifted=bool(adjusted[-1] < self.alpha),
            permutations=self.permutations,
            bandwidth=self.bandwidth,
            window_n=mmd_n,
            reference_n=int(self._mmd_ref.shape[0]),
        )
        return EmbeddingDriftResult(
            drifted=bool(drifted.any() or multivariate.drifted),
            correction=self.correction,
            alpha=self.alpha,
            min_effect=self.min_effect,
            drifted_share=float(drifted.mean()),
            components=components,
            multivariate=multivariate,
            window_n=n,
            reference_n=self.reference_n,
        )

    def _mmd(self, z: np.ndarray, rng: np.random.Generator) -> tuple[float, float, int]:
        """Return the squared MMD, its permutation p-value and the window rows used."""
        if z.shape[0] > self.max_mmd_n:
            z = z[np.sort(rng.choice(z.shape[0], self.max_mmd_n, replace=False))]
        m, r = z.shape[0], self._mmd_ref.shape[0]
        k_wr = np.exp(-_sq_distances(z, self._mmd_ref) / self.bandwidth)
        k_ww = np.exp(-_sq_distances(z, z) / self.bandwidth)
        kernel = np.block([[k_ww, k_wr], [k_wr.T, self._k_ref]])
        # MMD^2 (V-statistic) of a split is w^T K w with w = +1/m on one side, -1/r on the other. Column 0 is
        # the observed split; the others are permutations of it. One matrix product does them all.
        labels = np.concatenate([np.full(m, 1.0 / m), np.full(r, -1.0 / r)])
        w = np.empty((m + r, self.permutations + 1))
        w[:, 0] = labels
        w[:, 1:] = rng.permuted(np.broadcast_to(labels, (self.permutations, m + r)), axis=1).T
        stats = np.einsum("ij,ij->j", w, kernel @ w)
        observed = stats[0]
        # The +1 (the observed split counts as one of the permutations) makes p a valid p-value. A relative
        # tolerance keeps a permutation equal to the observed split in exact arithmetic from falling just
        # below it by rounding.
        exceed = int(np.count_nonzero(stats[1:] >= observed - 1e-12 * abs(observed)))
        return float(observed), (1 + exceed) / (1 + self.permutations), m

    def __repr__(self) -> str:
        return (f"EmbeddingDrift(components={len(self._names)}, reference_n={self.reference_n}, "
                f"alpha={self.alpha}, min_effect={self.min_effect}, correction={self.correction!r}, "
                f"permutations={self.permutations}, max_mmd_n={self.max_mmd_n}, seed={self.seed})")


def _finite_rows(embeddings, at_least: int, purpose: str = "") -> np.ndarray:
    """The finite rows of an ``(n, dim)`` embeddings array; at least ``at_least`` of them, for ``purpose``."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a two-dimensional (n, dim) array, got shape {x.shape}.")
    x = x[np.isfinite(x).all(axis=1)]
    if x.shape[0] < at_least:
        raise ValueError(f"embeddings must hold at least {at_least} finite rows{purpose}, got {x.shape[0]}.")
    return x


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def _positive_int(name: str, value: object, low: int) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer of at least {low}, got {value!r}.")
    return int(value)


def _seed(value: object) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0:
        raise ValueError(f"seed must be a non-negative integer, got {value!r}.")
    return int(value)
