"""``monitor.api.compare`` and ``nlpmon compare``: the daemon's verdict on two data sets.

Lists, DataFrames and JSONL files of the same rows give the same report; the verdict is the one ``nlpmon
replay`` writes for the same events and profile; unusable input fails in one line naming what is wrong.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pandas as pd
import pytest

from monitor.api import TEXT_ONLY_CLASS, CompareError, CompareReport, Columns, TextFile, compare
from monitor.api.inputs import DEFAULT_MODEL
from monitor.cli import main
from monitor.devkit.synth.model import make_texts
from monitor.devkit.synth.traffic import generate_events, write_events

N = 1500


def _same(a: CompareReport, b: CompareReport) -> None:
    """Equal reports but for where the data came from: the kind and name of each side, and how an exemplar
    points at its row (``row:<i>``, 0-based, in a list or DataFrame; ``<file>:<line>`` in a JSONL file)."""
    da, db = a.to_dict(), b.to_dict()
    for d in (da, db):
        for side in ("reference", "current"):
            d[side].pop("kind"), d[side].pop("name")
        for e in (d["evidence"] or {}).get("exemplars", ()):
            where, _, n = e["position"].rpartition(":")
            e["position"] = int(n) if where == "row" else int(n) - 1
    assert da == db


def _events(n: int, seed: int, **kw) -> list[dict]:
    """Served events without errors (a DataFrame has no error column) and without a version (rows have none)."""
    out = []
    for e in generate_events(n, seed=seed, error_share=0.0, **kw):
        e.pop("version"), e.pop("request_id")
        out.append(e)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    ref = _events(N, 1)
    cur = _events(N, 2, drift_after=N // 2)
    write_events(d / "ref.jsonl", ref)
    write_events(d / "cur.jsonl", cur)
    ref_texts, cur_texts = make_texts(N, seed=1)[0], make_texts(N, seed=2, drift=True)[0]
    for name, texts in (("ref_texts.jsonl", ref_texts), ("cur_texts.jsonl", cur_texts)):
        write_events(d / name, ({"ts": 0, "model": DEFAULT_MODEL, "prediction": TEXT_ONLY_CLASS, "text": t}
                                for t in texts))
    (d / "ref.txt").write_text("\n".join(ref_texts) + "\n")
    (d / "cur.txt").write_text("\n\n".join(cur_texts))  # blank lines are no texts
    assert main(["reference", "build", str(d / "ref.jsonl"), "-o", str(d / "profile.json")]) == 0
    return {"dir": d, "ref": ref, "cur": cur, "ref_texts": ref_texts, "cur_texts": cur_texts}


# -- the same report whatever the input ---------------------------------------------------------------------------
def test_texts_as_list_dataframe_text_file_and_jsonl_give_the_same_report(data):
    d = data["dir"]
    from_list = compare(data["ref_texts"], data["cur_texts"])
    assert from_list.drifted and from_list.reference.kind == "list"
    frames = compare(pd.DataFrame({"text": data["ref_texts"]}), pd.DataFrame({"text": data["cur_texts"]}))
    files = compare(d / "ref_texts.jsonl", d / "cur_texts.jsonl")
    lines = compare(TextFile(d / "ref.txt"), TextFile(d / "cur.txt"))
    for other in (frames, files, lines):
        _same(from_list, other)
    assert files.current.kind == "jsonl" and lines.current.kind == "text" and frames.current.kind == "dataframe"
    # Rows without predictions: the one-class shift test is left out of the tests (it cannot flag).
    assert {t.test for t in from_list.tests} == {"input"}


def test_a_dataframe_with_predictions_probabilities_and_latency_is_its_jsonl(data):
    d = data["dir"]
    files = compare(d / "ref.jsonl", d / "cur.jsonl")
    frames = compare(pd.DataFrame(data["ref"]), pd.DataFrame(data["cur"]).drop(columns="model"), model="sentiment")
    _same(files, frames)
    tests = {t.test for t in files.tests}
    assert {"input", "confidence", "prediction", "probabilities"} <= tests
    assert files.drifted and files.result.latency_ms.count == N


def test_renamed_columns(data):
    ref = pd.DataFrame(data["ref"]).rename(columns={"text": "body", "prediction": "pred"})
    cur = pd.DataFrame(data["cur"]).rename(columns={"text": "body", "prediction": "pred"})
    renamed = compare(ref, cur, columns=Columns(text="body", prediction="pred"), model="sentiment")
    _same(renamed, compare(pd.DataFrame(data["ref"]), pd.DataFrame(data["cur"]), model="sentiment"))


@pytest.mark.parametrize(("frame", "columns", "named"), [
    (pd.DataFrame({"body": ["a"]}), Columns(), "'text'"),                                  # no text column
    (pd.DataFrame({"text": ["a"]}), Columns(prediction="pred"), "'pred'"),                 # named on purpose, absent
    (pd.DataFrame({"text": [1, 2]}), Columns(), "'text'"),                                 # numbers for texts
    (pd.DataFrame({"text": ["a"], "latency_ms": ["fast"]}), Columns(), "'latency_ms'"),    # text for numbers
    (pd.DataFrame({"text": ["a", 3]}, dtype=object), Columns(), "'text'"),                 # one row mistyped
    (pd.DataFrame({"text": ["a"], "probabilities": ["0.9"]}), Columns(), "'probabilities'"),
])  # fmt: skip
def test_a_missing_or_mistyped_column_fails_in_one_line_naming_it(data, frame, columns, named):
    for reference, current in ((frame, data["cur_texts"]), (data["ref_texts"], frame)):
        with pytest.raises(CompareError) as e:
            compare(reference, current, columns=columns)
        assert named in str(e.value) and "\n" not in str(e.value)


# -- the daemon's verdict ------------------------------------------------------------------------------------------
def test_the_verdict_is_the_one_replay_writes_for_the_same_profile(data, capsys):
    d = data["dir"]
    report = compare(d / "profile.json", d / "cur.jsonl")
    assert report.reference.kind == "profile" and report.drifted
    capsys.readouterr()
    assert main(["replay", str(d / "cur.jsonl"), "-r", str(d / "profile.json"), "--window-events", str(10 * N)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert report.result.to_dict() == json.loads(line)  # every p-value, statistic and count
    # From the JSONL itself, the profile is the one `reference build` makes: the same verdict again.
    assert compare(d / "ref.jsonl", d / "cur.jsonl").result.to_dict() == report.result.to_dict()


def test_drift_is_found_on_a_shifted_set_and_not_on_a_like_one(data):
    like = compare(data["ref_texts"], make_texts(N, seed=5)[0])
    assert like.tested and not like.drifted and like.tests and not like.drifted_tests
    shifted = compare(data["ref_texts"], data["cur_texts"])
    flagged = {t.name for t in shifted.drifted_tests}
    assert {"digit_ratio", "oov_rate"} <= flagged  # model numbers and unseen words (synth.model.make_texts)


def test_too_few_events_is_not_tested_as_in_the_daemon(data):
    report = compare(data["ref_texts"], data["cur_texts"][:50])
    assert not report.tested and report.skip_reason == "too_few_events" and not report.drifted
    assert report.tests == ()


def test_to_dict_is_json(data):
    report = compare(data["ref_texts"], data["cur_texts"])
    d = json.loads(orjson.dumps(report.to_dict()))
    assert d["drifted"] is True and d["result"]["window_kind"] == "count" and d["evidence"] == report.to_dict()["evidence"]
    assert [t["name"] for t in d["tests"]] == [t.name for t in report.tests]


def test_unusable_inputs(data, tmp_path):
    with pytest.raises(CompareError, match="no such file"):
        compare(tmp_path / "missing.jsonl", data["cur_texts"])
    with pytest.raises(CompareError, match="expected a list of texts"):
        compare(42, data["cur_texts"])
    with pytest.raises(CompareError, match="item 1 is int"):
        compare(["a", 3], data["cur_texts"])
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"ts": 0}\nnot json\n')
    with pytest.raises(CompareError, match="no valid prediction events") as e:
        compare(data["ref_texts"], junk)
    assert "missing_field" in str(e.value) and "malformed_json" in str(e.value)


def test_progress_bar_only_when_asked_or_on_a_terminal(data, capsys):
    compare(data["ref_texts"], data["cur_texts"])  # stderr is not a terminal under pytest
    assert capsys.readouterr().err == ""
    compare(data["ref_texts"], data["cur_texts"], progress=True)
    err = capsys.readouterr().err
    assert "reference" in err and "current" in err and "rows/s" in err and "1.50k" in err


# -- the command ---------------------------------------------------------------------------------------------------
def test_exit_codes(data, capsys):
    d = data["dir"]
    ref, cur, like = str(d / "ref_texts.jsonl"), str(d / "cur_texts.jsonl"), str(d / "like.txt")
    Path(like).write_text("\n".join(make_texts(N, seed=5)[0]))
    assert main(["compare", ref, cur]) == 0  # drift, but no --fail-on
    assert "verdict: DRIFT" in capsys.readouterr().out
    assert main(["compare", ref, cur, "--fail-on", "drift"]) == 1
    assert main(["compare", ref, like, "--fail-on", "drift"]) == 0
    assert main(["compare", str(d / "profile.json"), str(d / "cur.jsonl"), "--fail-on", "drift"]) == 1
    few = d / "few.txt"
    few.write_text("one text\nanother\n")
    assert main(["compare", ref, str(few), "--fail-on", "drift"]) == 0
    assert main(["compare", ref, str(few), "--fail-on", "untested"]) == 1
    capsys.readouterr()
    for argv, message in (([ref, str(d / "nope.jsonl")], "no such file"),
                          ([ref, str(d / "profile.json")], "is a reference profile"),
                          ([str(d / "junk.jsonl"), cur, "--input-format", "jsonl"], "no valid events")):
        if "junk" in argv[0]:
            Path(argv[0]).write_text("not json\n")
        assert main(["compare", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_json_format_and_text_lines(data, capsys):
    d = data["dir"]
    assert main(["compare", str(d / "ref.txt"), str(d / "cur.txt"), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["drifted"] is True and out["current"]["kind"] == "text" and out["current"]["events"] == N
    api = compare(data["ref_texts"], data["cur_texts"]).to_dict()
    assert out["result"] == api["result"] and out["tests"] == api["tests"]


def test_csv_with_a_text_column(data, capsys):
    d = data["dir"]
    pd.DataFrame({"review": data["ref_texts"]}).to_csv(d / "ref.csv", index=False)
    pd.DataFrame({"review": data["cur_texts"]}).to_csv(d / "cur.csv", index=False)
    assert main(["compare", str(d / "ref.csv"), str(d / "cur.csv"), "--text-column", "review", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["drifted"] is True
    assert main(["compare", str(d / "ref.csv"), str(d / "cur.csv")]) == 2
    assert "'text'" in capsys.readouterr().err


ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("document", ["docs/compare.md", "README.md"])
def test_the_documented_examples_run(document):
    """The Python examples of docs/compare.md and of README's compare section, run as doctests."""
    import doctest

    text = (ROOT / document).read_text(encoding="utf-8")
    test = doctest.DocTestParser().get_doctest(text, {}, document, document, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted >= (5 if document.startswith("docs") else 4) and result.failed == 0


def test_a_config_file_sets_the_detectors_and_floors(data, tmp_path):
    toml = tmp_path / "nlpmon.toml"
    toml.write_text('[source]\nkind = "kafka"\n[detect]\nalpha = 0.001\n[window]\nmin_events = 100\n')
    report = compare(data["ref_texts"], data["cur_texts"][:150], config=toml)  # a Kafka source is not read
    assert report.tested and {t.threshold for t in report.tests} == {0.001}
    assert not compare(data["ref_texts"], data["cur_texts"][:150]).tested  # the default floor: 200 events


def test_embedding_drift_with_the_encoder_nlpmon_runs(tmp_path):
    """The [embedding] encoder embeds a sample of each side's texts: a change of subject moves the embeddings."""
    from monitor.config import Config, EmbeddingConfig
    from monitor.devkit.synth.encoder import build_tiny_encoder, make_subject_texts
    from monitor.onnx.encoder import OnnxEncoder

    built = build_tiny_encoder(tmp_path / "encoder", seed=0, max_length=64)
    encoder = OnnxEncoder(built.model_path, built.tokenizer_dir, output=built.pooled_output, provider="cpu",
                          max_length=64, intra_op_threads=1)
    config = Config(embedding=EmbeddingConfig(sample_size=64, permutations=200, components=4))
    restaurants = make_subject_texts(600, "restaurant", seed=1)
    kw = dict(tokenizer=built.tokenizer_dir, encoder=encoder, config=config)
    same = compare(restaurants, make_subject_texts(600, "restaurant", seed=2), **kw)
    moved = compare(restaurants, make_subject_texts(600, "phone", seed=2), **kw)
    assert "embedding" in {t.test for t in same.tests} and not same.result.drift.embedding.drifted
    assert moved.result.drift.embedding.drifted and "embedding" in {t.test for t in moved.drifted_tests}
    assert {"token_count", "unk_token_rate"} <= {t.name for t in moved.tests}  # the tokenizer features


# -- the report as HTML: the daemon's renderer, in a real browser ---------------------------------------------------
@pytest.mark.integration
def test_the_comparison_is_the_daemons_report_in_a_browser(data, tmp_path, capsys):
    from tests.fixtures.browser import load

    d = data["dir"]
    out = tmp_path / "compare.html"
    assert main(["compare", str(d / "profile.json"), str(d / "cur.jsonl"), "-o", str(out)]) == 0
    capsys.readouterr()
    page = load(out.as_uri(), height=1400)
    assert page.console == [] and page.fetched == [], (page.console, page.fetched)
    expected = int(re.search(r'<body data-charts="(\d+)"', page.dom).group(1))
    assert expected > 0 and f'data-charts-rendered="{expected}"' in page.dom  # every chart was drawn
    report = compare(str(d / "profile.json"), str(d / "cur.jsonl"))
    for t in report.drifted_tests:  # every flagged test is named on the page
        if t.name:
            assert t.name in page.dom
    assert report._repr_html_().startswith('<iframe srcdoc="&lt;!DOCTYPE html&gt;')
    assert main(["compare", str(d / "profile.json"), str(d / "cur.jsonl"), "-o", str(tmp_path / "no" / "x.html")]) == 2
    assert "cannot write the report" in capsys.readouterr().err
