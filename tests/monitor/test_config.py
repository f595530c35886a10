import dataclasses
import re

import pytest

from monitor.config import SECTIONS, ConfigError, load_config


def write(tmp_path, text):
    p = tmp_path / "nlpmon.toml"
    p.write_text(text)
    return p


def test_defaults_are_documented_values(tmp_path):
    c = load_config(write(tmp_path, '[source]\npath = "x.jsonl"\n'), env={})
    assert c.window.size_seconds == 300 and c.window.lateness_seconds == 30 and c.window.min_events == 200
    assert c.window.reservoir_size == 10_000 and c.detect.alpha == 0.01 and c.detect.min_effect == 0.1
    assert c.detect.correction == "bh" and c.detect.low_confidence_threshold == 0.0  # 0: the per-model rule


def test_precedence_file_then_env_then_flags(tmp_path):
    p = write(tmp_path, '[source]\npath = "x"\n[window]\nmin_events = 10\nseed = 1\nlateness_seconds = 5\n')
    env = {"NLPMON_WINDOW_MIN_EVENTS": "20", "NLPMON_WINDOW_SEED": "2"}
    c = load_config(p, env=env, overrides={"window.min_events": 30})
    assert c.window.min_events == 30  # flag beats env
    assert c.window.seed == 2  # env beats file
    assert c.window.lateness_seconds == 5.0  # file beats default


def test_config_is_frozen(tmp_path):
    c = load_config(write(tmp_path, '[source]\npath = "x"\n'), env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.window.min_events = 1


@pytest.mark.parametrize(
    "toml, env, key",
    [
        ('[window]\nsise = 3\n', {}, "window.sise"),
        ('[windw]\nsize_seconds = 3\n', {}, "windw"),
        ('[window]\nmin_events = "many"\n', {}, "window.min_events"),
        ('[window]\nmin_events = 0\n', {}, "window.min_events"),
        ('[detect]\ncorrection = "holm"\n', {}, "detect.correction"),
        ('[detect]\nalpha = 2\n', {}, "detect.alpha"),
        ('[metrics]\nenabled = "yes"\n', {}, "metrics.enabled"),
        ('', {"NLPMON_DETECT_ALPHA": "small"}, "detect.alpha"),
        ('', {"NLPMON_DETECT_ALPHAA": "0.1"}, "detect.alphaa"),
        ('[source]\nkind = "file"\npath = ""\n', {}, "source.path"),
    ],
)
def test_bad_values_name_the_key(tmp_path, toml, env, key):
    if "[source]" not in toml:
        toml = '[source]\npath = "x"\n' + toml
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(write(tmp_path, toml), env=env)


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[window\n"), env={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_every_key_is_documented():
    doc = open("docs/config.md", encoding="utf-8").read()
    for section, cls in SECTIONS.items():
        assert f"[{section}]" in doc, section
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in doc, f"{section}.{f.name} missing from docs/config.md"
            default = f.default
            shown = {True: "true", False: "false"}.get(default, default) if isinstance(default, bool) else default
            if not isinstance(default, tuple):
                assert str(shown) in doc, f"default of {section}.{f.name} missing"


# -- [[experiments]] and [shadow] (docs/experiments.md) ------------------------------------------------------------
EXPERIMENT = '[source]\npath = "x"\n[[experiments]]\nname = "e1"\nmodel = "m"\nvariants = {a = 90, b = 10}\n'


def test_experiments_array_of_tables_with_guardrails(tmp_path):
    c = load_config(write(tmp_path, EXPERIMENT + 'metric = "outcome"\n[[experiments.guardrails]]\n'
                          'metric = "error_rate"\ntolerance = 0.01\n[[experiments.guardrails]]\n'
                          'metric = "latency_p99_ms"\nrelative = true\ntolerance = 0.2\n'
                          '[[experiments]]\nname = "e2"\nmodel = "m"\nvariant_field = "version"\n'
                          'variants = {"3" = 1, "4" = 1}\ncontrol = "4"\n'), env={})
    e1, e2 = c.experiments
    assert e1.variants == (("a", 90.0), ("b", 10.0)) and e1.control_variant == "a" and e1.treatments == ("b",)
    assert [g.metric for g in e1.guardrails] == ["error_rate", "latency_p99_ms"] and e1.guardrails[1].relative
    assert e2.control_variant == "4" and e2.treatments == ("3",) and e2.guardrails == ()
    from monitor.config import config_as_dict
    assert config_as_dict(c)["experiments"][0]["variants"] == {"a": 90.0, "b": 10.0}


@pytest.mark.parametrize("toml, key", [
    (EXPERIMENT + "metrik = 1\n", "experiments[0].metrik"),
    (EXPERIMENT + '[[experiments.guardrails]]\nmetric = "error_rate"\ntolerence = 0.1\n',
     "experiments[0].guardrails[0].tolerence"),
    (EXPERIMENT + '[[experiments.guardrails]]\nmetric = "p50"\n', "experiments[0].guardrails[0].metric"),
    (EXPERIMENT + 'metric = "ctr"\n', "experiments[0].metric"),
    (EXPERIMENT + 'alpha = 0.9\n', "experiments[0].alpha"),
    ('[source]\npath = "x"\n[[experiments]]\nmodel = "m"\nvariants = {a = 1, b = 1}\n', "experiments[0].name"),
    ('[source]\npath = "x"\n[[experiments]]\nname = "e"\nmodel = "m"\nvariants = {a = 1}\n', "experiments[0].variants"),
    ('[source]\npath = "x"\n[[experiments]]\nname = "e"\nmodel = "m"\nvariants = {a = 1, b = 0}\n',
     "experiments[0].variants.b"),
    (EXPERIMENT + 'control = "c"\n', "experiments[0].control"),
    (EXPERIMENT + EXPERIMENT.split("\n", 2)[2], "experiments[1].name"),
    (EXPERIMENT.replace('"e1"', '"e 1"'), "experiments[0].name"),
    ('[source]\npath = "x"\n[experiments]\nname = "e"\n', "experiments"),
    ('[source]\npath = "x"\n[shadow]\nttl_second = 3\n', "shadow.ttl_second"),
])
def test_bad_experiments_name_the_key(tmp_path, toml, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(write(tmp_path, toml), env={})


def test_experiments_come_from_the_file_only(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section \[experiments\]"):
        load_config(write(tmp_path, '[source]\npath = "x"\n'), env={"NLPMON_EXPERIMENTS_NAME": "x"})
    c = load_config(write(tmp_path, '[source]\npath = "x"\n'), env={"NLPMON_SHADOW_ENABLED": "true"})
    assert c.shadow.enabled and c.experiments == ()


def test_every_experiment_key_is_documented():
    from monitor.config import ExperimentConfig, GuardrailConfig

    doc = open("docs/config.md", encoding="utf-8").read()
    section = doc[doc.index("## [[experiments]]"):]
    for cls in (ExperimentConfig, GuardrailConfig):
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in section, f"{cls.__name__}.{f.name} missing from docs/config.md"


# What Kubernetes injects for Services named "nlpmon" and "nlpmon-metrics" (enableServiceLinks).
SERVICE_LINKS = {
    "NLPMON_SERVICE_HOST": "10.0.0.1", "NLPMON_SERVICE_PORT": "9108", "NLPMON_SERVICE_PORT_METRICS": "9108",
    "NLPMON_PORT": "tcp://10.0.0.1:9108", "NLPMON_PORT_9108_TCP": "tcp://10.0.0.1:9108",
    "NLPMON_PORT_9108_TCP_PROTO": "tcp", "NLPMON_PORT_9108_TCP_PORT": "9108", "NLPMON_PORT_9108_TCP_ADDR": "10.0.0.1",
    "NLPMON_METRICS_SERVICE_HOST": "10.0.0.2", "NLPMON_METRICS_SERVICE_PORT": "9108",
    "NLPMON_METRICS_PORT": "tcp://10.0.0.2:9108", "NLPMON_METRICS_PORT_9108_TCP": "tcp://10.0.0.2:9108",
    "NLPMON_METRICS_PORT_9108_TCP_PROTO": "tcp", "NLPMON_METRICS_PORT_9108_TCP_PORT": "9108",
    "NLPMON_METRICS_PORT_9108_TCP_ADDR": "10.0.0.2",
}


def test_kubernetes_service_links_are_ignored_but_real_keys_and_typos_are_not():
    from monitor.config import service_links

    config = load_config(env={**SERVICE_LINKS, "NLPMON_SOURCE_KIND": "stdin"})
    assert config.metrics.port == 9108 and config.metrics.host == SECTIONS["metrics"]().host
    assert service_links({**SERVICE_LINKS, "NLPMON_SOURCE_KIND": "stdin"}) == sorted(SERVICE_LINKS)
    assert load_config(env={"NLPMON_METRICS_PORT": "9200", "NLPMON_SOURCE_KIND": "stdin"}).metrics.port == 9200
    with pytest.raises(ConfigError, match="NLPMON_METRICS_PORTT"):
        load_config(env={"NLPMON_METRICS_PORTT": "9200", "NLPMON_SOURCE_KIND": "stdin"})


def test_an_environment_value_error_names_the_variable():
    with pytest.raises(ConfigError, match="environment variable NLPMON_WINDOW_MIN_EVENTS: window.min_events"):
        load_config(env={"NLPMON_WINDOW_MIN_EVENTS": "many", "NLPMON_SOURCE_KIND": "stdin"})


def test_the_daemon_starts_with_service_links_in_its_environment(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "e.jsonl").write_text('{"ts": 1764000000000, "model": "m", "prediction": "p"}\n')
    env = {**os.environ, **SERVICE_LINKS, "NLPMON_SOURCE_KIND": "file", "NLPMON_SOURCE_PATH": str(tmp_path / "e.jsonl"),
           "NLPMON_METRICS_ENABLED": "false", "NLPMON_LOGGING_LEVEL": "debug", "NLPMON_LOGGING_FORMAT": "json"}
    out = subprocess.run([sys.executable, "-m", "monitor.cli", "run"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("ignored a Kubernetes service-link variable") == len(SERVICE_LINKS)


def test_labels_are_refused_with_count_windows():
    # A label period needs time bounds; count windows have none (docs/results.md, *Labels results*).
    with pytest.raises(ConfigError, match=r"labels.enabled: needs window.kind = 'time'"):
        load_config(env={}, overrides={"source.kind": "stdin", "labels.enabled": True, "window.kind": "count"})
    assert load_config(env={}, overrides={"source.kind": "stdin", "labels.enabled": True}).window.kind == "time"
