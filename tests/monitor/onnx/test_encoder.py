"""OnnxEncoder on the devkit's tiny real encoder: 2-D and 3-D outputs, batch independence, subject switch."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.embedding import EmbeddingDrift, fit_reference
from detectors.ks import KSDrift
from detectors.text_features import TEXT_FEATURES, text_features
from monitor.devkit.synth.encoder import build_tiny_encoder, make_subject_texts
from monitor.onnx.encoder import OnnxEncoder
from monitor.onnx.errors import ModelError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("encoder"), seed=0)


@pytest.fixture(scope="module", params=["pooled", "token"])
def encoder(request, built):
    output = built.pooled_output if request.param == "pooled" else built.token_output
    return OnnxEncoder(built.model_path, built.tokenizer_dir, output=output, provider="cpu", batch_size=8)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def test_shapes_pooling_and_provider(encoder, built):
    texts = make_subject_texts(20, "restaurant", seed=1)
    out = encoder.embed(texts)
    assert out.shape == (20, built.dim) and out.dtype == np.float32 and np.isfinite(out).all()
    assert encoder.provider == "CPUExecutionProvider"
    assert encoder.pooling == ("none" if encoder.output_name == built.pooled_output else "mean")
    assert encoder.embed([]).shape == (0, built.dim)


def test_mean_pooling_of_the_token_output_equals_the_graphs_own_pooling(built):
    texts = make_subject_texts(30, "phone", seed=2)
    pooled = OnnxEncoder(built.model_path, built.tokenizer_dir, output=built.pooled_output, provider="cpu")
    tokens = OnnxEncoder(built.model_path, built.tokenizer_dir, output=built.token_output, provider="cpu")
    np.testing.assert_allclose(tokens.embed(texts), pooled.embed(texts), rtol=1e-5, atol=1e-6)


def test_a_texts_embedding_does_not_depend_on_its_batch(encoder):
    texts = make_subject_texts(40, "restaurant", seed=3)
    strangers = make_subject_texts(60, "phone", seed=4)
    reference = _bits(encoder.embed(texts))
    alone = _bits(np.concatenate([encoder.embed([t]) for t in texts]))
    mixed = _bits(encoder.embed(strangers[:30] + texts[::-1] + strangers[30:])[30:70][::-1])
    big = OnnxEncoder(encoder.path, encoder.tokenizer, output=encoder.output_name, provider="cpu", batch_size=64)
    np.testing.assert_array_equal(alone, reference)
    np.testing.assert_array_equal(mixed, reference)
    np.testing.assert_array_equal(_bits(big.embed(texts)), reference)
    assert encoder.batch_independent(texts[:10])


def test_output_must_be_named_when_there_are_several(built):
    with pytest.raises(ModelError, match="name the embedding one"):
        OnnxEncoder(built.model_path, built.tokenizer_dir, provider="cpu")
    with pytest.raises(ModelError, match="has no output 'logits'"):
        OnnxEncoder(built.model_path, built.tokenizer_dir, output="logits", provider="cpu")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        OnnxEncoder(built.model_path, built.tokenizer_dir, output=built.pooled_output, batch_size=0)


def test_a_subject_switch_at_the_same_shape_is_seen_by_embeddings_only(built):
    """Restaurant reviews, then phone reviews of the same length: shape features quiet, EmbeddingDrift fires."""
    encoder = OnnxEncoder(built.model_path, built.tokenizer_dir, output=built.pooled_output, provider="cpu",
                          batch_size=32)
    reference_texts = make_subject_texts(2000, "restaurant", seed=20)
    same = make_subject_texts(256, "restaurant", seed=21)
    switched = make_subject_texts(256, "phone", seed=22)

    shape = text_features(reference_texts)
    shape_test = KSDrift({name: shape[:, i] for i, name in enumerate(TEXT_FEATURES)})
    projection, sample = fit_reference(encoder.embed(reference_texts), components=16, seed=1)
    embedding_test = EmbeddingDrift(projection, sample, seed=2)

    for texts in (same, switched):
        window = text_features(texts)
        assert not shape_test.test({n: window[:, i] for i, n in enumerate(TEXT_FEATURES)}).drifted
    assert not embedding_test.test(encoder.embed(same)).drifted
    result = embedding_test.test(encoder.embed(switched))
    assert result.drifted and result.multivariate.drifted and result.drifted_share >= 0.25
