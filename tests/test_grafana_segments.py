"""The dashboard's `segment` variable (window.by_segment): per-window panels follow it, and its default, All,
still matches the series of a deployment without segments (which carry no segment label)."""

from __future__ import annotations

import pytest
import yaml

from tests.test_grafana import _as_promql, exprs, helpers, panels, variables

PER_WINDOW = ("nlp_window_", "nlp_drift_", "nlp_embedding_", "nlp_windows_")


def test_segment_variable_follows_model_and_version_and_matches_all_by_default():
    v = variables()["segment"]
    assert v["type"] == "query" and v["includeAll"] and v["allValue"] == ".*" and v["current"]["value"] == ["$__all"]
    for chosen in ("$job", "$namespace", "$model", "$version"):
        assert chosen in v["definition"]
    assert v["definition"].endswith(", segment)")


def test_per_window_panels_follow_the_segment_variable():
    checked = 0
    for p in panels():
        for expr in exprs(p):
            if any(name.startswith(PER_WINDOW) for name in helpers.metric_names(expr)):
                assert 'segment=~"$segment"' in expr, f"{p['title']}: {expr}"
                checked += 1
    assert checked >= 10


@pytest.mark.integration
def test_segment_all_matches_series_with_and_without_a_segment(tmp_path):
    promtool = helpers.tool("promtool")
    scoped = _as_promql('nlp_window_events{job=~"$job",namespace=~"$namespace",model=~"$model",version=~"$version",'
                        'segment=~"$segment"}')
    chosen = scoped.replace('segment=~".*"', 'segment=~"fr"')
    plain = {"job": "nlpmon", "model": "m", "version": "1"}
    fr = {**plain, "segment": "fr", "model": "s"}

    def series(labels: dict) -> str:
        return "nlp_window_events{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"

    tests = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": series(plain), "values": "10"}, {"series": series(fr), "values": "20"}],
        "promql_expr_test": [
            {"expr": scoped, "eval_time": "0m",
             "exp_samples": [{"labels": series(plain), "value": 10}, {"labels": series(fr), "value": 20}]},
            {"expr": chosen, "eval_time": "0m", "exp_samples": [{"labels": series(fr), "value": 20}]},
        ],
    }]}
    path = tmp_path / "segment_test.yml"
    path.write_text(yaml.safe_dump(tests), encoding="utf-8")
    result = helpers.run(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
