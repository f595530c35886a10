"""``nlpmon reeval --config``: the ``[reeval]`` section gives the defaults of the flags, a flag given wins, and
--log-format/--log-level/--set work as for every other command (issue 24)."""

from __future__ import annotations

import json
import logging


def _write(tmp_path, tiny, extra: str = ""):
    path = tmp_path / "nlpmon.toml"
    path.write_text(f'[reeval]\nmodel = "{tiny.model_path}"\ntokenizer = "{tiny.tokenizer_dir}"\n'
                    f'data = "{tiny.heldout_path}"\nmodel_name = "from-config"\nbatch_size = 7\n{extra}')
    return path


def test_the_reeval_section_gives_the_defaults_and_flags_win(nlpmon, capsys, tiny, tmp_path):
    cfg = _write(tmp_path, tiny, 'dataset_name = "configured-set"\n')
    assert nlpmon("reeval", "--config", str(cfg), "--format", "json") == 0, capsys.readouterr().err
    first = json.loads(capsys.readouterr().out)
    assert first["model"]["name"] == "from-config" and first["dataset"]["name"] == "configured-set"
    assert first["batch_size"] == 7
    assert nlpmon("reeval", "--config", str(cfg), "--format", "json", "--name", "from-flag",
                  "--set", "reeval.dataset_name=from-set") == 0, capsys.readouterr().err
    second = json.loads(capsys.readouterr().out)
    assert second["model"]["name"] == "from-flag" and second["dataset"]["name"] == "from-set"
    assert second["accuracy"] == first["accuracy"]


def test_a_missing_required_setting_names_flag_and_section(nlpmon, capsys, tiny, tmp_path):
    cfg = tmp_path / "empty.toml"
    cfg.write_text(f'[reeval]\nmodel = "{tiny.model_path}"\n')
    assert nlpmon("reeval", "--config", str(cfg)) == 2
    err = capsys.readouterr().err
    assert err == "nlpmon reeval: error: required: --tokenizer, --data (a flag, or the [reeval] section of --config)\n"
    assert nlpmon("reeval", "--model", str(tiny.model_path)) == 2  # without --config: the same, one line
    assert "required: --tokenizer, --data" in capsys.readouterr().err


def test_log_flags_and_a_bad_config_key(nlpmon, capsys, tiny, tmp_path):
    cfg = _write(tmp_path, tiny)
    assert nlpmon("reeval", "--config", str(cfg), "--format", "json", "--log-level", "error", "--log-format", "json") == 0
    assert logging.getLogger("nlpmon").getEffectiveLevel() == logging.ERROR
    capsys.readouterr()
    assert nlpmon("reeval", "--config", str(cfg), "--set", "reeval.batch_size=0") == 2
    assert "reeval.batch_size" in capsys.readouterr().err
