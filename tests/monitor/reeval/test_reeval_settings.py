"""The settings are defined once (``ReevalOptions``); the ``[reeval]`` keys and the CLI flags they give stay
exactly what they were before the single definition, and the typed report gives back the worker's JSON."""

from __future__ import annotations

import argparse
import dataclasses

from monitor.cli.reeval import add_parsers
from monitor.config import ReevalConfig, config_as_dict, load_config
from monitor.config.reeval import ReevalOptions, option_fields
from monitor.reeval.options import options_from_config
from monitor.results import ReevalReport

# [reeval] as it was: every key, in order, with its default.
CONFIG_BEFORE = {
    "enabled": False, "model": "", "tokenizer": "", "data": "", "text_field": "text", "label_field": "label",
    "label_map": "", "batch_size": 32, "max_length": 0, "provider": "auto", "threads": 1, "calibration_bins": 15,
    "model_name": "", "model_version": "unversioned", "dataset_name": "", "on_drift": True, "cooldown_seconds": 3600.0,
    "interval_seconds": 0.0, "timeout_seconds": 600.0, "baseline_accuracy": 0.0, "candidate": "", "traffic_sample": 1000,
    "token": "",
}  # fmt: skip
# `nlpmon reeval` flags as they were, in --help order, with their defaults.
FLAGS_BEFORE = {
    "--model": None, "--tokenizer": None, "--data": None, "--text-field": "text", "--label-field": "label",
    "--label-map": None, "--batch-size": 32, "--max-length": None, "--provider": "auto", "--candidate": None,
    "--traffic": None, "--traffic-sample": 2000, "--baseline-accuracy": None, "--calibration-bins": 15,
    "--flip-check-limit": 2000, "--no-sort": True, "--threads": 0, "--name": None, "--model-version": None,
    "--dataset-name": None, "--format": "table", "--quiet": False, "--store": None,
}  # fmt: skip


def _reeval_parser() -> argparse.ArgumentParser:
    subparsers = argparse.ArgumentParser().add_subparsers()
    add_parsers(subparsers)
    return subparsers.choices["reeval"]


def test_config_keys_and_defaults_are_unchanged():
    section = config_as_dict(load_config(env={}, overrides={"source.kind": "stdin"}))["reeval"]
    assert list(section) == list(CONFIG_BEFORE)
    assert section == CONFIG_BEFORE
    assert [type(v) for v in section.values()] == [type(v) for v in CONFIG_BEFORE.values()]


# Added since (issue 22): the gates, CLI-only (monitor.reeval.gates.Gates; the daemon's runs do not exit).
GATE_FLAGS = {"--min-accuracy": None, "--max-drop": None, "--min-agreement": None, "--max-accuracy-drop": None}
# Added since (issue 24): the config flags every command has, --tokenizer excepted (reeval's names the job's).
CONFIG_FLAGS = {"--config": None, "--set": [], "--log-format": None, "--log-level": None}


def test_cli_flags_and_defaults_are_unchanged():
    actions = [a for a in _reeval_parser()._actions if a.option_strings and a.option_strings[0] != "-h"]
    # A setting's default is wrapped so that [reeval] of --config can stand in for a flag not given.
    assert {a.option_strings[0]: getattr(a.default, "value", a.default) for a in actions} == FLAGS_BEFORE | GATE_FLAGS | CONFIG_FLAGS
    assert [a.option_strings[0] for a in actions] == list(FLAGS_BEFORE) + list(GATE_FLAGS) + list(CONFIG_FLAGS)
    # --model, --tokenizer and --data are still required, checked once --config had its say.
    required = [a.option_strings[0] for a in actions if "(required, here or as [reeval] of --config)" in a.help]
    assert required == ["--model", "--tokenizer", "--data"] and not any(a.required for a in actions)


def test_every_config_setting_is_a_key_and_every_key_of_the_job_is_a_setting():
    keys = {f.name for f in dataclasses.fields(ReevalConfig)}
    settings = option_fields()
    assert {n for n, f in settings.items() if f.metadata["config"]} <= keys
    daemon_only = {"enabled", "on_drift", "cooldown_seconds", "interval_seconds", "timeout_seconds", "token"}
    assert keys - daemon_only == {n for n, f in settings.items() if f.metadata["config"]}


def test_the_section_becomes_options_with_the_job_spelling():
    section = ReevalConfig(enabled=True, model="m.onnx", tokenizer="tok", data="d.jsonl", label_map="neg=0,pos=1")
    options = options_from_config(section)
    assert options.max_length is None and options.candidate is None and options.baseline is None
    assert options.label_map == (("neg", 0), ("pos", 1)) and options.threads == 1 == options.intra_op_threads
    assert options.model_version == "unversioned" and options.traffic_sample == 1000
    configured = options_from_config(dataclasses.replace(section, baseline_accuracy=0.8, max_length=64))
    assert (configured.baseline.accuracy, configured.baseline.source, configured.max_length) == (0.8, "configured", 64)
    assert ReevalOptions(model="m", tokenizer="t", data="d").threads == 0  # the CLI's default


def test_the_report_gives_back_the_document_it_was_read_from():
    doc = {"reeval_schema": 1, "model": {"sha256": "ab"}, "accuracy": 0.9, "macro_f1": 0.8, "newer_field": [1, 2],
           "calibration": {"bins": 2, "counts": [1, 1], "accuracy": [0.0, 1.0], "mean_confidence": [0.3, 0.9]}}
    report = ReevalReport.from_dict(doc)
    assert report.to_dict() == doc and report.to_dict() is not doc
    assert (report.accuracy, report.ece, report.model_sha256, report.calibration.bins) == (0.9, None, "ab", 2)
    assert ReevalReport.from_dict({"accuracy": 0.5}).calibration is None
