"""Text and tokenizer features of a batch: the batch kernels against the per-string code they replaced.

    .venv/bin/python bench/text_features.py [--events 200000] [--batch 1000] [--repeats 7]

The texts of ``bench/pipeline.py``'s events (half clean, half drifted: ~3.5x longer, unseen words, emoji),
in batches, through the text features (with the lower-cased words ``oov_rate`` reuses) and the tokenizer
features, each time by the reference (nlpmon up to a19f2a3: tests/monitor/ingest/text_features_reference.py,
and the tuple-per-chunk cache below) and by the batch kernels, alternated in one process, pinned to one
CPU. Reports medians of process CPU time (what a busy neighbour inflates least) and checks the values are
bit-identical. Issue 23.

Read with ``bench/pipeline.py --before-after``: alone in a process, the per-string code's large temporaries
are page-faulted in afresh on every batch (the minor faults per batch are printed; ~3 us each on the
development VM), which the pipeline's warmer heap mostly avoids, so this ratio overstates the gain there.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from itertools import chain
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from bench.pipeline import events_file, tokenizer_dir  # noqa: E402
from detectors.text_features import text_features_batch, tokenizer_features  # noqa: E402
from monitor.ingest.tokenizer import TokenizerFeaturizer  # noqa: E402
from monitor.ingest.words import WordTable  # noqa: E402
from tests.monitor.ingest.text_features_reference import reference_text_features_and_words  # noqa: E402


class ReferenceChunkCounts:
    """The chunk cache as it was before issue 23: a (tokens, unknown) tuple per chunk, one split per text."""

    def __init__(self, f: TokenizerFeaturizer):
        self.f, self.chunks = f, {}

    def features(self, texts: list[str]) -> np.ndarray:
        n = len(texts)
        split = [t.split(" ") for t in texts]
        flat = list(chain.from_iterable(split))
        missing = [c for c in set(flat) if c not in self.chunks]
        for chunk, enc in zip(missing, self.f._backend.encode_batch(missing, add_special_tokens=False)):
            self.chunks[chunk] = (len(enc.ids), enc.ids.count(self.f.unk_id) if self.f.unk_id is not None else 0)
        get = self.chunks.__getitem__
        counts = np.array([get(c) for c in flat], dtype=np.int64).reshape(-1, 2)
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, split), dtype=np.int64, count=n)[:-1], out=starts[1:])
        sums = np.add.reduceat(counts, starts, axis=0)
        return tokenizer_features(sums[:, 0] + self.f._added, sums[:, 1], sums[:, 0], self.f.max_length)


def cpu_seconds(fn, batches, faults: list[float]) -> float:
    """CPU seconds of ``fn`` over the batches; the minor page faults per batch are appended to ``faults``."""
    f0, c0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time()
    for b in batches:
        fn(b)
    elapsed = time.process_time() - c0
    faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / len(batches))
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed)")
    args = ap.parse_args()
    os.sched_setaffinity(0, {args.cpu if args.cpu is not None else sorted(os.sched_getaffinity(0))[0]})
    lines = events_file(args.events, drift_after=args.events // 2).read_bytes().splitlines()
    texts = [t for t in (orjson.loads(line).get("text") for line in lines) if t is not None]
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    tok_dir = tokenizer_dir()
    # the words as the pipeline keeps them: per-text lists of strings before, ids of the word table now
    table = WordTable()
    kernels = {"text features + words": (reference_text_features_and_words,
                                         lambda b: text_features_batch(b, table.generation()))}
    if tok_dir is not None:
        new_tok = TokenizerFeaturizer(tok_dir, max_length=512)
        old_tok = ReferenceChunkCounts(TokenizerFeaturizer(tok_dir, max_length=512))
        kernels["tokenizer features"] = (old_tok.features, new_tok.features)
    for name, (old, new) in kernels.items():  # warm caches; check identity on every batch
        for b in batches:
            a, c = old(b), new(b)
            a, c = (a[0], c[0]) if isinstance(a, tuple) else (a, c)
            assert a.tobytes() == c.tobytes(), name
    mean_chars = sum(map(len, texts)) / len(texts)
    print(f"{len(texts):,} texts ({mean_chars:.0f} characters on average), batches of {args.batch}, "
          f"{args.repeats} alternated repeats, pinned to one CPU; values bit-identical")
    print(f"{'features':<24} {'per-string (µs/text)':>21} {'batch kernel (µs/text)':>23} {'speed-up':>9} "
          f"{'page faults/batch old, new':>27}")
    for name, (old, new) in kernels.items():
        t_old, t_new, f_old, f_new = [], [], [], []
        for _ in range(args.repeats):
            t_old.append(cpu_seconds(old, batches, f_old))
            t_new.append(cpu_seconds(new, batches, f_new))
        o, n = statistics.median(t_old), statistics.median(t_new)
        print(f"{name:<24} {o / len(texts) * 1e6:>21.2f} {n / len(texts) * 1e6:>23.2f} {o / n:>8.2f}x "
              f"{statistics.median(f_old):>17,.0f}, {statistics.median(f_new):,.0f}")


if __name__ == "__main__":
    main()
