import dataclasses
import re

import pytest

from monitor.config import SECTIONS, Config, ConfigError, load_config


def write(tmp_path, text):
    p = tmp_path / "nlpmon.toml"
    p.write_text(text)
    return p


def test_defaults_are_documented_values(tmp_path):
    c = load_config(write(tmp_path, '[source]\npath = "x.jsonl"\n'), env={})
    assert c.window.size_seconds == 300 and c.window.lateness_seconds == 30 and c.window.min_events == 200
    assert c.window.reservoir_size == 10_000 and c.detect.alpha == 0.01 and c.detect.min_effect == 0.1
    assert c.detect.correction == "bh" and c.detect.low_confidence_threshold == 0.5


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
