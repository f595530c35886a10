"""The gates of ``nlpmon reeval`` (issue 22): each bar passes and fails on the generated model and held-out set,
with one line per bar on stderr and the exit codes of docs/reeval.md (0 met, 1 missed, 2 unusable)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from monitor.cli import build_parser
from monitor.reeval.gates import Gates, check_gates


@pytest.fixture(scope="module")
def worse(tiny, tmp_path_factory):
    """A candidate worse than ``tiny``: the same graph with its classifier bias pushed towards the first class."""
    model = onnx.load(str(tiny.model_path))
    for init in model.graph.initializer:
        if init.name == "classifier.bias":
            bias = numpy_helper.to_array(init) + np.array([0.5, -0.5], dtype=np.float32)
            init.CopyFrom(numpy_helper.from_array(bias, init.name))
    path = tmp_path_factory.mktemp("worse") / "worse.onnx"
    onnx.save(model, str(path))
    shutil.copy(tiny.config_path, path.parent / "config.json")  # id2label, for a run with it as --model
    return path


def _args(tiny, *extra):
    return ("reeval", "--model", tiny.model_path, "--tokenizer", tiny.tokenizer_dir, "--data", tiny.heldout_path,
            "--format", "json", "--flip-check-limit", "0", *extra)


def _run(nlpmon, capsys, tiny, *extra):
    """Exit code, the report (one JSON line on stdout, gates or not) and the lines on stderr."""
    code = nlpmon(*_args(tiny, *extra))
    out, err = capsys.readouterr()
    assert out.count("\n") == 1, (out, err)
    return code, json.loads(out), err.splitlines()


@pytest.fixture(scope="module")
def figures(tiny, worse):
    """The figures the bars are set around, from one ungated run with the worse candidate and a baseline."""
    args = build_parser().parse_args([str(a) for a in _args(tiny, "--candidate", worse, "--baseline-accuracy", "0.9")])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.func(args) == 0
    d = json.loads(out.getvalue())
    agreement, model, candidate = d["candidate"]["agreement"], d["accuracy"], d["candidate"]["accuracy"]
    # The worse candidate must really be worse, else the candidate gates test nothing.
    assert agreement < 0.99 and candidate < model
    return d


def _g(x: float) -> str:
    return f"{round(x, 6):g}"


def _gate_cases(d):
    """(flags, bar met, bar missed, the failing line) per gate; each met bar is the figure itself (the boundary)."""
    acc, drop = d["accuracy"], d["accuracy_drop"]
    agr, n = d["candidate"]["agreement"], d["candidate"]["disagreements"]
    cdrop, cacc = d["accuracy"] - d["candidate"]["accuracy"], d["candidate"]["accuracy"]
    return {
        "min-accuracy": ((), _g(acc), _g(acc + 0.001),
                         f"gate failed: accuracy {_g(acc)} < --min-accuracy {_g(acc + 0.001)} (short by 0.001)"),
        "max-drop": (("--baseline-accuracy", "0.9"), _g(drop), _g(drop - 0.001),
                     f"gate failed: accuracy drop {_g(drop)} > --max-drop {_g(drop - 0.001)} (over by 0.001; "
                     "configured baseline 0.9)"),
        "min-agreement": (("--candidate", "{worse}"), _g(agr), _g(agr + 0.001),
                          f"gate failed: candidate agreement {_g(agr)} < --min-agreement {_g(agr + 0.001)} "
                          f"(short by 0.001; {n} of 500 held-out sentences disagree)"),
        "max-accuracy-drop": (("--candidate", "{worse}"), _g(cdrop), _g(cdrop - 0.001),
                              f"gate failed: candidate accuracy drop {_g(cdrop)} > --max-accuracy-drop "
                              f"{_g(cdrop - 0.001)} (over by 0.001; model {_g(acc)}, candidate {_g(cacc)})"),
    }


@pytest.mark.parametrize("gate", ["min-accuracy", "max-drop", "min-agreement", "max-accuracy-drop"])
def test_each_gate_passes_at_its_figure_and_fails_just_past_it(nlpmon, capsys, tiny, worse, figures, gate):
    extra, met, missed, line = _gate_cases(figures)[gate]
    extra = tuple(str(worse) if a == "{worse}" else a for a in extra)

    code, d, err = _run(nlpmon, capsys, tiny, *extra, f"--{gate}", met)
    assert code == 0 and len(err) == 1, err
    assert err[0].startswith("nlpmon reeval: gate passed: ") and f"--{gate} {met}" in err[0]
    assert d["accuracy"] == figures["accuracy"]  # the gate changes the exit code, not the report

    code, _, err = _run(nlpmon, capsys, tiny, *extra, f"--{gate}", missed)
    assert code == 1
    assert err == [f"nlpmon reeval: {line}"]


def test_all_bars_met_one_line_each_and_one_missed_bar_is_named(nlpmon, capsys, tiny, worse):
    bars = ("--candidate", worse, "--baseline-accuracy", "0.9", "--min-accuracy", "0.5", "--max-drop", "0.2",
            "--min-agreement", "0.5", "--max-accuracy-drop", "0.2")
    code, _, err = _run(nlpmon, capsys, tiny, *bars)
    assert code == 0
    assert [line.split(" >= ")[-1].split(" <= ")[-1].split(" (")[0] for line in err] == [
        "--min-accuracy 0.5", "--max-drop 0.2", "--min-agreement 0.5", "--max-accuracy-drop 0.2"]
    assert all(line.startswith("nlpmon reeval: gate passed: ") for line in err)

    code, _, err = _run(nlpmon, capsys, tiny, *bars, "--min-accuracy", "0.99")  # the last one given wins
    assert code == 1
    failed = [line for line in err if "gate failed" in line]
    assert len(err) == 4 and len(failed) == 1 and "< --min-accuracy 0.99 (short by " in failed[0]


def test_table_output_keeps_the_gate_lines_on_stderr(nlpmon, capsys, tiny):
    code = nlpmon("reeval", "--model", tiny.model_path, "--tokenizer", tiny.tokenizer_dir, "--data",
                  tiny.heldout_path, "--min-accuracy", "0.99")
    out, err = capsys.readouterr()
    assert code == 1 and "accuracy" in out and "gate" not in out
    assert err.count("\n") == 1 and err.startswith("nlpmon reeval: gate failed: accuracy ")


def test_max_drop_against_the_first_stored_run(nlpmon, capsys, tiny, worse, tmp_path):
    store = f"sqlite:///{tmp_path / 'nlpmon.db'}"
    named = ("--store", store, "--name", "sentiment", "--dataset-name", "heldout", "--max-drop", "0.01")
    code, first, err = _run(nlpmon, capsys, tiny, *named)
    assert code == 0 and first["baseline"] is None
    assert err[-1] == ("nlpmon reeval: gate passed: --max-drop 0.01 (no baseline yet: no earlier run of sentiment "
                       "on heldout is stored; this run becomes it)")
    # The worse model under the same name: its drop is measured against the stored first run.
    code, second, err = _run(nlpmon, capsys, tiny, "--model", worse, *named)
    drop = first["accuracy"] - second["accuracy"]
    assert code == 1 and second["baseline"]["source"] == "first_run" and drop > 0.01
    assert err[-1] == (f"nlpmon reeval: gate failed: accuracy drop {_g(drop)} > --max-drop 0.01 (over by "
                       f"{_g(drop - 0.01)}; baseline {_g(first['accuracy'])} of stored run "
                       f"{second['baseline']['run']})")
    assert err[0].startswith("stored as re-evaluation run ")  # a run that misses a bar is stored all the same


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--min-agreement", "0.99"), "--min-agreement judges a candidate model: give --candidate"),
        (("--min-agreement", "0.9", "--max-accuracy-drop", "0.1"),
         "--min-agreement, --max-accuracy-drop judge a candidate model: give --candidate"),
        (("--max-drop", "0.1"), "--max-drop needs a baseline: --baseline-accuracy X, or --store URL holding an "
                                "earlier run"),
        (("--min-accuracy", "0.5", "--data", "missing.jsonl"), "missing.jsonl"),
    ],
)
def test_unusable_gates_and_inputs_exit_2_before_the_run(nlpmon, capsys, tiny, extra, message):
    assert nlpmon(*_args(tiny, *extra)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("nlpmon reeval: error: ") and message in err


@pytest.mark.parametrize("flag", ["--min-accuracy", "--max-drop", "--min-agreement", "--max-accuracy-drop"])
@pytest.mark.parametrize("value, message", [("1.5", "must be a number in [0, 1], got 1.5"),
                                            ("-0.1", "must be a number in [0, 1], got -0.1"),
                                            ("nan", "must be a number in [0, 1], got nan"),
                                            ("high", "'high' is not a number")])
def test_bar_values_outside_0_1_are_usage_errors(nlpmon, capsys, tiny, flag, value, message):
    with pytest.raises(SystemExit) as exc:
        nlpmon(*_args(tiny, flag, value))
    assert exc.value.code == 2
    assert f"argument {flag}: {message}" in capsys.readouterr().err


def test_the_python_api_validates_and_refuses_a_candidate_bar_without_a_candidate(tiny):
    with pytest.raises(ValueError, match=r"--max-drop must be a number in \[0, 1\], got 2"):
        Gates(max_drop=2)
    with pytest.raises(ValueError, match="--min-accuracy must be a number"):
        Gates(min_accuracy=True)
    assert Gates(min_accuracy=0.5, max_accuracy_drop=0.1).candidate_flags() == ["--max-accuracy-drop"]
    from monitor.reeval import ReevalOptions, run_reeval

    result = run_reeval(ReevalOptions(model=tiny.model_path, tokenizer=tiny.tokenizer_dir, data=tiny.heldout_path))
    (ok,) = check_gates(result, Gates(min_accuracy=result.accuracy))
    assert ok.passed and ok.value == result.accuracy and ok.flag == "--min-accuracy"
    with pytest.raises(ValueError, match="--min-agreement judges a candidate model"):
        check_gates(result, Gates(min_agreement=0.9))


def test_min_agreement_also_bars_the_logged_traffic(nlpmon, capsys, tiny, worse, heldout_rows, tmp_path):
    texts = [r["text"] for r in heldout_rows[:200]]
    log = tmp_path / "traffic.jsonl"
    log.write_text("".join(json.dumps({"ts": 1_764_000_000 + i, "model": "sentiment", "prediction": "pos", "text": t})
                           + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    code, d, err = _run(nlpmon, capsys, tiny, "--candidate", worse, "--traffic", log, "--min-agreement", "1")
    traffic = d["candidate"]["traffic"]
    assert traffic["n"] == 200 and traffic["disagreements"] > 0  # the worse candidate disagrees there too
    assert code == 1 and len(err) == 2
    assert err[1] == (f"nlpmon reeval: gate failed: candidate agreement on traffic {_g(traffic['agreement'])} < "
                      f"--min-agreement 1 (short by {_g(1 - traffic['agreement'])}; {traffic['disagreements']} of 200 "
                      "logged texts disagree)")
    assert not any(t in line for t in texts for line in err)  # logged texts stay out of the gate lines


def test_max_drop_takes_the_baseline_of_the_config(nlpmon, capsys, tiny, tmp_path):
    cfg = tmp_path / "nlpmon.toml"
    cfg.write_text(f'[reeval]\nmodel = "{tiny.model_path}"\ntokenizer = "{tiny.tokenizer_dir}"\n'
                   f'data = "{tiny.heldout_path}"\nbaseline_accuracy = 0.86\n')
    assert nlpmon("reeval", "--config", cfg, "--max-drop", "0.005", "--format", "json") == 1
    err = capsys.readouterr().err.splitlines()
    drop = round(0.86 - tiny.heldout_accuracy, 6)
    assert err == [f"nlpmon reeval: gate failed: accuracy drop {drop:g} > --max-drop 0.005 (over by "
                   f"{round(drop - 0.005, 6):g}; configured baseline 0.86)"]
