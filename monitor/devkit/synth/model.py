"""A small, real ONNX text classifier built from a seed: corpus, WordPiece tokenizer, weights, graph.

Public API
----------
``build_tiny_classifier(out_dir, *, seed=0, ...) -> TinyModel``
    Generate a review corpus, train a WordPiece tokenizer and a softmax regression, and write::

        out_dir/tokenizer/      tokenizer.json, tokenizer_config.json, special_tokens_map.json
                                (``transformers.AutoTokenizer.from_pretrained(dir)`` loads it offline)
        out_dir/model.onnx      input_ids, attention_mask [, token_type_ids] (int64, [batch, seq]) -> logits
                                [, sentence_embedding: the pooled hidden state, with embedding_output=True]
        out_dir/config.json     id2label / label2id, as Hugging Face exports have next to the model
        out_dir/heldout.jsonl   {"text": ..., "label": "negative" | "positive"} per line

    Deterministic for a given set of arguments; the defaults build in about a second. Size knobs
    (``vocab_size``, ``embed_dim``, ``hidden_dim``, ``max_length``, ``min_words``/``max_words``) make it
    heavy enough for benchmarks.

``make_texts(n, seed=0, drift=False, *, min_words=5, max_words=40, n_filler_words=600) -> (texts, labels)``
    ``n`` review-like texts (``list[str]``) and their labels (``list[int]``, 0 = negative, 1 = positive),
    drawn from the same vocabulary as a model built with the same ``n_filler_words``. With ``drift=True``
    the traffic shifts: 70% negative instead of 50%, texts 1.5x longer, 10% of filler words replaced by
    unseen words with digits (the tokenizer never saw a digit, so they become ``[UNK]``), and an emoji in about
    a third of the texts.

The graph is ``Gather(embedding, input_ids) [+ Gather(type_embedding, token_type_ids)]
-> [MatMul + Add + Relu, per token] -> masked mean over the sequence (attention_mask) -> MatMul + Add ->
logits [batch, num_labels]``, opset 17, with dynamic batch and sequence axes.

The tokenizer is a ``tokenizers`` WordPiece model (lowercase/NFD/strip-accents normalizer,
``BertPreTokenizer``, ``[CLS] $A [SEP]`` post-processor) whose vocabulary is counted from the training
corpus: every character, then the most frequent whole words up to ``vocab_size``.

How the weights are trained: a softmax regression (L-BFGS, L2) on the mean-pooled token counts of the
tokenized training texts, [CLS] and [SEP] included exactly as the graph pools them. Its per-token evidence
is written into the embedding along ``num_labels`` orthonormal directions, next to random components; the
hidden layer passes those directions through ReLU pairs (``relu(x) - relu(-x) = x``) beside random units,
and the readout recovers the regression's logits. The network therefore computes the trained regression
exactly while doing the per-token work of a real encoder layer.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TinyModel", "build_tiny_classifier", "EMBEDDING_OUTPUT", "make_texts", "LABELS", "POSITIVE_WORDS", "NEGATIVE_WORDS",
           "filler_words", "text_lengths", "train_tokenizer", "save_tokenizer"]

LABELS = ("negative", "positive")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
EMBEDDING_OUTPUT = "sentence_embedding"  # the optional second output of build_tiny_classifier(embedding_output=True)
OPSET = 17
IR_VERSION = 8  # the IR version of opset 17; older onnxruntime builds refuse newer IR versions

POSITIVE_WORDS = (
    "good great excellent wonderful loved enjoyable brilliant charming delightful superb fantastic moving "
    "beautiful funny clever fresh solid memorable engaging touching impressive pleasant gripping stunning "
    "perfect amazing warm smart satisfying recommended masterful lovely heartfelt witty inspired elegant "
    "thrilling tender vivid rewarding"
).split()
NEGATIVE_WORDS = (
    "bad awful boring terrible dull weak poor tedious disappointing horrible messy forgettable bland clumsy "
    "annoying predictable pointless lazy slow waste hated worst flat painful silly shallow confusing overlong "
    "ugly mediocre stale dreadful lifeless tiresome hollow sloppy grating cheap muddled unbearable"
).split()
_COMMON = (
    "the a and it was this movie film story plot acting i of to in but with for that is as on at by scene "
    "characters director ending cast music one some really very quite just also then there they he she we "
    "you script performance camera dialogue hour minutes sequel screen time part role lead actor actress "
    "audience picture moment season episode series book version"
).split()
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_EMOJI = ("\U0001f600", "\U0001f62d", "\U0001f525", "\U0001f44e", "\U0001f44d")


@dataclass(frozen=True)
class TinyModel:
    """Where a built classifier lives and what it is."""

    out_dir: Path
    tokenizer_dir: Path
    model_path: Path
    config_path: Path
    heldout_path: Path
    labels: tuple[str, ...]
    vocab_size: int
    max_length: int
    embed_dim: int
    hidden_dim: int
    token_type_ids: bool
    n_heldout: int
    heldout_accuracy: float


@functools.lru_cache(maxsize=8)
def _pseudo_words(n: int, consonants: str, salt: int) -> tuple[str, ...]:
    """Return ``n`` distinct pronounceable non-words, the same for the same arguments."""
    rng = np.random.default_rng(12345 + salt)
    taken = set(POSITIVE_WORDS) | set(NEGATIVE_WORDS) | set(_COMMON)
    out: list[str] = []
    while len(out) < n:
        syllables = int(rng.integers(2, 4))
        w = "".join(
            consonants[rng.integers(len(consonants))] + _VOWELS[rng.integers(len(_VOWELS))] for _ in range(syllables)
        )
        if rng.random() < 0.3:
            w += "nrsl"[rng.integers(4)]
        if w not in taken:
            taken.add(w)
            out.append(w)
    return tuple(out)


@functools.lru_cache(maxsize=8)
def filler_words(n_filler_words: int) -> tuple[tuple[str, ...], np.ndarray]:
    words = _COMMON + list(_pseudo_words(max(0, n_filler_words - len(_COMMON)), _CONSONANTS, 0))
    weights = 1.0 / (np.arange(len(words)) + 2.0)  # Zipf: common words first, a long tail of rare ones
    return tuple(words), weights / weights.sum()


def text_lengths(rng: np.random.Generator, n: int, min_words: int, max_words: int) -> np.ndarray:
    # Log-uniform: many short texts and a long tail, the shape of real review lengths.
    u = rng.uniform(math.log(min_words), math.log(max_words + 1), size=n)
    return np.clip(np.floor(np.exp(u)).astype(np.int64), min_words, max_words)


def make_texts(
    n: int,
    seed: int = 0,
    drift: bool = False,
    *,
    min_words: int = 5,
    max_words: int = 40,
    n_filler_words: int = 600,
) -> tuple[list[str], list[int]]:
    """Return ``n`` review-like texts and their true labels (0 negative, 1 positive); see the module docstring."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words} and {max_words}")
    rng = np.random.default_rng(seed)
    words, weights = filler_words(n_filler_words)
    # Model numbers and handles: digits never occur in training text, so WordPiece maps them to [UNK].
    drift_words = tuple(f"{w}{i}" for i, w in enumerate(_pseudo_words(200, _CONSONANTS, 1), 2))
    pools = (NEGATIVE_WORDS, POSITIVE_WORDS)
    labels = (rng.random(n) < (0.3 if drift else 0.5)).astype(np.int64)
    lengths = text_lengths(rng, n, min_words, max_words)
    if drift:
        lengths = np.ceil(lengths * 1.5).astype(np.int64)
    texts: list[str] = []
    for label, length in zip(labels.tolist(), lengths.tolist()):
        text = [words[i] for i in rng.choice(len(words), size=length, p=weights)]
        if drift:
            for i in np.flatnonzero(rng.random(length) < 0.1):
                text[i] = drift_words[rng.integers(len(drift_words))]
        # How clearly this text speaks for its class: some reviews are mixed, which is what makes the
        # classifier imperfect and its confidences worth calibrating.
        strength = rng.uniform(0.7, 1.0)
        for _ in range(max(3, int(rng.binomial(length, 0.15)))):
            own = rng.random() < strength
            pool = pools[label] if own else pools[1 - label]
            word = pool[rng.integers(len(pool))]
            if not own and rng.random() < 0.3:
                word = "not " + word  # "not bad": the words point the other way, a bag of words cannot tell
            text.insert(int(rng.integers(len(text) + 1)), word)
        for i in np.flatnonzero(rng.random(len(text)) < 0.04):
            text[i] += "," if rng.random() < 0.6 else "."
        sentence = " ".join(text)
        sentence = sentence[0].upper() + sentence[1:] + ("!" if rng.random() < 0.2 else ".")
        if drift and rng.random() < 0.33:
            sentence += " " + _EMOJI[rng.integers(len(_EMOJI))]
        texts.append(sentence)
    return texts, labels.tolist()


def train_tokenizer(texts: list[str], vocab_size: int):
    """A BERT-style WordPiece tokenizer whose vocabulary is learned from ``texts``.

    The vocabulary is the special tokens, every character seen (alone and as a ``##`` continuation), then the
    most frequent words, ties broken alphabetically, up to ``vocab_size``; rarer words fall back to pieces.
    It is counted here rather than with ``tokenizers.trainers.WordPieceTrainer`` because that trainer breaks
    ties in hash-map order, so two runs with the same seed would give different vocabularies.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in counts for c in w})
    vocab = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars]
    known = set(vocab)
    for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size:
            break
        if word not in known:
            vocab.append(word)
            known.add(word)
    tok = Tokenizer(
        models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100)
    )
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return tok


def save_tokenizer(tok, out: Path, max_length: int, token_type_ids: bool) -> None:
    # These three files are what PreTrainedTokenizerFast.save_pretrained writes. Writing them directly keeps
    # the directory loadable by transformers 4.x and 5.x alike (5.x would record its own class name, which
    # 4.x cannot resolve) and keeps transformers' import time out of every test that builds a model.
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    special = {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_length,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]
        if token_type_ids
        else ["input_ids", "attention_mask"],
        "added_tokens_decoder": {
            str(tok.token_to_id(t)): {
                "content": t,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for t in SPECIAL_TOKENS
        },
        **special,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def _pooled_counts(tok, texts: list[str], vocab: int):
    """Mean-pooled one-hot token matrix (sparse ``n x vocab``), exactly what the graph's masked mean sees."""
    from scipy import sparse

    ids = [e.ids for e in tok.encode_batch(texts)]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    cols = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(lengths.sum()))
    rows = np.repeat(np.arange(len(ids)), lengths)
    vals = np.repeat(1.0 / lengths, lengths)
    return sparse.csr_matrix((vals, (rows, cols)), shape=(len(ids), vocab))


def _softmax_regression(x, y: np.ndarray, k: int, l2: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy.optimize import minimize

    n, v = x.shape
    onehot = np.eye(k)[y]

    def loss(theta):
        w, b = theta[: v * k].reshape(v, k), theta[v * k :]
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        g = (p - onehot) / n
        value = -(onehot * logp).sum() / n + 0.5 * l2 * (w * w).sum()
        grad = np.concatenate([(x.T @ g + l2 * w).ravel(), g.sum(axis=0)])
        return value, grad

    res = minimize(loss, np.zeros(v * k + k), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return res.x[: v * k].reshape(v, k), res.x[v * k :]


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Return the scale s minimising the negative log-likelihood of softmax(s * logits)."""
    from scipy.optimize import minimize_scalar

    z = logits - logits.max(axis=1, keepdims=True)

    def nll(log_s):
        zs = z * math.exp(log_s)
        return float(np.mean(np.log(np.exp(zs).sum(axis=1)) - zs[np.arange(len(y)), y]))

    return math.exp(minimize_scalar(nll, bounds=(-3.0, 5.0), method="bounded").x)


def _onnx_graph(emb, type_emb, w1, b1, w2, b2, labels, embedding_output: bool = False):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f32 = lambda a: numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    inits = []

    def init(name, array):
        t = f32(array)
        t.name = name
        inits.append(t)
        return name

    seq = ["batch", "sequence"]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, seq),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, seq),
    ]
    nodes = [helper.make_node("Gather", [init("embeddings.word", emb), "input_ids"], ["tok_emb"], name="embed")]
    x = "tok_emb"
    if type_emb is not None:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, seq))
        nodes += [
            helper.make_node(
                "Gather", [init("embeddings.token_type", type_emb), "token_type_ids"], ["type_emb"], name="embed_type"
            ),
            helper.make_node("Add", ["tok_emb", "type_emb"], ["emb"], name="embed_sum"),
        ]
        x = "emb"
    if w1 is not None:
        nodes += [
            helper.make_node("MatMul", [x, init("ffn.weight", w1)], ["ffn_mm"], name="ffn_matmul"),
            helper.make_node("Add", ["ffn_mm", init("ffn.bias", b1)], ["ffn_pre"], name="ffn_bias"),
            helper.make_node("Relu", ["ffn_pre"], ["ffn_out"], name="ffn_relu"),
        ]
        x = "ffn_out"
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes_seq")
    last = numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes_last")
    one = numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")
    inits += [axes, last, one]
    nodes += [
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT, name="mask_cast"),
        helper.make_node("Unsqueeze", ["mask_f", "axes_last"], ["mask3"], name="mask_unsqueeze"),
        helper.make_node("Mul", [x, "mask3"], ["masked"], name="pool_mask"),
        helper.make_node("ReduceSum", ["masked", "axes_seq"], ["pool_sum"], keepdims=0, name="pool_sum"),
        helper.make_node("ReduceSum", ["mask3", "axes_seq"], ["pool_count"], keepdims=0, name="pool_count"),
        helper.make_node("Max", ["pool_count", "one"], ["pool_count_safe"], name="pool_count_safe"),
        helper.make_node("Div", ["pool_sum", "pool_count_safe"], ["pooled"], name="pool_mean"),
        helper.make_node("MatMul", ["pooled", init("classifier.weight", w2)], ["cls_mm"], name="classifier_matmul"),
        helper.make_node("Add", ["cls_mm", init("classifier.bias", b2)], ["logits"], name="classifier_bias"),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(labels)])]
    if embedding_output:  # the pooled hidden state, as a served model exported for [embedding] model has
        dim = (w1 if w1 is not None else emb).shape[1]
        nodes.append(helper.make_node("Identity", ["pooled"], [EMBEDDING_OUTPUT], name="embedding_output"))
        outputs.append(helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["batch", dim]))
    graph = helper.make_graph(nodes, "nlpmon_tiny_classifier", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="nlpmon.synth")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"id2label": json.dumps(dict(enumerate(labels)))})
    onnx.checker.check_model(model)
    return model


def build_tiny_classifier(
    out_dir: Path | str,
    *,
    seed: int = 0,
    n_train: int = 2000,
    n_heldout: int = 500,
    vocab_size: int = 1000,
    n_filler_words: int = 600,
    embed_dim: int = 32,
    hidden_dim: int = 32,
    max_length: int = 64,
    min_words: int = 5,
    max_words: int = 40,
    label_noise: float = 0.05,
    l2: float = 3e-4,
    overconfidence: float = 1.5,
    token_type_ids: bool = False,
    embedding_output: bool = False,
) -> TinyModel:
    """Build the classifier described in the module docstring under ``out_dir`` and return its paths.

    ``hidden_dim=0`` leaves out the per-token hidden layer. ``label_noise`` is the share of training and
    held-out labels flipped at random, on top of the ambiguous texts. ``overconfidence`` multiplies the logits
    after temperature fitting on the training set (1.0: about calibrated there). ``embedding_output`` adds a
    second output, :data:`EMBEDDING_OUTPUT` (the pooled hidden state, ``[batch, dim]``), for ``[embedding] model``.
    """
    k = len(LABELS)
    if embed_dim < k:
        raise ValueError(f"embed_dim must be at least the number of labels ({k}), got {embed_dim}")
    if hidden_dim and hidden_dim < 2 * k:
        raise ValueError(f"hidden_dim must be 0 or at least {2 * k}, got {hidden_dim}")
    if not 0.0 <= label_noise < 0.5:
        raise ValueError(f"label_noise must be in [0, 0.5), got {label_noise}")
    if overconfidence <= 0:
        raise ValueError(f"overconfidence must be positive, got {overconfidence}")
    if max_length < 4:
        raise ValueError(f"max_length must be at least 4, got {max_length}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    shape = dict(min_words=min_words, max_words=max_words, n_filler_words=n_filler_words)
    train_texts, train_y = make_texts(n_train, seed=seed * 2 + 1, **shape)
    held_texts, held_y = make_texts(n_heldout, seed=seed * 2 + 2, **shape)
    train_y, held_y = np.asarray(train_y), np.asarray(held_y)
    train_y = np.where(rng.random(n_train) < label_noise, 1 - train_y, train_y)
    held_y = np.where(rng.random(n_heldout) < label_noise, 1 - held_y, held_y)

    tok = train_tokenizer(train_texts, vocab_size)
    tok.enable_truncation(max_length)
    vocab = tok.get_vocab_size()

    train_x = _pooled_counts(tok, train_texts, vocab)
    coef, bias = _softmax_regression(train_x, train_y, k, l2)
    # L2 on mean-pooled features leaves the logits timid (confidence far below accuracy). Rescale them to the
    # temperature that fits the training set, then sharpen: fine-tuned transformers are overconfident, and
    # the calibration figures should have something to show.
    t = _fit_temperature(train_x @ coef + bias, train_y) * overconfidence
    coef, bias = coef * t, bias * t
    held_logits = _pooled_counts(tok, held_texts, vocab) @ coef + bias
    heldout_accuracy = float(np.mean(held_logits.argmax(axis=1) == held_y))

    # Embed the regression exactly (see the module docstring). Evidence is scaled to unit spread so the
    # activations look like an encoder's rather than like raw regression weights.
    coef = coef - coef.mean(axis=1, keepdims=True)
    scale = float(coef.std()) or 1.0
    q, _ = np.linalg.qr(rng.standard_normal((embed_dim, k)))
    noise = rng.standard_normal((vocab, embed_dim)) / math.sqrt(embed_dim)
    noise -= (noise @ q) @ q.T  # random parts stay orthogonal to the evidence directions
    emb = noise + (coef / scale) @ q.T
    type_emb = None
    if token_type_ids:
        type_emb = np.zeros((2, embed_dim))
        type_emb[1] = rng.standard_normal(embed_dim) / math.sqrt(embed_dim)
        type_emb[1] -= (type_emb[1] @ q) @ q.T
    if hidden_dim:
        extra = hidden_dim - 2 * k
        w1 = np.concatenate([q, -q, rng.standard_normal((embed_dim, extra)) / math.sqrt(embed_dim)], axis=1)
        b1 = np.concatenate([np.zeros(2 * k), rng.normal(0.0, 0.1, extra)])
        w2 = np.concatenate([np.eye(k) * scale, -np.eye(k) * scale, np.zeros((extra, k))], axis=0)
    else:
        w1 = b1 = None
        w2 = q * scale
    graph = _onnx_graph(emb, type_emb, w1, b1, w2, bias, LABELS, embedding_output)

    model_path = out / "model.onnx"
    model_path.write_bytes(graph.SerializeToString())
    tokenizer_dir = out / "tokenizer"
    tok.no_truncation()
    save_tokenizer(tok, tokenizer_dir, max_length, token_type_ids)
    config_path = out / "config.json"
    config = {
        "id2label": {str(i): name for i, name in enumerate(LABELS)},
        "label2id": {name: i for i, name in enumerate(LABELS)},
        "num_labels": k,
        "max_position_embeddings": max_length,
        "generator": "nlpmon.synth.model",
        "seed": seed,
    }
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    heldout_path = out / "heldout.jsonl"
    with heldout_path.open("w", encoding="utf-8") as f:
        for text, y in zip(held_texts, held_y.tolist()):
            f.write(json.dumps({"text": text, "label": LABELS[y]}, ensure_ascii=False) + "\n")
    return TinyModel(
        out_dir=out,
        tokenizer_dir=tokenizer_dir,
        model_path=model_path,
        config_path=config_path,
        heldout_path=heldout_path,
        labels=LABELS,
        vocab_size=vocab,
        max_length=max_length,
        embed_dim=embed_dim,
        hidden_dim=hidden_dim,
        token_type_ids=token_type_ids,
        n_heldout=n_heldout,
        heldout_accuracy=heldout_accuracy,
    )
