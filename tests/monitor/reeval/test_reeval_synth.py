"""monitor.devkit.synth.model: a real tokenizer and ONNX classifier, deterministic, clearly better than chance."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from monitor.devkit.synth.model import LABELS, build_tiny_classifier, make_texts


def _ort_logits(model_path, tokenizer_dir, texts, max_length, type_ids=False):
    """Score texts one at a time with the raw tokenizers library and onnxruntime (no nlpmon code)."""
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    tok.enable_truncation(max_length)
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    out = []
    for enc in tok.encode_batch(texts):
        feed = {"input_ids": np.array([enc.ids]), "attention_mask": np.array([enc.attention_mask])}
        if type_ids:
            feed["token_type_ids"] = np.array([enc.type_ids])
        out.append(sess.run(None, feed)[0][0])
    return np.array(out)


def test_autotokenizer_loads_the_directory_offline(tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny.tokenizer_dir), local_files_only=True)
    enc = tok(["The movie was great!"])
    ids = enc["input_ids"][0]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.pad_token == "[PAD]" and tok.unk_token_id is not None
    assert tok.model_max_length == tiny.max_length
    assert tok.convert_ids_to_tokens(ids)[1:-1] == ["the", "movie", "was", "great", "!"]


def test_heldout_accuracy_clearly_above_chance_but_imperfect(tiny, heldout_rows):
    texts = [r["text"] for r in heldout_rows]
    labels = np.array([LABELS.index(r["label"]) for r in heldout_rows])
    logits = _ort_logits(tiny.model_path, tiny.tokenizer_dir, texts, tiny.max_length)
    acc = float(np.mean(logits.argmax(axis=1) == labels))
    assert 0.8 < acc < 0.97
    # The ONNX graph computes the trained regression: same accuracy as the numpy figure from training.
    assert abs(acc - tiny.heldout_accuracy) <= 2 / len(texts)
    assert len(heldout_rows) == tiny.n_heldout
    assert {r["label"] for r in heldout_rows} == set(LABELS)


def test_graph_inputs_outputs_and_config(tiny):
    sess = ort.InferenceSession(str(tiny.model_path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in sess.get_inputs()] == [
        ("input_ids", "tensor(int64)"),
        ("attention_mask", "tensor(int64)"),
    ]
    (out,) = sess.get_outputs()
    assert out.name == "logits" and out.shape[1] == 2 and isinstance(out.shape[0], str)
    config = json.loads(tiny.config_path.read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_padding_does_not_change_logits(tiny):
    sess = ort.InferenceSession(str(tiny.model_path), providers=["CPUExecutionProvider"])
    ids = np.array([[2, 50, 60, 70, 3]])
    alone = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
    padded_ids = np.concatenate([ids, np.zeros((1, 7), dtype=np.int64)], axis=1)
    mask = (np.arange(12) < 5).astype(np.int64)[None]
    padded = sess.run(None, {"input_ids": padded_ids, "attention_mask": mask})[0]
    np.testing.assert_allclose(padded, alone, rtol=1e-5, atol=1e-6)


def test_same_seed_same_files_other_seed_other_data(tmp_path):
    small = dict(n_train=300, n_heldout=50, vocab_size=400, n_filler_words=200)
    a = build_tiny_classifier(tmp_path / "a", seed=5, **small)
    b = build_tiny_classifier(tmp_path / "b", seed=5, **small)
    c = build_tiny_classifier(tmp_path / "c", seed=6, **small)
    assert a.heldout_path.read_bytes() == b.heldout_path.read_bytes()
    assert (a.tokenizer_dir / "tokenizer.json").read_bytes() == (b.tokenizer_dir / "tokenizer.json").read_bytes()
    assert a.model_path.read_bytes() == b.model_path.read_bytes()
    assert a.heldout_path.read_bytes() != c.heldout_path.read_bytes()


def test_token_type_ids_variant_takes_the_input_and_scores_the_same(tiny, tmp_path, heldout_rows):
    tt = build_tiny_classifier(tmp_path / "tt", seed=0, token_type_ids=True)
    sess = ort.InferenceSession(str(tt.model_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    texts = [r["text"] for r in heldout_rows[:40]]
    with_types = _ort_logits(tt.model_path, tt.tokenizer_dir, texts, tt.max_length, type_ids=True)
    plain = _ort_logits(tiny.model_path, tiny.tokenizer_dir, texts, tiny.max_length)
    np.testing.assert_allclose(with_types, plain, rtol=1e-4, atol=1e-4)


def test_make_texts_is_deterministic_and_drift_shifts_the_traffic(tiny):
    texts, labels = make_texts(400, seed=1)
    assert (texts, labels) == make_texts(400, seed=1)
    assert make_texts(400, seed=2)[0] != texts
    drifted, drifted_labels = make_texts(400, seed=1, drift=True)
    assert np.mean(drifted_labels) < np.mean(labels) - 0.1  # more negative
    tok = Tokenizer.from_file(str(tiny.tokenizer_dir / "tokenizer.json"))
    unk = tok.token_to_id("[UNK]")

    def unk_rate(xs):
        encs = tok.encode_batch(xs)
        return sum(e.ids.count(unk) for e in encs) / sum(len(e.ids) for e in encs)

    assert unk_rate(texts) < 0.01 < unk_rate(drifted)
    assert np.mean([len(t.split()) for t in drifted]) > 1.3 * np.mean([len(t.split()) for t in texts])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(embed_dim=1), "embed_dim"),
        (dict(hidden_dim=3), "hidden_dim"),
        (dict(label_noise=0.5), "label_noise"),
        (dict(max_length=2), "max_length"),
    ],
)
def test_invalid_sizes_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_classifier(tmp_path, **kwargs)
