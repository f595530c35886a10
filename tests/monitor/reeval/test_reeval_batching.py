"""Length-sorted dynamic padding restores the original order; the job API is picklable and validated."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from monitor.reeval import Baseline, ReevalOptions, run_reeval
from monitor.onnx.encode import encode_texts, load_tokenizer, plan_batches
from monitor.reeval.job import score_texts
from monitor.onnx.session import select_providers
from monitor.reeval.session import OnnxClassifier


@pytest.mark.parametrize(
    # lengths,              batch, sort,  expected batches
    "lengths, batch_size, sort, expected",
    [
        ([3, 9, 5, 9, 1], 2, True, [[1, 3], [2, 0], [4]]),  # longest first, ties keep file order
        ([3, 9, 5, 9, 1], 2, False, [[0, 1], [2, 3], [4]]),
        ([4, 4, 4], 5, True, [[0, 1, 2]]),
        ([], 3, True, []),
    ],
)
def test_plan_batches(lengths, batch_size, sort, expected):
    assert [b.tolist() for b in plan_batches(np.array(lengths, dtype=np.int64), batch_size, sort=sort)] == expected


def test_padded_batches_hold_each_text_exactly(tiny):
    tok = load_tokenizer(tiny.tokenizer_dir)
    texts = ["great", "a rather long and quite boring film", "ok then"]
    enc = encode_texts(tok, texts, max_length=64)
    feed = enc.batch(np.array([1, 0, 2]))
    expected = [tok(t)["input_ids"] for t in (texts[1], texts[0], texts[2])]
    width = max(len(e) for e in expected)
    assert feed["input_ids"].shape == (3, width) and feed["input_ids"].dtype == np.int64
    for row, ids in enumerate(expected):
        assert feed["input_ids"][row, : len(ids)].tolist() == ids
        assert (feed["input_ids"][row, len(ids) :] == tok.pad_token_id).all()
        assert feed["attention_mask"][row].tolist() == [1] * len(ids) + [0] * (width - len(ids))
    enc.left_padding = True
    short, long = tok(texts[0])["input_ids"], tok(texts[1])["input_ids"]
    left = enc.batch(np.array([0, 1]))
    pad = len(long) - len(short)
    assert left["input_ids"][0].tolist() == [tok.pad_token_id] * pad + short
    assert left["attention_mask"][0].tolist() == [0] * pad + [1] * len(short)
    assert left["input_ids"][1].tolist() == long


def test_sorted_batches_return_probabilities_in_the_original_order(tiny, heldout_rows):
    model = OnnxClassifier(tiny.model_path, provider="cpu")
    tok = load_tokenizer(tiny.tokenizer_dir)
    texts = [r["text"] for r in heldout_rows]
    one_by_one = score_texts(model, tok, texts, batch_size=1, max_length=tiny.max_length)
    sorted_batched = score_texts(model, tok, texts, batch_size=64, max_length=tiny.max_length)
    file_order = score_texts(model, tok, texts, batch_size=64, max_length=tiny.max_length, sort_by_length=False)
    np.testing.assert_allclose(sorted_batched, one_by_one, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(file_order, one_by_one, rtol=1e-5, atol=1e-6)
    # The check above must be able to fail: the sorted order is not the file order.
    lengths = encode_texts(tok, texts, max_length=tiny.max_length).lengths
    assert not np.array_equal(np.concatenate(plan_batches(lengths, 64)), np.arange(len(texts)))
    assert not np.allclose(one_by_one[np.argsort(-lengths, kind="stable")], one_by_one)


def test_job_metrics_do_not_depend_on_batching(tiny):
    base = dict(model=tiny.model_path, tokenizer=tiny.tokenizer_dir, data=tiny.heldout_path, provider="cpu")
    one = run_reeval(ReevalOptions(**base, batch_size=1))
    big = run_reeval(ReevalOptions(**base, batch_size=128))
    unsorted = run_reeval(ReevalOptions(**base, batch_size=128, sort_by_length=False))
    assert one.metrics.confusion == big.metrics.confusion == unsorted.metrics.confusion
    assert big.ece == pytest.approx(one.ece, abs=1e-6)
    assert big.sorted_batches and not unsorted.sorted_batches
    assert abs(one.accuracy - tiny.heldout_accuracy) <= 2 / tiny.n_heldout


def test_token_type_ids_model_runs_through_the_job(tmp_path):
    from monitor.devkit.synth.model import build_tiny_classifier

    tt = build_tiny_classifier(tmp_path, seed=1, n_heldout=100, token_type_ids=True)
    result = run_reeval(
        ReevalOptions(model=tt.model_path, tokenizer=tt.tokenizer_dir, data=tt.heldout_path, provider="cpu")
    )
    assert result.n == 100 and result.accuracy > 0.7


def test_options_and_result_survive_a_process_boundary(tiny):
    opts = ReevalOptions(
        model=str(tiny.model_path),
        tokenizer=tiny.tokenizer_dir,
        data=tiny.heldout_path,
        provider="cpu",
        label_map={"negative": 0, "positive": 1},
        baseline=Baseline(accuracy=0.9, source="first_run", run="42"),
    )
    assert pickle.loads(pickle.dumps(opts)) == opts
    result = run_reeval(opts)
    again = pickle.loads(pickle.dumps(result))
    assert again == result
    d = json.loads(json.dumps(result.to_dict()))
    assert d["baseline"] == {
        "source": "first_run",
        "run": "42",
        "accuracy": 0.9,
        "accuracy_drop": pytest.approx(0.9 - result.accuracy),
        "macro_f1": None,
        "macro_f1_drop": None,
    }
    # A stored run (its JSON) becomes the next run's baseline.
    b = Baseline.from_result(d, run="row-1")
    assert (
        b.accuracy == result.accuracy and b.macro_f1 == result.macro_f1 and b.source == "first_run" and b.run == "row-1"
    )
    assert Baseline.from_result(result).run == result.started_at


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(max_length=1), "max_length"),
        (dict(provider="tpu"), "provider"),
        (dict(calibration_bins=0), "calibration_bins"),
        (dict(text_field=""), "text_field"),
        (dict(flip_check_limit=-1), "flip_check_limit"),
    ],
)
def test_invalid_options(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReevalOptions(model=tmp_path / "m.onnx", tokenizer=tmp_path, data=tmp_path / "d.jsonl", **kwargs)
    with pytest.raises(ValueError, match="baseline accuracy"):
        Baseline(accuracy=1.2)


def test_provider_selection():
    assert select_providers("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert select_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert select_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    from monitor.reeval.errors import ProviderError

    with pytest.raises(ProviderError, match="no CUDAExecutionProvider"):
        select_providers("cuda", ["AzureExecutionProvider", "CPUExecutionProvider"])


@pytest.mark.parametrize("available", [
    ["CPUExecutionProvider"],  # the onnxruntime (CPU) wheel
    ["AzureExecutionProvider", "CPUExecutionProvider"],  # what onnxruntime >= 1.16 lists without a GPU build
    ["TensorrtExecutionProvider", "CPUExecutionProvider"],  # a GPU build without the CUDA provider
])
def test_cuda_without_the_cuda_provider_is_one_line_naming_the_fix(available):
    from monitor.reeval.errors import ProviderError

    with pytest.raises(ProviderError) as err:
        select_providers("cuda", available)
    message = str(err.value)
    assert "\n" not in message and ", ".join(available) in message
    # Both ways out: the GPU build of onnxruntime, or a provider that runs without one.
    assert "install onnxruntime-gpu in place of onnxruntime" in message and "provider auto or cpu" in message
    assert select_providers("cuda", [*available, "CUDAExecutionProvider"]) == ["CUDAExecutionProvider",
                                                                                "CPUExecutionProvider"]


def _graph_with_input(tmp_path, name):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", [name], ["logits"])],
        "odd",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "odd.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_a_model_that_is_not_a_text_classifier_is_refused(tmp_path):
    from monitor.reeval.errors import ModelError

    with pytest.raises(ModelError, match="has input 'pixel_values'; a text classifier takes only input_ids"):
        OnnxClassifier(_graph_with_input(tmp_path, "pixel_values"), provider="cpu")


def test_symbolic_class_dimension_is_probed(tiny, tmp_path):
    import onnx
    from onnx import helper, numpy_helper

    # Reshape the logits to [batch, -1] with a shape computed at run time: shape inference cannot know the
    # class count, as with some exported graphs.
    model = onnx.load(str(tiny.model_path))
    g = model.graph
    for node in g.node:
        node.output[:] = ["raw_logits" if o == "logits" else o for o in node.output]
    g.initializer.extend(
        [
            numpy_helper.from_array(np.array([0], dtype=np.int64), "zero1"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "one1"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus1"),
        ]
    )
    g.node.extend(
        [
            helper.make_node("Shape", ["raw_logits"], ["raw_shape"]),
            helper.make_node("Slice", ["raw_shape", "zero1", "one1"], ["batch_dim"]),
            helper.make_node("Concat", ["batch_dim", "minus1"], ["target_shape"], axis=0),
            helper.make_node("Reshape", ["raw_logits", "target_shape"], ["logits"]),
        ]
    )
    g.output[0].type.tensor_type.ClearField("shape")
    path = tmp_path / "symbolic.onnx"
    onnx.save(model, str(path))
    (tmp_path / "config.json").write_bytes(tiny.config_path.read_bytes())
    clf = OnnxClassifier(path, provider="cpu")
    assert clf.num_labels is None
    result = run_reeval(ReevalOptions(model=path, tokenizer=tiny.tokenizer_dir, data=tiny.heldout_path, provider="cpu"))
    assert result.metrics.num_classes == 2 and result.labels == ("negative", "positive")
    assert abs(result.accuracy - tiny.heldout_accuracy) <= 2 / tiny.n_heldout


def test_tokenizer_of_another_model_is_a_clear_error(tiny, tmp_path):
    from monitor.devkit.synth.model import build_tiny_classifier
    from monitor.reeval.errors import ModelError

    # A vocabulary of 300 ids: the tiny tokenizer's larger ids fall outside its embedding.
    small = build_tiny_classifier(tmp_path, n_train=200, n_heldout=20, vocab_size=300, n_filler_words=100)
    with pytest.raises(ModelError, match="does the tokenizer belong to this model"):
        run_reeval(
            ReevalOptions(model=small.model_path, tokenizer=tiny.tokenizer_dir, data=tiny.heldout_path, provider="cpu")
        )


def test_progress_bar_draws_only_after_its_delay_and_clears():
    import io

    from monitor.reeval.report import ProgressBar

    quiet = io.StringIO()
    bar = ProgressBar(quiet, delay=60)
    bar(5, 10, "model")
    bar.close()
    assert quiet.getvalue() == ""
    out = io.StringIO()
    bar = ProgressBar(out, delay=0, interval=0)
    bar(5, 10, "model")
    bar(10, 10, "model")
    assert "model" in out.getvalue() and "5/10" in out.getvalue() and "10/10" in out.getvalue()
    assert "[" + "#" * 15 + "." * 15 + "]" in out.getvalue()
    bar.close()
    assert out.getvalue().endswith("\r")
