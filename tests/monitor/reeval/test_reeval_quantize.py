"""``nlpmon quantize`` and the INT8 candidate report of ``nlpmon reeval --candidate``."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from monitor.reeval import ReevalOptions, run_reeval
from monitor.onnx.encode import load_tokenizer
from monitor.reeval.job import score_texts
from monitor.reeval.session import OnnxClassifier


def test_quantize_cli_writes_an_int8_model_that_loads(nlpmon, capsys, tiny, tmp_path):
    out = tmp_path / "q" / "model_int8.onnx"
    assert nlpmon("quantize", tiny.model_path, "-o", out, "--format", "json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["per_channel"] is True and report["weight_type"] == "QInt8" and report["integer_nodes"] > 0
    assert report["bytes_after"] < report["bytes_before"]
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    # Per-channel: the classifier weight has one scale per output column, not one for the tensor.
    scales = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith("_scale")}
    assert any(s.size > 1 for s in scales.values())
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]


def test_per_tensor_has_one_scale_per_weight(nlpmon, capsys, tiny, tmp_path):
    out = tmp_path / "pt.onnx"
    assert nlpmon("quantize", tiny.model_path, "-o", out, "--per-tensor") == 0
    assert "per-tensor QInt8" in capsys.readouterr().out
    model = onnx.load(str(out))
    scales = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith("_scale")]
    assert scales and all(s.size == 1 for s in scales)


def test_int8_agrees_with_fp32_on_most_of_the_heldout_set(tiny, tiny_int8, heldout_rows):
    tok = load_tokenizer(tiny.tokenizer_dir)
    texts = [r["text"] for r in heldout_rows]
    fp32 = score_texts(OnnxClassifier(tiny.model_path, provider="cpu"), tok, texts, max_length=tiny.max_length)
    int8 = score_texts(OnnxClassifier(tiny_int8, provider="cpu"), tok, texts, max_length=tiny.max_length)
    agree = np.mean(fp32.argmax(axis=1) == int8.argmax(axis=1))
    assert agree >= 0.95
    assert 0 < np.abs(fp32 - int8).max() < 0.2  # quantized (not a copy) yet close


def test_candidate_report(nlpmon, capsys, tiny, tiny_int8):
    code = nlpmon(
        "reeval",
        "--model",
        tiny.model_path,
        "--tokenizer",
        tiny.tokenizer_dir,
        "--data",
        tiny.heldout_path,
        "--candidate",
        tiny_int8,
        "--batch-size",
        "16",
        "--flip-check-limit",
        "200",
        "--format",
        "json",
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    d = json.loads(out)
    c = d["candidate"]
    assert c["provider"] == "CPUExecutionProvider"
    assert 0.95 <= c["agreement"] <= 1.0
    assert c["disagreements"] == round((1 - c["agreement"]) * d["n"])
    assert 0.0 < c["max_probability_change"] < 0.2 and 0 <= c["max_change_index"] < d["n"]
    assert c["mean_probability_change"] <= c["max_probability_change"]
    assert c["accuracy_delta"] == pytest.approx(c["accuracy"] - d["accuracy"])
    assert sum(map(sum, c["confusion_matrix"])) == d["n"]
    bc = c["batch_consistency"]
    assert bc["batch_size"] == 16 and bc["n"] == 200
    assert 0.0 <= bc["flip_rate"] <= 1.0 and bc["flips"] == round(bc["flip_rate"] * bc["n"])
    assert bc["max_probability_change"] >= 0.0
    assert c["max_change_text"] and c["sentences_per_second"] > 0


def test_a_model_compared_with_itself_agrees_exactly(tiny):
    r = run_reeval(
        ReevalOptions(
            model=tiny.model_path,
            tokenizer=tiny.tokenizer_dir,
            data=tiny.heldout_path,
            provider="cpu",
            candidate=tiny.model_path,
            batch_size=8,
            flip_check_limit=None,
        )
    )
    c = r.candidate
    assert c.comparison.agreement == 1.0 and c.comparison.disagreements == 0
    assert c.comparison.max_probability_change < 1e-5
    assert c.metrics == r.metrics
    assert c.batch_consistency.n == r.n and c.batch_consistency.flips == 0


def test_flip_rate_matches_a_direct_batch_one_run(tiny, tiny_int8, heldout_rows):
    r = run_reeval(
        ReevalOptions(
            model=tiny.model_path,
            tokenizer=tiny.tokenizer_dir,
            data=tiny.heldout_path,
            provider="cpu",
            candidate=tiny_int8,
            batch_size=32,
            flip_check_limit=None,
        )
    )
    tok = load_tokenizer(tiny.tokenizer_dir)
    texts = [row["text"] for row in heldout_rows]
    int8 = OnnxClassifier(tiny_int8, provider="cpu")
    one = score_texts(int8, tok, texts, batch_size=1, max_length=tiny.max_length)
    batched = score_texts(int8, tok, texts, batch_size=32, max_length=tiny.max_length)
    bc = r.candidate.batch_consistency
    assert bc.flips == int(np.sum(one.argmax(axis=1) != batched.argmax(axis=1)))
    assert bc.max_probability_change == pytest.approx(np.abs(one - batched).max(), abs=1e-7)


@pytest.mark.parametrize("case", ["missing", "same path", "not onnx"])
def test_quantize_bad_inputs_exit_2(nlpmon, capsys, tiny, tmp_path, case):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not a model")
    src, dst = {
        "missing": (tmp_path / "nope.onnx", tmp_path / "out.onnx"),
        "same path": (tiny.model_path, tiny.model_path),
        "not onnx": (junk, tmp_path / "out.onnx"),
    }[case]
    assert nlpmon("quantize", src, "-o", dst) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlpmon quantize: error: ") and err.count("\n") == 1 and "Traceback" not in err


def _traffic_log(path, texts, *, garbage=()):
    lines = [json.dumps({"ts": 1_764_000_000 + i, "model": "sentiment", "prediction": "pos", "text": t})
             for i, t in enumerate(texts)]
    lines += [json.dumps({"ts": 1_764_000_100, "model": "intent", "prediction": "x", "text": "another model"})]
    lines += list(garbage)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_candidate_agreement_on_logged_traffic(nlpmon, capsys, tiny, tiny_int8, heldout_rows, tmp_path):
    from monitor.onnx.encode import load_tokenizer
    from monitor.reeval.job import score_texts
    from monitor.reeval.session import OnnxClassifier

    texts = [r["text"] for r in heldout_rows[:150]]
    log = _traffic_log(tmp_path / "traffic.jsonl", texts, garbage=["{not json", '{"ts": 1, "model": "sentiment"}'])
    code = nlpmon("reeval", "--model", tiny.model_path, "--tokenizer", tiny.tokenizer_dir, "--data", tiny.heldout_path,
                  "--candidate", tiny_int8, "--flip-check-limit", "0", "--traffic", log, "--traffic-sample", "100",
                  "--name", "sentiment", "--format", "json")
    out, err = capsys.readouterr()
    assert code == 0, err
    traffic = json.loads(out)["candidate"]["traffic"]

    # Independently: the last 100 logged texts of the model through both models.
    tok = load_tokenizer(tiny.tokenizer_dir)
    a = score_texts(OnnxClassifier(tiny.model_path, provider="cpu"), tok, texts[-100:], max_length=tiny.max_length)
    b = score_texts(OnnxClassifier(tiny_int8, provider="cpu"), tok, texts[-100:], max_length=tiny.max_length)
    same = a.argmax(axis=1) == b.argmax(axis=1)
    assert traffic["n"] == 100
    assert traffic["agreement"] == pytest.approx(same.mean()) and traffic["disagreements"] == int((~same).sum())
    assert traffic["max_probability_change"] == pytest.approx(np.abs(a - b).max(axis=1).max(), abs=1e-6)
    assert "max_change_index" not in traffic
    # Invalid lines are reported by reason; no logged text is printed anywhere.
    assert "skipped invalid events" in err and "malformed_json" in err
    assert not any(t in out or t in err for t in texts)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--traffic", "{log}"], "--traffic needs --candidate"),
        (["--candidate", "{int8}", "--traffic", "{missing}"], "cannot read the traffic log"),
        (["--candidate", "{int8}", "--traffic", "{log}", "--name", "nobody"], "no valid event of model 'nobody'"),
    ],
)
def test_traffic_errors_exit_2(nlpmon, capsys, tiny, tiny_int8, tmp_path, extra, message):
    log = _traffic_log(tmp_path / "traffic.jsonl", ["a logged text"])
    fill = {"log": log, "int8": tiny_int8, "missing": tmp_path / "missing.jsonl"}
    code = nlpmon("reeval", "--model", tiny.model_path, "--tokenizer", tiny.tokenizer_dir, "--data", tiny.heldout_path,
                  *[a.format(**fill) for a in extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
