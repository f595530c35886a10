"""``nlpmon check-config`` prints TOML, the format a user edits: it parses back to the same settings, loads back to
the same config, and keeps secrets redacted; ``--format json`` keeps the JSON."""

from __future__ import annotations

import json
import math
import tomllib

import pytest

from monitor.cli import main
from monitor.config import config_as_dict, load_config
from monitor.config.toml_out import dumps

CONFIG = '''
[source]
kind = "kafka"
[kafka]
bootstrap_servers = ["b1:9092", "b2:9092"]
topics = ["predictions"]
group_id = "g"
security_protocol = "SASL_SSL"
sasl_mechanism = "PLAIN"
sasl_username = "nlpmon"
[store]
url = "postgresql://nlpmon:s3cret@db:5432/nlpmon"
[metrics]
latency_buckets_seconds = [0.1, 1, 30]
[probe]
stall_seconds = 45
[[experiments]]
name = "exp-1"
model = "sentiment"
variants = {control = 50, "treat ment" = 50}
metric = "accuracy"
[[experiments.guardrails]]
metric = "error_rate"
tolerance = 0.01
'''


def _check_config(tmp_path, capsys, *flags) -> tuple[int, str, str]:
    (tmp_path / "c.toml").write_text(CONFIG)
    code = main(["check-config", "--config", str(tmp_path / "c.toml"), *flags])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_config_prints_toml_that_loads_back_to_the_same_config(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NLPMON_KAFKA_SASL_PASSWORD", "hunter2")  # a secret comes from the environment only
    _, out, err = _check_config(tmp_path, capsys)
    assert out.startswith("[source]\nkind = \"kafka\"\n"), err
    assert "hunter2" not in out and "s3cret" not in out and 'url = "postgresql://nlpmon:***@db:5432/nlpmon"' in out
    assert "# sasl_password: a secret, set; not printed: NLPMON_KAFKA_SASL_PASSWORD in the environment\n" in out
    assert "# token: a secret, unset; not printed: NLPMON_REEVAL_TOKEN in the environment\n" in out
    assert "[[experiments]]" in out and '"treat ment" = 50' in out and "stall_seconds = 45.0" in out
    original = load_config(tmp_path / "c.toml")
    expected = config_as_dict(original)
    del expected["kafka"]["sasl_password"], expected["reeval"]["token"]
    assert tomllib.loads(out) == expected
    # Loaded back as it is printed, with the secret in the environment: the same config but the masked URL.
    (tmp_path / "printed.toml").write_text(out)
    again = load_config(tmp_path / "printed.toml", env={"NLPMON_KAFKA_SASL_PASSWORD": "hunter2"})
    assert again.store.url == "postgresql://nlpmon:***@db:5432/nlpmon"
    assert again.replace(store=original.store) == original


def test_format_json_keeps_the_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NLPMON_KAFKA_SASL_PASSWORD", "hunter2")
    _, out, _ = _check_config(tmp_path, capsys, "--format", "json")
    data = json.loads(out)
    assert data["probe"] == {"stall_seconds": 45.0} and data["kafka"]["sasl_password"] == "***"
    toml = tomllib.loads(_check_config(tmp_path, capsys)[1])
    del data["kafka"]["sasl_password"], data["reeval"]["token"]  # the TOML has them as comments
    assert data == toml


@pytest.mark.parametrize("value", [
    "plain", "", 'quote " and \\ backslash', "tab\tnew\nline\r", "\x00\x1f\x7f control", "üñí €", "'single'",
    0, -7, 2**40, 0.005, 1e-6, 1e300, -0.0, 120.0, True, False, [], ["a", "b"], [0.1, 1.0], {"a b": 1, "c": "d"},
    [{"metric": "x", "tolerance": 0.5}],
])
def test_values_round_trip(value):
    data = {"s": {"key": value, "odd key.x": value}, "arr": [{"k": value}, {"k": value}]}
    assert tomllib.loads(dumps(data)) == data


def test_non_finite_floats_and_unset_values():
    got = tomllib.loads(dumps({"s": {"inf": math.inf, "ninf": -math.inf, "nan": math.nan, "none": None}}))
    assert got["s"]["inf"] == math.inf and got["s"]["ninf"] == -math.inf and math.isnan(got["s"]["nan"])
    assert "none" not in got["s"]
