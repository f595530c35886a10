"""The CLI: exit codes, --help, bad config, replay output and summary, reference build."""

import json
import tomllib
import subprocess
import sys

import pytest

from monitor.cli import main
from monitor.devkit.synth.traffic import generate_events, write_events


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    write_events(d / "ref.jsonl", generate_events(1500, seed=1))
    live = d / "live.jsonl"
    write_events(live, generate_events(2000, seed=2, start_ms=1_764_000_000_000 + 3_600_000))
    with open(live, "ab") as f:  # bad lines of several kinds
        f.write(b"not json\n{\"ts\": 1764003600, \"model\": \"sentiment\"}\n[1]\n\n")
    assert main(["reference", "build", str(d / "ref.jsonl"), "-o", str(d / "profile.json")]) == 0
    return d


def test_help_lists_commands_and_exits_0(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("replay", "run", "check-config", "reference"):
        assert cmd in out


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "monitor.cli", "replay", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--window-events" in out.stdout and "--reference" in out.stdout


def test_replay_writes_results_and_summary(files, capsys):
    rc = main(["replay", str(files / "live.jsonl"), "-r", str(files / "profile.json"), "--window-events", "500"])
    assert rc == 0
    cap = capsys.readouterr()
    results = [json.loads(line) for line in cap.out.splitlines()]
    assert [r["events"] for r in results] == [500, 500, 500, 500]  # 2000 valid events, none partial
    assert all(r["tested"] for r in results)
    summary = json.loads(cap.err.strip().splitlines()[-1])
    assert summary == {"lines": 2003, "valid": 2000, "invalid": 3, "late": 0, "windows": 4,
                       "invalid_by_reason": {"malformed_json": 1, "missing_field": 1, "not_an_object": 1}}


def test_replay_dead_letter_and_output_file(files, capsys):
    out, dl = files / "out.jsonl", files / "dead.jsonl"
    assert main(["replay", str(files / "live.jsonl"), "--window-seconds", "600", "-o", str(out),
                 "--dead-letter", str(dl)]) == 0
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert results and results[-1]["partial"] is True and results[0]["skip_reason"] == "no_reference"
    dead = [json.loads(line) for line in dl.read_text().splitlines()]
    assert [d["reason"] for d in dead] == ["malformed_json", "missing_field", "not_an_object"]
    assert dead[0]["raw"] == "not json\n" and dead[0]["source"].endswith(":2001")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["replay", "/nonexistent.jsonl"], "no such file"),
        (["replay", "{live}", "--set", "window.min_evnts=3"], "window.min_evnts"),
        (["replay", "{live}", "--set", "detect.alpha=zero"], "detect.alpha"),
        (["replay", "{live}", "-r", "/nonexistent-profile.json"], "not found"),
        (["replay", "{live}", "-r", "{live}"], "not JSON"),
        (["replay", "{live}", "--tokenizer", "/nonexistent-dir"], "not a directory"),
        (["reference", "build", "/nonexistent.jsonl", "-o", "x.json"], "no such file"),
        (["check-config", "--config", "/nonexistent.toml"], "not found"),
    ],
)
def test_usage_errors_exit_2_with_one_line(files, capsys, argv, message):
    argv = [a.replace("{live}", str(files / "live.jsonl")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_unknown_flag_is_argparse_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["replay", "x", "--no-such-flag"])
    assert e.value.code == 2


def test_check_config_prints_effective_settings(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "n.toml"
    (tmp_path / "x.jsonl").write_text("")  # check-config also checks that the source file exists
    cfg.write_text(f'[source]\npath = "{tmp_path / "x.jsonl"}"\n[window]\nmin_events = 50\n')
    monkeypatch.setenv("NLPMON_DETECT_ALPHA", "0.05")
    assert main(["check-config", "--config", str(cfg), "--set", "window.seed=4"]) == 0
    eff = tomllib.loads(capsys.readouterr().out)  # TOML, the format of the file a user edits
    assert eff["window"]["min_events"] == 50 and eff["detect"]["alpha"] == 0.05 and eff["window"]["seed"] == 4
    assert main(["check-config", "--config", str(cfg), "--set", "window.seed=4", "--format", "json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["window"] == eff["window"] and as_json["detect"] == eff["detect"]


def test_reference_build_refuses_multi_model_file(tmp_path, capsys):
    p = tmp_path / "two.jsonl"
    write_events(p, list(generate_events(50, model="a")) + list(generate_events(50, model="b")))
    assert main(["reference", "build", str(p), "-o", str(tmp_path / "x.json")]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["reference", "build", str(p), "-o", str(tmp_path / "x.json"), "--model", "b"]) == 0
    assert json.loads((tmp_path / "x.json").read_text())["model"] == "b"
