"""``nlpmon sample DIR``: sample data to try every command of the README with, in a few seconds.

It writes, under DIR (created; files already there are replaced)::

    last-week.jsonl   3,000 labelled events of model "sentiment" from a period to trust (the reference)
    today.jsonl       2,000 labelled events over 17 minutes, the second half drifted (longer texts, unseen words, unsure, slower)
    tokenizer/        a tiny WordPiece tokenizer (model_max_length 64)
    model.onnx        a tiny ONNX classifier using it: ``logits``, and the pooled ``sentence_embedding``
    config.json       its class names, as Hugging Face exports have next to the model
    heldout.jsonl     500 labelled held-out texts, for ``nlpmon reeval``
    nlpmon.toml       a config that ties them together (paths relative to DIR: run the commands there)

The one module of production code that imports the development kit (``monitor.devkit.synth``), and lazily,
inside :func:`cmd_sample`: the generators are the devkit's (they ship in the same package), and the sample
is exactly what the devkit's tests and the demo use. docs/architecture.md records the exception.
"""

from __future__ import annotations

import sys
from pathlib import Path

from monitor.cli.common import EXIT_OK, UsageError

__all__ = ["add_parsers", "cmd_sample", "SAMPLE_CONFIG"]

# The config the sample's commands read: the daemon over today.jsonl, storing its windows in nlpmon.db.
SAMPLE_CONFIG = """\
# Written by `nlpmon sample`. Paths are relative to the directory the commands run in (this one).
[source]
kind = "file"
path = "today.jsonl"

[window]
size_seconds = 300

[reference]
paths = ["sentiment-profile.json"]   # `nlpmon reference build last-week.jsonl -o sentiment-profile.json --config nlpmon.toml`

[tokenizer]
path = "tokenizer"                   # max_length: the tokenizer's model_max_length (64)

[embedding]
model = "model.onnx"                 # the served model's own embedding output: embedding drift on today's texts
output = "sentence_embedding"
provider = "cpu"

[output]
store = true

[store]
url = "sqlite:///nlpmon.db"

[metrics]
port = 0                             # any free port: several tries never collide
"""


def add_parsers(sub) -> None:
    """Register ``sample`` on an ``argparse`` subparsers object."""
    p = sub.add_parser(
        "sample",
        help="write sample events, a tiny tokenizer and ONNX model, a held-out set and a config to try nlpmon",
        description="Write into DIR a small labelled event log of model 'sentiment' (last-week.jsonl, the "
        "reference period, and today.jsonl, whose second half drifts), a tiny tokenizer (tokenizer/) and ONNX "
        "classifier with an embedding output (model.onnx, config.json), a labelled held-out set (heldout.jsonl) "
        "and nlpmon.toml, so that every command of the README can be tried in a minute: run them in DIR. "
        "Deterministic for a given --seed.",
    )
    p.add_argument("dir", metavar="DIR", help="directory to write (created if missing)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the model (default 0)")
    p.set_defaults(func=cmd_sample)


def cmd_sample(args) -> int:
    # The devkit, lazily: the one production import of it (docs/architecture.md), and only for this command.
    from monitor.devkit.synth.model import build_tiny_classifier
    from monitor.devkit.synth.traffic import generate_events, write_events

    out = Path(args.dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    model = build_tiny_classifier(out, seed=args.seed, embedding_output=True)
    today_ms = 1_764_000_000_000
    week_ms = 7 * 86_400_000
    n_reference = write_events(out / "last-week.jsonl", generate_events(
        3000, seed=args.seed * 2 + 99, start_ms=today_ms - week_ms, label_share=0.3))
    n_today = write_events(out / "today.jsonl", generate_events(
        2000, seed=args.seed * 2 + 3, start_ms=today_ms, rate_per_s=2, drift_after=1000, label_share=0.3))
    (out / "nlpmon.toml").write_text(SAMPLE_CONFIG, encoding="utf-8")
    sys.stderr.write(
        f"wrote {out}/: last-week.jsonl ({n_reference} events), today.jsonl ({n_today} events, drifted from the "
        f"1001st), tokenizer/ (max_length {model.max_length}), model.onnx (+ config.json), heldout.jsonl "
        f"({model.n_heldout} texts), nlpmon.toml\nnext: cd {out} and try the README's commands (\"Try it\")\n")
    return EXIT_OK
