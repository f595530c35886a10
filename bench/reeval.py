"""Throughput of the re-evaluation job against a bare loop, FP32 against INT8, sorted against unsorted batches.

    .venv/bin/python bench/reeval.py                    # defaults below, about a minute on one core
    .venv/bin/python bench/reeval.py --n 500 --repeats 3 --embed-dim 64 --hidden-dim 64   # quick look

All in one process, on a generated classifier (monitor.devkit.synth.model) big enough for padding to matter:
embedding 256, a 256-unit per-token hidden layer, vocabulary 4000, max_length 256, texts of 5-200 words
(log-uniform). Medians of --repeats runs, interleaved (each repeat runs every configuration once); ratios
are medians of the per-repeat ratios, with their range. One warm-up run of each configuration first.

1. ``run_reeval`` end to end (model, tokenizer and data loading included) against a bare loop: the same
   tokenizer (``AutoTokenizer``, ``padding=True, truncation=True, return_tensors="np"`` per batch), an
   onnxruntime session with the same options, the same length-sorted batches, nothing else. Target >= 0.9.
2. FP32 against per-channel dynamic INT8 (``monitor.reeval.quantize``), sentences/s of the eval phase.
3. Length-sorted against file-order batching, sentences/s of the eval phase. Target sorted >= 1.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAYON_NUM_THREADS", "1")  # the Rust tokenizer must not borrow other cores
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import onnxruntime as ort  # noqa: E402

from monitor.devkit.synth.model import build_tiny_classifier  # noqa: E402
from monitor.reeval import ReevalOptions, run_reeval  # noqa: E402
from monitor.onnx.encode import encode_texts, load_tokenizer, plan_batches  # noqa: E402
from monitor.reeval.quantize import quantize_model  # noqa: E402

CACHE = ROOT / "bench" / ".cache"


def build(args):
    knobs = dict(
        n_train=4000,
        n_heldout=args.n,
        vocab_size=args.vocab,
        n_filler_words=args.vocab,
        embed_dim=args.embed_dim,
        hidden_dim=args.hidden_dim,
        max_length=args.max_length,
        min_words=args.min_words,
        max_words=args.max_words,
    )
    out = CACHE / ("reeval-" + "-".join(str(v) for v in knobs.values()))
    t0 = time.perf_counter()
    model = build_tiny_classifier(out, seed=0, **knobs)
    int8 = quantize_model(model.model_path, out / "model_int8.onnx").output
    return model, int8, time.perf_counter() - t0


def bare_loop(model_path: Path, tokenizer_dir: Path, texts: list[str], batches, max_length: int, threads: int) -> float:
    """Seconds for tokenize + session.run over the given batches, and nothing else."""
    tok = load_tokenizer(tokenizer_dir)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    for idx in batches:
        enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="np")
        sess.run(None, {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return time.perf_counter() - t0


def job(options: ReevalOptions) -> tuple[float, float]:
    """End-to-end seconds of run_reeval, and the job's own eval-phase sentences/s."""
    t0 = time.perf_counter()
    result = run_reeval(options)
    return time.perf_counter() - t0, result.sentences_per_second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="held-out sentences")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (0: its default)")
    ap.add_argument("--cpus", type=int, default=1, help="pin to this many CPUs (0: no pinning)")
    ap.add_argument("--embed-dim", type=int, default=256)
    ap.add_argument("--hidden-dim", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=4000)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--min-words", type=int, default=5)
    ap.add_argument("--max-words", type=int, default=200)
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = ap.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cpus]))

    model, int8, build_s = build(args)
    texts = [json.loads(line)["text"] for line in model.heldout_path.read_text(encoding="utf-8").splitlines()]
    n = len(texts)
    tok = load_tokenizer(model.tokenizer_dir)
    lengths = encode_texts(tok, texts, max_length=model.max_length).lengths
    batches = plan_batches(lengths, args.batch_size, sort=True)

    base = dict(
        tokenizer=model.tokenizer_dir,
        data=model.heldout_path,
        provider="cpu",
        batch_size=args.batch_size,
        intra_op_threads=args.threads,
    )
    configs = {
        "job fp32 sorted": ReevalOptions(model=model.model_path, **base),
        "job int8 sorted": ReevalOptions(model=int8, **base),
        "job fp32 unsorted": ReevalOptions(model=model.model_path, sort_by_length=False, **base),
    }
    print(
        f"re-evaluation bench: {n} sentences ({int(lengths.min())}-{int(lengths.max())} tokens, "
        f"mean {lengths.mean():.0f}), "
        f"batch {args.batch_size}, embed {model.embed_dim}, hidden {model.hidden_dim}, vocab {model.vocab_size}, "
        f"max_length {model.max_length}; onnxruntime {ort.__version__} CPU, {args.threads or 'default'} thread(s), "
        f"{len(os.sched_getaffinity(0))} CPU(s); model built in {build_s:.1f} s; "
        f"held-out accuracy {model.heldout_accuracy:.3f}"
    )

    wall: dict[str, list[float]] = {k: [] for k in configs}
    eval_rate: dict[str, list[float]] = {k: [] for k in configs}
    bare: list[float] = []
    bare_loop(model.model_path, model.tokenizer_dir, texts, batches, model.max_length, args.threads)  # warm-up
    for opts in configs.values():
        run_reeval(opts)
    for _ in range(args.repeats):
        bare.append(bare_loop(model.model_path, model.tokenizer_dir, texts, batches, model.max_length, args.threads))
        for name, opts in configs.items():
            seconds, rate = job(opts)
            wall[name].append(seconds)
            eval_rate[name].append(rate)

    med = statistics.median

    def paired(num: list[float], den: list[float]) -> tuple[float, float, float]:
        # Each repeat runs every configuration back to back, so per-repeat ratios cancel slow drifts in
        # machine load; report their median and range.
        ratios = [a / b for a, b in zip(num, den, strict=True)]
        return med(ratios), min(ratios), max(ratios)

    bare_rate = n / med(bare)
    job_rate = n / med(wall["job fp32 sorted"])
    fp32_eval, int8_eval = med(eval_rate["job fp32 sorted"]), med(eval_rate["job int8 sorted"])
    unsorted_eval = med(eval_rate["job fp32 unsorted"])
    job_ratio = paired(bare, wall["job fp32 sorted"])
    eval_ratio = paired(eval_rate["job fp32 sorted"], [n / b for b in bare])
    int8_ratio = paired(eval_rate["job int8 sorted"], eval_rate["job fp32 sorted"])
    sort_ratio = paired(eval_rate["job fp32 sorted"], eval_rate["job fp32 unsorted"])
    figures = {
        "sentences": n,
        "repeats": args.repeats,
        "bare_loop_sentences_per_second": bare_rate,
        "job_end_to_end_sentences_per_second": job_rate,
        "job_eval_sentences_per_second": fp32_eval,
        "job_over_bare": job_ratio[0],
        "job_eval_over_bare": eval_ratio[0],
        "int8_eval_sentences_per_second": int8_eval,
        "int8_over_fp32": int8_ratio[0],
        "unsorted_eval_sentences_per_second": unsorted_eval,
        "sorted_over_unsorted": sort_ratio[0],
    }

    def row(label: str, rate: float, ratio: tuple[float, float, float] | None = None, target: str = "") -> None:
        text = f"{label:<42} {rate:>11,.0f}"
        if ratio is not None:
            text += f" {ratio[0]:>7.3f}  [{ratio[1]:.3f}-{ratio[2]:.3f}]  {target}"
        print(text.rstrip())

    print(f"\n{'measure':<42} {'sentences/s':>11} {'ratio':>7}  {'range':<13}  target")
    row("bare loop (tokenizer + session.run)", bare_rate)
    row("run_reeval end to end (incl. loading)", job_rate, job_ratio, ">= 0.9 x bare")
    row("run_reeval eval phase (tokenize + model)", fp32_eval, eval_ratio)
    row("INT8 per-channel, eval phase", int8_eval, int8_ratio, "as measured, INT8 / FP32")
    row("file-order batches, eval phase", unsorted_eval)
    row("length-sorted batches, eval phase", fp32_eval, sort_ratio, ">= 1.5 x unsorted")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
