"""Tokenizer features from a real (tiny, locally trained) tokenizer loaded with AutoTokenizer."""

import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from monitor.ingest.reference import FeatureSet
from monitor.ingest.tokenizer import TokenizerError, TokenizerFeaturizer

TEXTS = ["great phone", "", "   ", "zzqx unseen wordsss ✨ 中文", "Hello,   World!! 12:30", "a " * 40]


def test_counts_match_autotokenizer(tiny):
    f = TokenizerFeaturizer(tiny.tokenizer_dir, max_length=16)
    tok = AutoTokenizer.from_pretrained(str(tiny.tokenizer_dir))
    m = f.features(TEXTS)
    for row, text in zip(m, TEXTS):
        ids = tok(text, add_special_tokens=True, truncation=False)["input_ids"]
        content = [i for i in ids if i not in tok.all_special_ids or i == tok.unk_token_id]
        n_unk = ids.count(tok.unk_token_id)
        assert row[0] == len(ids), text
        assert row[1] == pytest.approx(n_unk / len(content) if content else 0.0), text
        assert row[2] == float(len(ids) > 16), text
    assert m[3, 1] > 0  # unseen characters give unknown tokens
    assert m[5, 2] == 1  # 40 words > max_length 16: truncated


def test_chunk_cache_is_exact_on_many_texts(tiny):
    f = TokenizerFeaturizer(tiny.tokenizer_dir)
    assert f.chunk_cache  # a WordPiece/BERT pre-tokenizer splits on spaces
    rows = [json.loads(line)["text"] for line in tiny.heldout_path.read_text().splitlines()]
    rng = np.random.default_rng(0)
    noisy = [t.upper() if rng.random() < 0.3 else t + "  !!" for t in rows]
    texts = rows + noisy
    np.testing.assert_array_equal(f.features(texts), f._features_by_text(texts))


def _id_sets(f, texts):
    ids, lengths = f.token_ids(texts)
    ends = np.cumsum(lengths)
    return [ids[e - n : e].tolist() for n, e in zip(lengths.tolist(), ends.tolist())]


def test_token_ids_reuse_the_chunks_features_split_and_equal_a_fresh_tokenizers(tiny, monkeypatch):
    # token_ids of the texts features() just saw reuses its split; any other list is split again; a
    # cache that starts over in between forgets the reused split. Every path gives the same ids.
    texts = ["great phone", "", "zzqx unseen wordsss ✨", "Hello,   World!! 12:30", "great phone"]
    expected = _id_sets(TokenizerFeaturizer(tiny.tokenizer_dir), texts)
    tok = AutoTokenizer.from_pretrained(str(tiny.tokenizer_dir))
    special = set(tok.all_special_ids)
    assert expected == [[i for i in tok(t)["input_ids"] if i not in special] for t in texts]
    f = TokenizerFeaturizer(tiny.tokenizer_dir)
    f.features(texts)
    assert f._last is not None and f._last[0] is texts
    assert _id_sets(f, list(texts)) == expected  # the same strings: reused
    assert _id_sets(f, [t + "" for t in ["x y"] + texts[1:]])[1:] == expected[1:]  # other strings: split again
    monkeypatch.setattr(TokenizerFeaturizer, "_MAX_CHUNKS", 4)
    f.features(["brand new chunks here now"])  # past the cap: the cache starts over
    assert _id_sets(f, texts) == expected


def test_distinct_token_ids_are_each_texts_ids_once_in_order(tiny, monkeypatch):
    # From the chunks' ids without gathering them all: the same as the token ids made distinct, per text,
    # whether the texts are the batch features() just split or not, and across a cache that starts over.
    texts = ["great phone great", "", "zzqx unseen wordsss ✨ zzqx", "Hello,   World!! 12:30 hello", "   "]
    expected = [list(dict.fromkeys(ids)) for ids in _id_sets(TokenizerFeaturizer(tiny.tokenizer_dir), texts)]
    f = TokenizerFeaturizer(tiny.tokenizer_dir)

    def sets(ts):
        ids, offsets = f.distinct_token_ids(ts)
        return [ids[a:b].tolist() for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]

    f.features(texts)
    assert sets(texts) == expected  # reused split
    assert sets(list(reversed(texts))) == expected[::-1]  # split again
    monkeypatch.setattr(TokenizerFeaturizer, "_MAX_CHUNKS", 4)
    f.features(["brand new chunks here now"])
    assert sets(texts) == expected and sets([]) == []


def test_a_failed_encoding_leaves_no_chunk_without_its_counts(tiny):
    # The chunk table names a chunk before the tokenizer encodes it: if encoding raises, the table starts
    # over, so the next batch encodes that chunk again instead of reading counts that were never stored.
    f = TokenizerFeaturizer(tiny.tokenizer_dir)
    texts = ["great phone", "zzqx unseen wordsss"]
    expected = f._features_by_text(texts)
    backend = f._backend

    class Failing:
        def __getattr__(self, name):
            return getattr(backend, name)

        def encode_batch(self, *args, **kwargs):
            raise RuntimeError("tokenizer failed")

    f._backend = Failing()
    with pytest.raises(RuntimeError):
        f.features(texts)
    f._backend = backend
    np.testing.assert_array_equal(f.features(texts), expected)
    ids, offsets = f.distinct_token_ids(texts)
    assert offsets[-1] == ids.size and ids.size > 0


def test_fingerprint_identifies_the_tokenizer(tiny, tmp_path):
    a = TokenizerFeaturizer(tiny.tokenizer_dir)
    assert a.info.fingerprint == TokenizerFeaturizer(tiny.tokenizer_dir).info.fingerprint
    assert FeatureSet(tokenizer=a.info.to_dict()).names[-3:] == ("token_count", "unk_token_rate", "truncated")


def test_missing_or_bad_directory_is_a_clear_error(tmp_path):
    with pytest.raises(TokenizerError, match="not a directory"):
        TokenizerFeaturizer(tmp_path / "nope")
    with pytest.raises(TokenizerError, match="cannot load tokenizer"):
        TokenizerFeaturizer(tmp_path)


def test_profile_tokenizer_must_match(tiny, tmp_path, capsys):
    from monitor.cli import main
    from monitor.devkit.synth.traffic import generate_events, write_events

    events = tmp_path / "e.jsonl"
    write_events(events, generate_events(600, seed=4))
    with_tok, without = tmp_path / "tok.json", tmp_path / "plain.json"
    assert main(["reference", "build", str(events), "-o", str(with_tok), "--tokenizer", str(tiny.tokenizer_dir)]) == 0
    assert main(["reference", "build", str(events), "-o", str(without)]) == 0
    capsys.readouterr()
    # a profile with token features replayed without the tokenizer: refused, and the message says how to fix it
    assert main(["replay", str(events), "-r", str(with_tok)]) == 2
    err = capsys.readouterr().err
    assert "built with the tokenizer in" in err and f"pass --tokenizer {tiny.tokenizer_dir} " in err
    assert "(model sentiment)" not in err  # the model is named once
    # and the reverse
    assert main(["replay", str(events), "-r", str(without), "--tokenizer", str(tiny.tokenizer_dir)]) == 2
    assert "without a tokenizer" in capsys.readouterr().err
    # a different tokenizer (other max_length) is refused too
    assert main(["replay", str(events), "-r", str(with_tok), "--tokenizer", str(tiny.tokenizer_dir),
                 "--set", "tokenizer.max_length=512"]) == 2
    assert "max_length" in capsys.readouterr().err
    # the matching tokenizer: token features are tested
    assert main(["replay", str(events), "-r", str(with_tok), "--tokenizer", str(tiny.tokenizer_dir),
                 "--window-events", "300"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert {"token_count", "unk_token_rate", "truncated"} <= set(first["drift"]["input"]["features"])


def test_reference_build_reads_the_daemons_config(tiny, tmp_path, capsys):
    from monitor.cli import main
    from monitor.devkit.synth.traffic import generate_events, write_events

    events = tmp_path / "e.jsonl"
    write_events(events, generate_events(600, seed=4))
    config = tmp_path / "nlpmon.toml"
    config.write_text(f'[tokenizer]\npath = "{tiny.tokenizer_dir}"\nmax_length = 64\n', encoding="utf-8")
    profile = tmp_path / "p.json"
    assert main(["reference", "build", str(events), "-o", str(profile), "--config", str(config)]) == 0
    built = json.loads(profile.read_text())["tokenizer"]
    assert built["max_length"] == 64 and built["path"] == str(tiny.tokenizer_dir)
    capsys.readouterr()
    # the daemon with the same config accepts it; the flag overrides the config's max_length
    assert main(["replay", str(events), "-r", str(profile), "--config", str(config), "--window-events", "300"]) == 0
    capsys.readouterr()
    other = tmp_path / "q.json"
    assert main(["reference", "build", str(events), "-o", str(other), "--config", str(config), "--max-length", "32"]) == 0
    assert json.loads(other.read_text())["tokenizer"]["max_length"] == 32
    assert main(["replay", str(events), "-r", str(other), "--config", str(config)]) == 2
    assert "max_length" in capsys.readouterr().err
    config.write_text("[tokenizer]\nmax_lenght = 64\n", encoding="utf-8")
    assert main(["reference", "build", str(events), "-o", str(other), "--config", str(config)]) == 2
    assert "config error" in capsys.readouterr().err
