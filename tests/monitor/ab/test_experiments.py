"""A/B experiments through the pipeline: windows, SRM, always-valid lift, guardrails, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np
import pytest

from monitor.ab.experiments import ExperimentResult
from monitor.config import load_config
from monitor.pipeline import Pipeline, Record

T0 = 1_764_000_000_000
NOW = lambda: T0 + 10**10  # noqa: E731 - a clock far after every event: nothing is "in the future"


def config(tmp_path: Path, experiment: str = "", extra: str = ""):
    p = tmp_path / "nlpmon.toml"
    p.write_text('[source]\npath = "x"\n[window]\nsize_seconds = 60\nlateness_seconds = 5\n' + extra
                 + '[[experiments]]\nname = "exp"\nmodel = "m"\nvariants = {a = 50, b = 50}\n' + experiment)
    return load_config(p, env={})


def traffic(n: int, seed: int, *, acc=(0.80, 0.80), split=0.5, latency=(10.0, 10.0), error=(0.0, 0.0),
            rate_per_s=20.0, extra_variant=None, outcome=None):
    """Labelled events of model m: variant a or b at random (share `split` for a), per-variant accuracy etc."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        v = 0 if rng.random() < split else 1
        name = "ab"[v]
        if extra_variant and rng.random() < 0.01:
            name = extra_variant
        e = {"ts": T0 + int(i * 1000 / rate_per_s), "model": "m", "version": "1", "variant": name,
             "request_id": f"q{i}", "latency_ms": float(rng.exponential(latency[v])), "confidence": float(rng.uniform(0.5, 1))}
        if rng.random() < error[v]:
            e["error"] = "boom"
        else:
            e["prediction"] = "pos"
            e["label"] = "pos" if rng.random() < acc[v] else "neg"
        if outcome is not None:
            e["outcome"] = float(rng.normal(outcome[v], 1.0))
        out.append(e)
    return out


def run(cfg, events, *, batch=500, restore_at=None):
    """Run the pipeline; optionally checkpoint (msgpack) at event `restore_at` into a fresh pipeline."""
    recs = [Record(json.dumps(e).encode()) for e in events]
    p = Pipeline(cfg, now_ms=NOW)
    results = []
    cuts = list(range(0, len(recs), batch)) + [len(recs)]
    if restore_at is not None:
        cuts = sorted(set(cuts) | {restore_at})
    for lo, hi in zip(cuts, cuts[1:]):
        closed = p.process(recs[lo:hi])
        results += closed.experiments + closed.shadow
        if hi == restore_at:
            state = msgspec.msgpack.decode(msgspec.msgpack.encode(p.state()))
            p = Pipeline(cfg, now_ms=NOW)
            p.restore(state)
    closed = p.flush()
    return results + list(closed.experiments + closed.shadow)


def test_windows_follow_the_pipeline_window_and_are_cumulative(tmp_path):
    cfg = config(tmp_path)
    results = run(cfg, traffic(6_000, seed=1))  # 300 s at 20/s: five 60 s windows
    assert all(isinstance(r, ExperimentResult) for r in results)
    assert [r.window_start_ms - T0 for r in results] == [0, 60_000, 120_000, 180_000, 240_000]
    assert [r.partial for r in results] == [False] * 4 + [True]
    assert [r.samples for r in results] == [1_200, 2_400, 3_600, 4_800, 6_000]
    last = results[-1]
    assert sum(v.window_samples for v in last.variants) == 1_200
    assert last.comparisons[0].always_valid.looks == 5
    assert not last.srm_mismatch and not last.significant


def test_a_real_lift_is_detected_and_degradation_flagged(tmp_path):
    better = run(config(tmp_path), traffic(20_000, seed=2, acc=(0.80, 0.86)))[-1]
    c = better.comparisons[0]
    assert c.variant == "b" and c.control == "a"
    assert c.always_valid.significant and c.improved and not c.degraded and not better.degraded
    assert c.always_valid.ci_low > 0 and c.always_valid.lift == pytest.approx(0.06, abs=0.02)
    worse = run(config(tmp_path), traffic(20_000, seed=3, acc=(0.86, 0.80)))[-1]
    assert worse.degraded and worse.comparisons[0].always_valid.direction == "decrease"
    # misclassification_rate: lower is better, so the same data is an improvement
    mis = run(config(tmp_path, 'metric = "misclassification_rate"\n'), traffic(20_000, seed=3, acc=(0.86, 0.80)))[-1]
    assert mis.comparisons[0].improved is False and mis.degraded  # b misclassifies more: worse
    assert mis.comparisons[0].always_valid.lift > 0


def test_srm_detected_on_a_broken_split_not_on_a_correct_one(tmp_path):
    ok = run(config(tmp_path), traffic(20_000, seed=4, split=0.5))
    assert not any(r.srm_mismatch for r in ok)
    broken = run(config(tmp_path), traffic(20_000, seed=4, split=0.53))[-1]
    assert broken.srm_mismatch and broken.srm.reason == "chi_square" and broken.srm.p_value < 0.001
    stray = run(config(tmp_path), traffic(5_000, seed=5, extra_variant="c"))[-1]
    assert stray.srm_mismatch and stray.srm.unexpected_variants == ("c",)
    d = stray.to_dict()
    assert d["srm_mismatch"] and set(d["variants"]) == {"a", "b"}  # "c" is never a variant of the result


def test_checkpoint_restore_mid_stream_gives_identical_results(tmp_path):
    cfg = config(tmp_path, 'metric = "outcome"\nmde = 0.1\n'
                 '[[experiments.guardrails]]\nmetric = "latency_p99_ms"\ntolerance = 0.5\nrelative = true\n'
                 '[[experiments.guardrails]]\nmetric = "error_rate"\ntolerance = 0.01\n',
                 extra="[shadow]\nenabled = true\nttl_seconds = 5\n")
    events = traffic(9_000, seed=6, outcome=(3.0, 3.1), error=(0.01, 0.02))
    for e in events[::7]:  # shadow predictions of some requests, a little later
        if "prediction" in e:
            events.append(dict(e, ts=e["ts"] + 300, variant="shadow", version="2"))
    events.sort(key=lambda e: e["ts"])
    whole = [r.to_dict() for r in run(cfg, events, batch=500)]
    resumed = [r.to_dict() for r in run(cfg, events, batch=333, restore_at=4_321)]
    assert len(whole) > 10 and whole == resumed
    assert {("experiment" in d) for d in whole} == {True, False}  # experiment and shadow results both there


def test_changed_settings_start_the_experiment_afresh(tmp_path):
    events = traffic(4_000, seed=7)
    recs = [Record(json.dumps(e).encode()) for e in events]
    p = Pipeline(config(tmp_path), now_ms=NOW)
    p.process(recs[:2_000])
    state = p.state()
    changed = Pipeline(config(tmp_path, "srm_alpha = 0.01\n"), now_ms=NOW)
    changed.restore(state)
    closed = changed.process(recs[2_000:])
    first = (closed.experiments + changed.flush().experiments)[0]
    assert first.samples < 2_000 + 1_200  # only events after the restart count
    same = Pipeline(config(tmp_path), now_ms=NOW)
    same.restore(state)
    taken = same.process(recs[2_000:]).experiments
    assert taken[0].samples > 2_000


def test_guardrails_breach_on_latency_and_error_rate(tmp_path):
    cfg = config(tmp_path, '[[experiments.guardrails]]\nmetric = "latency_p99_ms"\ntolerance = 0.2\nrelative = true\n'
                 '[[experiments.guardrails]]\nmetric = "error_rate"\ntolerance = 0.01\n'
                 '[[experiments.guardrails]]\nmetric = "low_confidence_ratio"\ntolerance = 0.05\n')
    bad = run(cfg, traffic(20_000, seed=8, latency=(10.0, 20.0), error=(0.002, 0.06)))[-2]
    g = {x.name: x for x in bad.comparisons[0].guardrails}
    assert g["latency_p99_ms"].breached and g["error_rate"].breached and not g["low_confidence_ratio"].breached
    assert g["error_rate"].interval_low > 0.01  # the whole always-valid interval is beyond the tolerance
    fine = run(cfg, traffic(20_000, seed=8))[-2]
    assert not fine.guardrail_breached and all(x.evaluated for x in fine.comparisons[0].guardrails)


def test_fixed_horizon_is_labelled_valid_only_at_the_planned_size(tmp_path):
    results = run(config(tmp_path, "planned_samples = 5000\n"), traffic(20_000, seed=9, acc=(0.80, 0.86)))
    fixed = [r.comparisons[0].fixed_horizon for r in results]
    assert all(f.planned_n == 5_000 for f in fixed)
    assert [f.valid_now for f in fixed] == [min(f.n_a, f.n_b) >= 5_000 for f in fixed]
    assert not fixed[0].valid_now and not fixed[0].significant and fixed[-1].valid_now
    d = results[0].to_dict()["comparisons"]["b"]["fixed_horizon"]
    assert d["valid_now"] is False and "valid only" in d["note"]
    planned = run(config(tmp_path, "mde = 0.05\n"), traffic(3_000, seed=9))[-1]
    assert planned.planned_samples and planned.planned_samples > 100
    assert run(config(tmp_path), traffic(3_000, seed=9))[-1].comparisons[0].fixed_horizon is None


def test_variants_by_version_and_what_is_not_part_of_the_experiment(tmp_path):
    p = tmp_path / "v.toml"
    p.write_text('[source]\npath = "x"\n[window]\nsize_seconds = 60\n[[experiments]]\nname = "byv"\nmodel = "m"\n'
                 'variant_field = "version"\nvariants = {"1" = 1, "2" = 1}\ncontrol = "2"\n')
    cfg = load_config(p, env={})
    events = traffic(2_000, seed=10)
    for i, e in enumerate(events):
        e["version"] = "12"[i % 2]
    events.append(dict(events[0], ts=events[-1]["ts"], variant="shadow"))  # a shadow prediction: not counted
    events.append(dict(events[0], ts=events[-1]["ts"], model="other"))  # another model: not counted
    r = run(cfg, events, batch=10_000)[-1]
    assert r.samples == 2_000 and r.comparisons[0].variant == "1" and r.comparisons[0].control == "2"


def test_late_events_are_counted_not_used(tmp_path):
    events = traffic(3_000, seed=11)  # up to 150 s
    events.append(dict(events[0], ts=T0 + 1_000))  # window [0, 60 s) closed long ago
    results = run(config(tmp_path), events, batch=10_000)
    assert sum(r.late for r in results) == 1 and results[-1].samples == 3_000
