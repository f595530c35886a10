"""``nlpmon reeval`` end to end on the CPU provider, through the real argparse handlers."""

from __future__ import annotations

import json
import re

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from monitor.devkit.synth.model import LABELS

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def _reeval_json(nlpmon, capsys, tiny, *extra) -> dict:
    code = nlpmon(
        "reeval",
        "--model",
        tiny.model_path,
        "--tokenizer",
        tiny.tokenizer_dir,
        "--data",
        tiny.heldout_path,
        "--format",
        "json",
        *extra,
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.count("\n") == 1  # exactly one JSON object on one line
    return json.loads(out)


def _independent_predictions(tiny, rows):
    """Probabilities from the raw tokenizers library and onnxruntime, one sentence at a time."""
    tok = Tokenizer.from_file(str(tiny.tokenizer_dir / "tokenizer.json"))
    tok.enable_truncation(tiny.max_length)
    sess = ort.InferenceSession(str(tiny.model_path), providers=["CPUExecutionProvider"])
    probs = []
    for enc in tok.encode_batch([r["text"] for r in rows]):
        logits = sess.run(None, {"input_ids": np.array([enc.ids]), "attention_mask": np.array([enc.attention_mask])})[
            0
        ][0].astype(np.float64)
        e = np.exp(logits - logits.max())
        probs.append(e / e.sum())
    return np.array(probs)


def test_json_report_matches_an_independent_numpy_computation(nlpmon, capsys, tiny, heldout_rows):
    d = _reeval_json(nlpmon, capsys, tiny, "--provider", "cpu", "--batch-size", "16")
    probs = _independent_predictions(tiny, heldout_rows)
    y = np.array([LABELS.index(r["label"]) for r in heldout_rows])
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)

    assert d["provider"] == "CPUExecutionProvider" and d["provider_requested"] == "cpu"
    assert d["n"] == len(heldout_rows) and d["labels"] == list(LABELS) and d["label_source"] == "config.json"
    assert d["accuracy"] == pytest.approx(np.mean(pred == y))
    cm = np.zeros((2, 2), dtype=int)
    np.add.at(cm, (y, pred), 1)
    assert d["confusion_matrix"] == cm.tolist()
    f1s = []
    for k, name in enumerate(LABELS):
        tp, fp, fn = cm[k, k], cm[:, k].sum() - cm[k, k], cm[k, :].sum() - cm[k, k]
        p, r = tp / (tp + fp), tp / (tp + fn)
        f1s.append(2 * p * r / (p + r))
        assert d["per_class"][name]["precision"] == pytest.approx(p)
        assert d["per_class"][name]["recall"] == pytest.approx(r)
        assert d["per_class"][name]["support"] == int(cm[k].sum())
    assert d["macro_f1"] == pytest.approx(np.mean(f1s))
    # ECE with 15 equal-width bins, written out with explicit edges.
    edges = np.linspace(0, 1, 16)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs((pred == y)[inside].mean() - conf[inside].mean())
    assert d["ece"] == pytest.approx(ece, abs=1e-6)  # float32 logits here, float64 softmax in nlpmon
    assert d["mean_confidence"] == pytest.approx(conf.mean(), abs=1e-6)
    assert sum(d["calibration"]["counts"]) == len(heldout_rows) and d["calibration"]["bins"] == 15
    assert d["sentences_per_second"] > 0 and d["duration_seconds"] > 0
    assert d["accuracy_drop"] is None and d["baseline"] is None and d["candidate"] is None


def test_json_object_has_every_figure(nlpmon, capsys, tiny):
    d = _reeval_json(
        nlpmon, capsys, tiny, "--name", "sentiment", "--model-version", "3", "--dataset-name", "sst2-heldout"
    )
    for key in (
        "reeval_schema",
        "started_at",
        "model",
        "tokenizer",
        "dataset",
        "provider",
        "providers_available",
        "batch_size",
        "max_length",
        "sorted_batches",
        "labels",
        "n",
        "accuracy",
        "macro_f1",
        "ece",
        "mean_confidence",
        "per_class",
        "confusion_matrix",
        "truncated",
        "sentences_per_second",
        "duration_seconds",
        "timings",
        "accuracy_drop",
        "baseline",
        "calibration",
        "candidate",
    ):
        assert key in d, key
    assert d["model"]["name"] == "sentiment" and d["model"]["version"] == "3" and len(d["model"]["sha256"]) == 64
    assert d["dataset"]["name"] == "sst2-heldout"
    # auto on a machine without a usable GPU runs on the CPU, and says so.
    if not HAS_CUDA:
        assert d["provider"] == "CPUExecutionProvider" and d["provider_requested"] == "auto"
    assert d["max_length"] == tiny.max_length  # the tokenizer's model_max_length


def test_baseline_accuracy_gives_the_drop(nlpmon, capsys, tiny):
    d = _reeval_json(nlpmon, capsys, tiny, "--baseline-accuracy", "0.95")
    assert d["baseline"]["source"] == "configured" and d["baseline"]["accuracy"] == 0.95
    assert d["accuracy_drop"] == pytest.approx(0.95 - d["accuracy"])


def test_truncation_is_counted(nlpmon, capsys, tiny, heldout_rows):
    d = _reeval_json(nlpmon, capsys, tiny, "--max-length", "12")
    tok = Tokenizer.from_file(str(tiny.tokenizer_dir / "tokenizer.json"))
    expected = sum(len(e.ids) > 12 for e in tok.encode_batch([r["text"] for r in heldout_rows]))
    assert 0 < d["truncated"] == expected < len(heldout_rows)
    assert d["max_length"] == 12


def test_table_output(nlpmon, capsys, tiny):
    code = nlpmon(
        "reeval",
        "--model",
        tiny.model_path,
        "--tokenizer",
        tiny.tokenizer_dir,
        "--data",
        tiny.heldout_path,
        "--baseline-accuracy",
        "0.9",
    )
    out, err = capsys.readouterr()
    assert code == 0
    for text in (
        "accuracy",
        "macro-F1",
        "ECE",
        "CPUExecutionProvider",
        "sentences/s",
        "Confusion matrix",
        "negative",
        "accuracy drop",
    ):
        assert text in out, text
    assert err == ""  # stderr is not a terminal here: no progress bar


def test_label_map_with_a_csv(nlpmon, capsys, tiny, heldout_rows, tmp_path):
    data = tmp_path / "heldout.csv"
    short = {"negative": "neg", "positive": "pos"}
    lines = ["review\tsentiment"] + [f"{r['text']}\t{short[r['label']]}" for r in heldout_rows[:100]]
    data = tmp_path / "heldout.tsv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = nlpmon(
        "reeval",
        "--model",
        tiny.model_path,
        "--tokenizer",
        tiny.tokenizer_dir,
        "--data",
        data,
        "--format",
        "json",
        "--text-field",
        "review",
        "--label-field",
        "sentiment",
        "--label-map",
        "neg=0,pos=1",
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    d = json.loads(out)
    assert d["n"] == 100 and d["labels"] == ["neg", "pos"] and d["label_source"] == "label-map"
    assert d["accuracy"] > 0.7


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has CUDA; the error path needs a CPU-only build")
def test_cuda_on_a_cpu_only_machine_is_a_clear_error(nlpmon, capsys, tiny):
    code = nlpmon(
        "reeval",
        "--model",
        tiny.model_path,
        "--tokenizer",
        tiny.tokenizer_dir,
        "--data",
        tiny.heldout_path,
        "--provider",
        "cuda",
    )
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("nlpmon reeval: error: provider cuda was requested") and "onnxruntime-gpu" in err


def _bad(tmp_path, tiny, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return ["--model", tiny.model_path, "--tokenizer", tiny.tokenizer_dir, "--data", path]


@pytest.mark.parametrize(
    "case, message",
    [
        # each of the job's files named with its role
        ("missing model", r"the served model \(--model\): model file .*nope\.onnx does not exist"),
        ("missing candidate", r"the candidate model \(--candidate\): model file .*int8\.onnx does not exist"),
        ("missing tokenizer", r"the tokenizer \(--tokenizer\): tokenizer directory .*no-tokenizer does not exist"),
        # a text starting with a quote in a TSV: the way out is in the line, the tab shown as \t
        ("tsv leading quote", r"d\.tsv:3: unreadable TSV: '\\t' expected after '\"'; a field that starts with \" "
                              r"is read as a quoted field .* each \" inside doubled \(\"\"\)"),
        ("not a model", r"cannot load ONNX model .*garbage\.onnx"),
        ("label not in map", r"d\.jsonl:2: label 'meh' is not in the label map \(known: negative, positive\)"),
        ("label not a class", r"d\.jsonl:1: label 'meh' is neither a class name from config\.json"),
        ("empty data set", r"d\.jsonl holds no records; the data set is empty"),
        ("missing text field", r"d\.jsonl:1: no field 'text' \(fields: 'body', 'label'\); set --text-field"),
        ("unreadable csv", r"d\.csv is not UTF-8 text"),
        ("bad label map", r"--label-map entry 'neg' is not name=index"),
    ],
)
def test_bad_inputs_exit_2_with_one_clear_line(nlpmon, capsys, tiny, tmp_path, case, message):
    ok = '{"text": "great", "label": "positive"}\n'
    argv = {
        "missing model": lambda: [
            "--model",
            tmp_path / "nope.onnx",
            "--tokenizer",
            tiny.tokenizer_dir,
            "--data",
            tiny.heldout_path,
        ],
        "missing tokenizer": lambda: [
            "--model",
            tiny.model_path,
            "--tokenizer",
            tmp_path / "no-tokenizer",
            "--data",
            tiny.heldout_path,
        ],
        "not a model": lambda: [
            "--model",
            (tmp_path / "garbage.onnx"),
            "--tokenizer",
            tiny.tokenizer_dir,
            "--data",
            tiny.heldout_path,
        ],
        "label not in map": lambda: (
            _bad(tmp_path, tiny, "d.jsonl", ok + '{"text": "so so", "label": "meh"}\n')
            + ["--label-map", "negative=0,positive=1"]
        ),
        "missing candidate": lambda: [*_bad(tmp_path, tiny, "d.jsonl", ok), "--candidate", tmp_path / "int8.onnx"],
        "tsv leading quote": lambda: _bad(tmp_path, tiny, "d.tsv", 'text\tlabel\ngreat\tpositive\n"quoted" at the start\t'
                                                                    "negative\n"),
        "label not a class": lambda: _bad(tmp_path, tiny, "d.jsonl", '{"text": "so so", "label": "meh"}\n'),
        "empty data set": lambda: _bad(tmp_path, tiny, "d.jsonl", ""),
        "missing text field": lambda: _bad(tmp_path, tiny, "d.jsonl", '{"body": "great", "label": "positive"}\n'),
        "unreadable csv": lambda: _bad(tmp_path, tiny, "d.csv", b"text,label\n\x89PNG\r\n\x1a\n\xff\xd8\n"),
        "bad label map": lambda: [
            "--model",
            tiny.model_path,
            "--tokenizer",
            tiny.tokenizer_dir,
            "--data",
            tiny.heldout_path,
            "--label-map",
            "neg",
        ],
    }[case]()
    (tmp_path / "garbage.onnx").write_bytes(b"this is not protobuf")
    code = nlpmon("reeval", *argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == "" and "Traceback" not in err and err.count("\n") == 1
    assert err.startswith("nlpmon reeval: error: ")
    assert re.search(message, err), err


def test_usage_errors_exit_2(nlpmon, tiny):
    with pytest.raises(SystemExit) as exc:
        nlpmon(
            "reeval",
            "--model",
            tiny.model_path,
            "--tokenizer",
            tiny.tokenizer_dir,
            "--data",
            tiny.heldout_path,
            "--batch-size",
            "0",
        )
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        nlpmon(
            "reeval",
            "--model",
            tiny.model_path,
            "--tokenizer",
            tiny.tokenizer_dir,
            "--data",
            tiny.heldout_path,
            "--baseline-accuracy",
            "1.5",
        )
    assert exc.value.code == 2
