"""A small, real ONNX text *encoder* built from a seed, and a corpus whose subject changes at the same shape.

Public API
----------
``make_subject_texts(n, subject, seed=0, *, min_words=5, max_words=40) -> list[str]``
    ``n`` review-like texts about ``subject`` (one of :data:`SUBJECTS`: ``"restaurant"`` or ``"phone"``).
    The two subjects share the filler and sentiment words and draw their own subject words from lists whose
    words are paired by length (``menu`` / ``case``, ``waiter`` / ``screen`` ...), with the same word-count
    distribution and the same punctuation: every shape feature (``detectors.text_features``) has the same
    distribution under both, and only what the texts are about differs.

``build_tiny_encoder(out_dir, *, seed=0, embed_dim=32, ...) -> TinyEncoder``
    Train a WordPiece tokenizer on both subjects and write::

        out_dir/tokenizer/      loadable with transformers.AutoTokenizer.from_pretrained(dir), offline
        out_dir/encoder.onnx    input_ids, attention_mask (int64, [batch, seq]) ->
                                token_embeddings [batch, seq, dim]  (3-D, per token)
                                sentence_embedding [batch, dim]     (2-D, masked mean of the above)

The graph is ``Gather(embedding, input_ids) -> MatMul + Add + Tanh (per token) -> token_embeddings``, then
the masked mean over the sequence (``attention_mask``) ``-> sentence_embedding``; opset 17, dynamic batch and
sequence axes. The embedding table comes from the corpus' own structure: latent semantic analysis (a
truncated SVD of the document-token TF-IDF matrix of a generated training corpus) gives tokens that occur
in the same texts nearby vectors, so the two subjects' texts land in different regions of the embedding
space, as a real encoder's would. The remaining dimensions are seeded noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.devkit.synth.model import (
    IR_VERSION,
    NEGATIVE_WORDS,
    OPSET,
    POSITIVE_WORDS,
    filler_words,
    save_tokenizer,
    text_lengths,
    train_tokenizer,
)  # fmt: skip

__all__ = ["TinyEncoder", "build_tiny_encoder", "make_subject_texts", "SUBJECTS", "TOKEN_OUTPUT", "POOLED_OUTPUT"]

TOKEN_OUTPUT = "token_embeddings"
POOLED_OUTPUT = "sentence_embedding"

# Paired by length, so a switch of subject changes no length or character statistic.
_PAIRS = (
    ("menu", "case"), ("waiter", "screen"), ("pasta", "phone"), ("dessert", "charger"), ("table", "cable"),
    ("service", "battery"), ("kitchen", "speaker"), ("chef", "apps"), ("wine", "chip"), ("pizza", "model"),
    ("soup", "port"), ("salad", "video"), ("dinner", "camera"), ("lunch", "photo"), ("bread", "flash"),
    ("cheese", "signal"), ("steak", "pixel"), ("sauce", "touch"), ("flavor", "volume"), ("portion", "storage"),
    ("spicy", "laggy"), ("tasty", "crisp"), ("waitress", "keyboard"), ("booking", "display"),
    ("starter", "sensors"), ("noodles", "buttons"), ("coffee", "update"), ("burger", "memory"),
    ("bistro", "tablet"), ("dining", "typing"),
)  # fmt: skip
SUBJECTS = {
    "restaurant": tuple(a for a, _ in _PAIRS),
    "phone": tuple(b for _, b in _PAIRS),
}


@dataclass(frozen=True)
class TinyEncoder:
    """Where a built encoder lives and what it outputs."""

    out_dir: Path
    tokenizer_dir: Path
    model_path: Path
    token_output: str
    pooled_output: str
    dim: int
    vocab_size: int
    max_length: int


def make_subject_texts(
    n: int, subject: str, seed: int = 0, *, min_words: int = 5, max_words: int = 40, n_filler_words: int = 600
) -> list[str]:
    """Return ``n`` review-like texts about ``subject``; see the module docstring."""
    if subject not in SUBJECTS:
        raise ValueError(f"subject must be one of {', '.join(SUBJECTS)}, got {subject!r}")
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    # The same seed draws the same skeleton for both subjects; only the subject words' identity differs.
    rng = np.random.default_rng(seed)
    words, weights = filler_words(n_filler_words)
    own = SUBJECTS[subject]
    pools = (NEGATIVE_WORDS, POSITIVE_WORDS)
    texts = []
    for length in text_lengths(rng, n, min_words, max_words).tolist():
        text = [words[i] for i in rng.choice(len(words), size=length, p=weights)]
        for i in np.flatnonzero(rng.random(length) < 0.3):
            text[i] = own[rng.integers(len(own))]
        pool = pools[int(rng.random() < 0.5)]
        for _ in range(max(1, int(rng.binomial(length, 0.1)))):
            text.insert(int(rng.integers(len(text) + 1)), pool[rng.integers(len(pool))])
        for i in np.flatnonzero(rng.random(len(text)) < 0.04):
            text[i] += "," if rng.random() < 0.6 else "."
        sentence = " ".join(text)
        texts.append(sentence[0].upper() + sentence[1:] + ("!" if rng.random() < 0.2 else "."))
    return texts


def _lsa_table(tok, texts: list[str], vocab: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Token vectors from a truncated SVD of the document-token TF-IDF matrix, padded with seeded noise."""
    from scipy import sparse

    ids = [e.ids for e in tok.encode_batch(texts)]
    rows = np.repeat(np.arange(len(ids)), [len(x) for x in ids])
    cols = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=rows.size)
    counts = sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(len(ids), vocab))
    counts.sum_duplicates()
    df = np.asarray((counts > 0).sum(axis=0)).ravel()
    idf = np.log((1.0 + len(ids)) / (1.0 + df)) + 1.0
    tfidf = (counts @ sparse.diags(idf)).toarray()
    tfidf /= np.linalg.norm(tfidf, axis=1, keepdims=True) + 1e-12
    semantic = max(2, dim // 2)
    _, s, vt = np.linalg.svd(tfidf, full_matrices=False)
    vt = vt[:semantic] * np.sign(vt[np.arange(semantic), np.abs(vt[:semantic]).argmax(axis=1)])[:, None]
    table = (vt.T * s[:semantic]) / s[0] * math.sqrt(vocab)
    table /= table.std() or 1.0
    noise = rng.standard_normal((vocab, dim - semantic)) * 0.5
    return np.concatenate([table, noise], axis=1)


def _graph(emb: np.ndarray, w: np.ndarray, b: np.ndarray):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def init(name, array, dtype=np.float32):
        return numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name)

    dim = emb.shape[1]
    seq = ["batch", "sequence"]
    nodes = [
        helper.make_node("Gather", ["embeddings.word", "input_ids"], ["tok"], name="embed"),
        helper.make_node("MatMul", ["tok", "layer.weight"], ["mm"], name="layer_matmul"),
        helper.make_node("Add", ["mm", "layer.bias"], ["pre"], name="layer_bias"),
        helper.make_node("Tanh", ["pre"], [TOKEN_OUTPUT], name="layer_tanh"),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT, name="mask_cast"),
        helper.make_node("Unsqueeze", ["mask_f", "axes_last"], ["mask3"], name="mask_unsqueeze"),
        helper.make_node("Mul", [TOKEN_OUTPUT, "mask3"], ["masked"], name="pool_mask"),
        helper.make_node("ReduceSum", ["masked", "axes_seq"], ["pool_sum"], keepdims=0, name="pool_sum"),
        helper.make_node("ReduceSum", ["mask3", "axes_seq"], ["pool_count"], keepdims=0, name="pool_count"),
        helper.make_node("Max", ["pool_count", "one"], ["pool_count_safe"], name="pool_count_safe"),
        helper.make_node("Div", ["pool_sum", "pool_count_safe"], [POOLED_OUTPUT], name="pool_mean"),
    ]
    graph = helper.make_graph(
        nodes,
        "nlpmon_tiny_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, seq),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, seq),
        ],
        [
            helper.make_tensor_value_info(TOKEN_OUTPUT, TensorProto.FLOAT, ["batch", "sequence", dim]),
            helper.make_tensor_value_info(POOLED_OUTPUT, TensorProto.FLOAT, ["batch", dim]),
        ],
        initializer=[
            init("embeddings.word", emb), init("layer.weight", w), init("layer.bias", b),
            init("axes_seq", [1], np.int64), init("axes_last", [-1], np.int64), init("one", np.float32(1.0)),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="nlpmon.synth")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def build_tiny_encoder(
    out_dir: Path | str,
    *,
    seed: int = 0,
    n_train: int = 1500,
    vocab_size: int = 1000,
    embed_dim: int = 32,
    max_length: int = 64,
    min_words: int = 5,
    max_words: int = 40,
) -> TinyEncoder:
    """Build the encoder described in the module docstring under ``out_dir`` and return its paths."""
    if embed_dim < 4:
        raise ValueError(f"embed_dim must be at least 4, got {embed_dim}")
    if max_length < 4:
        raise ValueError(f"max_length must be at least 4, got {max_length}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = dict(min_words=min_words, max_words=max_words)
    texts = [
        t for subject_index, subject in enumerate(SUBJECTS)
        for t in make_subject_texts(n_train // 2, subject, seed=seed * 7 + 100 + subject_index, **shape)
    ]  # fmt: skip
    tok = train_tokenizer(texts, vocab_size)
    vocab = tok.get_vocab_size()
    emb = _lsa_table(tok, texts, vocab, embed_dim, rng)
    # A near-identity per-token layer: real per-token work that keeps the corpus' geometry.
    q, _ = np.linalg.qr(rng.standard_normal((embed_dim, embed_dim)))
    w = (0.6 * np.eye(embed_dim) + 0.4 * q) * 0.5
    b = rng.normal(0.0, 0.05, embed_dim)
    model_path = out / "encoder.onnx"
    model_path.write_bytes(_graph(emb, w, b).SerializeToString())
    tokenizer_dir = out / "tokenizer"
    save_tokenizer(tok, tokenizer_dir, max_length, False)
    return TinyEncoder(out, tokenizer_dir, model_path, TOKEN_OUTPUT, POOLED_OUTPUT, embed_dim, vocab, max_length)
