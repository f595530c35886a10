"""Startup checks: a configuration mistake is one line and exit 2 before any connection, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from monitor.config import load_config
from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.jobs.profile_builder import build_profile
from monitor.ingest.reference import save_profile
from monitor.ingest.tokenizer import TokenizerFeaturizer
from monitor.runtime.checks import preflight


@pytest.fixture(scope="module")
def profiles(tiny, tmp_path_factory):
    """A profile built without a tokenizer and one built with the tiny model's tokenizer."""
    d = tmp_path_factory.mktemp("profiles")
    write_events(d / "ref.jsonl", generate_events(500, seed=3, rate_per_s=20))
    plain, _ = build_profile(str(d / "ref.jsonl"))
    save_profile(plain, d / "plain.json")
    tok, _ = build_profile(str(d / "ref.jsonl"), tokenizer=TokenizerFeaturizer(tiny.tokenizer_dir))
    save_profile(tok, d / "tok.json")
    return d / "plain.json", d / "tok.json"


def kafka_config(tmp_path, **extra) -> dict:
    return {"source.kind": "kafka", "kafka.bootstrap_servers": ["127.0.0.1:1"], "kafka.topics": ["t"],
            "kafka.group_id": "g", "store.url": f"sqlite:///{tmp_path / 's.db'}", "metrics.enabled": False, **extra}


def test_a_good_config_has_no_problem(tmp_path, profiles, tiny):
    plain, tok = profiles
    assert preflight(load_config(env={}, overrides=kafka_config(tmp_path, **{"reference.paths": [str(plain)]}))) == []
    with_tok = kafka_config(tmp_path, **{"reference.paths": [str(tok)], "tokenizer.path": str(tiny.tokenizer_dir)})
    assert preflight(load_config(env={}, overrides=with_tok)) == []


@pytest.mark.parametrize("overrides, expected", [
    ({"tokenizer.path": "/nonexistent/tokenizer"}, "tokenizer.path"),
    ({"reference.paths": ["/nonexistent/profile.json"]}, "reference.paths: reference profile not found"),
    ({"store.url": "postgres+nosuch://u@h/db"}, "store.url: no SQLAlchemy dialect"),
    ({"store.url": "mysql://u@h/db"}, "store.url: the driver for 'mysql' is not installed"),
    ({"store.url": "not a url"}, "store.url: not a url is not a SQLAlchemy URL"),
    ({"store.url": "sqlite:////nonexistent/dir/s.db"}, "store.url: the directory of the SQLite file"),
    ({"validation.dead_letter_path": "/nonexistent/dir/dead.jsonl"}, "validation.dead_letter_path"),
])
def test_each_mistake_is_named(tmp_path, overrides, expected):
    problems = preflight(load_config(env={}, overrides=kafka_config(tmp_path, **overrides)))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_a_profile_built_with_another_tokenizer_setting_is_refused(tmp_path, profiles, tiny):
    plain, tok = profiles
    problems = preflight(load_config(env={}, overrides=kafka_config(tmp_path, **{"reference.paths": [str(tok)]})))
    assert len(problems) == 1 and "but no tokenizer is configured" in problems[0]
    # The way out, in the line itself: the flag and the key, with the recorded path.
    assert f"pass --tokenizer {tiny.tokenizer_dir} " in problems[0]
    assert f'set [tokenizer] path = "{tiny.tokenizer_dir}"' in problems[0]
    over = kafka_config(tmp_path, **{"reference.paths": [str(plain)], "tokenizer.path": str(tiny.tokenizer_dir)})
    assert "was built without a tokenizer" in preflight(load_config(env={}, overrides=over))[0]


def test_max_length_defaults_to_the_tokenizers_and_a_mismatch_says_how_to_fix_it(tmp_path, profiles, tiny):
    plain, tok = profiles
    # Built without --max-length: the tiny tokenizer's model_max_length (64), not 512.
    assert json.loads(tok.read_text())["tokenizer"]["max_length"] == tiny.max_length == 64
    over = kafka_config(tmp_path, **{"reference.paths": [str(tok)], "tokenizer.path": str(tiny.tokenizer_dir),
                                     "tokenizer.max_length": 512})
    (problem,) = preflight(load_config(env={}, overrides=over))
    assert "was built with tokenizer max_length 64, the configured max_length is 512" in problem
    assert "set [tokenizer] max_length = 64 (--set tokenizer.max_length=64)" in problem and "\n" not in problem


def _nlpmon(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "monitor.cli", *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_run_and_check_config_exit_2_with_one_line_before_connecting(tmp_path, profiles):
    _, tok = profiles
    # The broker address is one nothing listens on: a daemon that tried to join the group would hang in
    # retries, not exit 2 at once with the profile's problem.
    (tmp_path / "c.toml").write_text(
        '[source]\nkind = "kafka"\n[kafka]\nbootstrap_servers = ["127.0.0.1:1"]\ntopics = ["t"]\ngroup_id = "g"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "s.db"}"\n[reference]\npaths = ["{tok}"]\n'
        '[metrics]\nenabled = false\n')
    run = _nlpmon("run", "--config", str(tmp_path / "c.toml"), cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("nlpmon: error: reference.paths:")
    assert "Traceback" not in run.stderr and not (tmp_path / "s.db").exists()
    check = _nlpmon("check-config", "--config", str(tmp_path / "c.toml"), cwd=tmp_path)
    assert check.returncode == 2 and '[source]\n' in check.stdout and "reference.paths" in check.stderr


def test_an_encoder_on_cuda_without_the_cuda_provider_stops_run_with_one_line(tmp_path):
    import onnxruntime

    from monitor.devkit.synth.encoder import build_tiny_encoder

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider (onnxruntime-gpu)")
    built = build_tiny_encoder(tmp_path / "encoder", seed=0, max_length=64)
    (tmp_path / "c.toml").write_text(
        '[source]\nkind = "kafka"\n[kafka]\nbootstrap_servers = ["127.0.0.1:1"]\ntopics = ["t"]\ngroup_id = "g"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "s.db"}"\n[metrics]\nenabled = false\n'
        f'[tokenizer]\npath = "{built.tokenizer_dir}"\nmax_length = 64\n'
        f'[embedding]\nmodel = "{built.model_path}"\noutput = "{built.pooled_output}"\nprovider = "cuda"\n')
    run = _nlpmon("run", "--config", str(tmp_path / "c.toml"), cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("nlpmon: error: embedding.model: provider cuda was requested")
    assert "install onnxruntime-gpu in place of onnxruntime" in run.stderr
