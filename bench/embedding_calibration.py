"""False alarms and power of EmbeddingDrift at its defaults, on synthetic embeddings and on the tiny encoder's.

    .venv/bin/python bench/embedding_calibration.py                  # defaults, whiten off and on
    .venv/bin/python bench/embedding_calibration.py --windows 300 --window-n 256

For each data set: a reference (the projection fitted on one half, the other half projected, as
``detectors.embedding.fit_reference`` does), ``--windows`` no-drift windows drawn fresh from the reference
distribution, and ``--shifted`` windows per kind of shift. Printed per configuration: the share of no-drift
windows flagged (false-alarm rate, with its one-sided 95% binomial upper bound) and, per shift, the share
flagged (power), for the whole detector and for its parts (any KS component, the MMD after the family's
adjustment, and "MMD raw": its unadjusted p-value below alpha, whose no-drift rate shows its calibration).

Synthetic: 64-dimensional Gaussians with a decaying spectrum (variances ``1 / (1 + i/4)``). Shifts: the mean
moves by ``delta`` (a Euclidean distance in units of the average standard deviation) along a random direction; or 20% of the
window comes from a second cluster. Encoder: the tiny devkit encoder's pooled embeddings of
``make_subject_texts``: reference and null windows about restaurants; shifted windows all phone, or a mix.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from detectors.embedding import EmbeddingDrift, fit_reference  # noqa: E402


def rates(detector: EmbeddingDrift, windows: list[np.ndarray]) -> tuple[float, float, float, float]:
    """Share flagged overall, by any KS component, by the MMD (adjusted), and MMD p < alpha unadjusted."""
    results = [detector.test(w, seed=i) for i, w in enumerate(windows)]
    overall = np.mean([r.drifted for r in results])
    ks = np.mean([any(c.drifted for c in r.components) for r in results])
    mmd = np.mean([r.multivariate.drifted for r in results])
    raw = np.mean([r.multivariate.p_value < detector.alpha for r in results])
    return float(overall), float(ks), float(mmd), float(raw)


def upper95(k: int, n: int) -> float:
    """One-sided 95% Clopper–Pearson upper bound of a rate k/n."""
    return 1.0 if k == n else float(stats.beta.ppf(0.95, k + 1, n - k))


def synthetic(args, rng: np.random.Generator):
    dim = 64
    sd = 1.0 / np.sqrt(1.0 + np.arange(dim) / 4.0)
    draw = lambda n: rng.normal(size=(n, dim)) * sd  # noqa: E731
    reference = draw(args.reference)
    nulls = [draw(args.window_n) for _ in range(args.windows)]
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    shifted = {}
    for delta in (0.25, 0.5):  # displacement of the mean, in units of the average standard deviation
        shifted[f"mean shift {delta}"] = [draw(args.window_n) + delta * sd.mean() * direction
                                          for _ in range(args.shifted)]
    centre = rng.normal(size=dim) * sd * 1.5

    def mixed(n):
        x = draw(n)
        k = int(0.2 * n)
        x[:k] = draw(k) * 0.7 + centre
        return x

    shifted["20% second cluster"] = [mixed(args.window_n) for _ in range(args.shifted)]
    return reference, nulls, shifted


def encoder_data(args, rng: np.random.Generator):
    from monitor.devkit.synth.encoder import build_tiny_encoder, make_subject_texts
    from monitor.onnx.encoder import OnnxEncoder

    with tempfile.TemporaryDirectory() as tmp:
        built = build_tiny_encoder(Path(tmp) / "enc", seed=0)
        enc = OnnxEncoder(built.model_path, built.tokenizer_dir, output=built.pooled_output, provider="cpu")
        n_null = args.windows * args.window_n
        restaurant = enc.embed(make_subject_texts(args.reference + n_null + args.shifted * args.window_n,
                                                  "restaurant", seed=11))
        phone = enc.embed(make_subject_texts(args.shifted * args.window_n, "phone", seed=12))
    reference = restaurant[: args.reference]
    rest = restaurant[args.reference :]
    nulls = [rest[i * args.window_n : (i + 1) * args.window_n] for i in range(args.windows)]
    mix_pool = rest[n_null:]
    w = args.window_n
    shifted = {"all phone": [phone[i * w : (i + 1) * w] for i in range(args.shifted)]}
    for share in (0.1, 0.15, 0.2):
        k = int(share * w)
        shifted[f"{int(share * 100)}% phone"] = [
            np.concatenate([mix_pool[i * w : i * w + w - k], phone[i * w : i * w + k]]) for i in range(args.shifted)
        ]
    return reference, nulls, shifted


def report(name: str, data, args) -> None:
    reference, nulls, shifted = data
    print(f"\n== {name}: reference {reference.shape[0]} x {reference.shape[1]}, {len(nulls)} no-drift windows "
          f"and {args.shifted} per shift, {args.window_n} rows each, alpha {args.alpha}")
    print(f"{'whiten':<7} {'windows':<22} {'flagged':>8} {'95% up':>7} {'any KS':>7} {'MMD':>6} {'MMD raw':>8} "
          f"{'ms/win':>7}")
    for whiten in args.whiten:
        projection, sample = fit_reference(reference, components=args.components, whiten=whiten, seed=1)
        detector = EmbeddingDrift(projection, sample, alpha=args.alpha, permutations=args.permutations,
                                  max_mmd_n=args.max_mmd_n, seed=2)
        start = time.perf_counter()
        overall, ks, mmd, raw = rates(detector, nulls)
        ms = (time.perf_counter() - start) / len(nulls) * 1e3
        k = round(overall * len(nulls))
        print(f"{str(whiten):<7} {'no drift':<22} {overall:>8.3f} {upper95(k, len(nulls)):>7.3f} {ks:>7.3f} "
              f"{mmd:>6.3f} {raw:>8.3f} {ms:>7.1f}")
        for label, windows in shifted.items():
            overall, ks, mmd, raw = rates(detector, windows)
            print(f"{str(whiten):<7} {label:<22} {overall:>8.3f} {'':>7} {ks:>7.3f} {mmd:>6.3f} {raw:>8.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200, help="no-drift windows (at least 100)")
    parser.add_argument("--shifted", type=int, default=30, help="windows per kind of shift")
    parser.add_argument("--window-n", type=int, default=256, help="embeddings per window (sample_size)")
    parser.add_argument("--reference", type=int, default=4000, help="reference embeddings (half fit, half test)")
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument("--permutations", type=int, default=2000)
    parser.add_argument("--max-mmd-n", type=int, default=300)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--whiten", type=lambda s: s == "true", nargs="+", default=[False, True],
                        help="true/false; default both")
    parser.add_argument("--data", choices=("synthetic", "encoder", "both"), default="both")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    if args.windows < 100:
        parser.error("--windows must be at least 100 for a false-alarm rate worth reading")
    rng = np.random.default_rng(args.seed)
    if args.data in ("synthetic", "both"):
        report("synthetic", synthetic(args, rng), args)
    if args.data in ("encoder", "both"):
        report("tiny ONNX encoder (pooled output)", encoder_data(args, rng), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
