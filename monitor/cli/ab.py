"""``nlpmon ab report``: the current state of an A/B experiment from the SQL store (docs/experiments.md)."""

from __future__ import annotations

import sys

import orjson

from monitor.cli.common import EXIT_OK, UsageError, add_config_flags, command_group, config_from_args, read_store

__all__ = ["add_parsers", "cmd_ab_report", "format_report"]


def add_parsers(sub) -> None:
    """Register ``nlpmon ab report`` on the top-level subparsers."""
    asub = command_group(sub, "ab", help="A/B experiments: report stored results",
                         description="A/B experiments configured as [[experiments]] (docs/experiments.md).")
    r = asub.add_parser(
        "report",
        help="print the latest result of an experiment",
        description="Print the latest stored result of experiment NAME, written by the Kafka sidecar into the SQL "
        "store: samples per variant and the sample-ratio check, the primary metric per variant, the lift with its "
        "always-valid p-value and confidence interval (valid however often it is read), the fixed-horizon test "
        "(valid only once the planned sample size is reached) and the guardrails. Every figure is cumulative since "
        "the experiment started. Exit 0 with a report; 2 when the store cannot be reached or holds no result for "
        "NAME (the experiments it knows are listed).",
    )
    r.add_argument("--experiment", required=True, metavar="NAME", help="the experiment's name in [[experiments]]")
    r.add_argument("--store", metavar="URL", help="SQL store URL (default: store.url of the config)")
    r.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default) or the stored result as one JSON document (docs/experiments.md)")
    add_config_flags(r)
    r.set_defaults(func=cmd_ab_report)


def cmd_ab_report(args) -> int:
    url = args.store or config_from_args(args, {"source.kind": "stdin"}).store.url
    with read_store(url) as store:  # a read: never creates the database
        rows = store.experiment_results(args.experiment, limit=1)
        known = store.experiment_names() if not rows else []
    if not rows:
        hint = f" (stored experiments: {', '.join(known)})" if known else " (the store holds no experiment results)"
        raise UsageError(f"no stored results for experiment {args.experiment!r}{hint}")
    latest = rows[-1]
    if args.format == "json":
        sys.stdout.write(orjson.dumps(latest).decode() + "\n")
    else:
        sys.stdout.write(format_report(latest))
    return EXIT_OK


def _f(x, spec: str = ".4g", signed: bool = False) -> str:
    if x is None:
        return "-"
    return format(x, ("+" if signed else "") + spec)


def format_report(r: dict) -> str:
    """Render one experiment result (ExperimentResult.to_dict()) as text for people."""
    control = next(iter(r["comparisons"].values()), {}).get("control")
    better = "higher" if r["higher_is_better"] else "lower"
    lines = [
        f"experiment {r['experiment']}   model {r['model']}   metric {r['metric']} ({better} is better)",
        f"latest window {r['window_start']} .. {r['window_end']}{'  (partial)' if r['partial'] else ''}"
        f"   samples since start {r['samples']}",
        "",
    ]
    srm = r["srm"]
    if r["srm_mismatch"]:
        why = (f"traffic to unexpected variants: {', '.join(srm['unexpected_variants'])}"
               if srm["reason"] == "unexpected_variants" else f"chi-square p = {_f(srm['p_value'], '.3g')}")
        lines.append(f"SAMPLE RATIO MISMATCH ({why}, alpha {srm['alpha']:g}): the split is broken; "
                     "every figure below is suspect.")
    else:
        lines.append(f"sample ratio: {srm['reason']} (chi-square p = {_f(srm['p_value'], '.3g')}, alpha {srm['alpha']:g})")
    lines += ["", f"{'variant':<16} {'intended':>9} {'observed':>9} {'samples':>9} {'metric n':>9} {'metric':>10}"]
    for name, v in r["variants"].items():
        observed = srm["variants"].get(name, {}).get("observed_share")
        label = f"{name} (control)" if name == control else name
        lines.append(f"{label[:16]:<16} {_f(v['intended_share'], '.1%'):>9} {_f(observed, '.1%'):>9} "
                     f"{v['samples']:>9} {v['metric_n']:>9} {_f(v['metric_mean']):>10}")
    lines += ["", "always-valid test (valid at every look, however often it is read):",
              f"{'variant':<16} {'lift':>10} {'relative':>9} {'interval':>24} {'p-value':>8}  verdict"]
    for name, c in r["comparisons"].items():
        av = c["always_valid"]
        interval = f"[{_f(av['ci_low'], '.4g', True)}, {_f(av['ci_high'], '.4g', True)}]"
        verdict = ("DEGRADED" if c["degraded"] else "improved" if c["improved"]
                   else "no significant difference yet" if av["n_a"] and av["n_b"] else "no data")
        lines.append(f"{name[:16]:<16} {_f(av['lift'], '.4g', True):>10} {_f(av['lift_relative'], '.2%', True):>9} "
                     f"{interval:>24} {_f(av['p_value'], '.3g'):>8}  {verdict}")
    planned = r["planned_samples"]
    if planned is None:
        lines += ["", "fixed-horizon test: no planned sample size (set planned_samples or mde)"]
    else:
        lines += ["", f"fixed-horizon test, planned {planned} per variant "
                      "(VALID ONLY ONCE EVERY VARIANT HAS REACHED IT; not a verdict before):"]
        for name, c in r["comparisons"].items():
            fh = c["fixed_horizon"]
            state = "valid now" if fh["valid_now"] else f"not valid yet ({min(fh['n_a'], fh['n_b'])}/{planned})"
            lines.append(f"{name[:16]:<16} {fh['test']:<8} p = {_f(fh['p_value'], '.3g'):<8} interval "
                         f"[{_f(fh['ci_low'], '.4g', True)}, {_f(fh['ci_high'], '.4g', True)}]  {state}"
                         f"{'  significant' if fh['significant'] else ''}")
    guards = [(name, g) for name, c in r["comparisons"].items() for g in c["guardrails"]]
    if guards:
        lines += ["", f"{'guardrail':<22} {'variant':<12} {'control':>10} {'treatment':>10} {'delta':>10} "
                      f"{'tolerated':>10}  status"]
        for name, g in guards:
            status = "BREACHED" if g["breached"] else "ok" if g["evaluated"] else "not evaluated yet"
            lines.append(f"{g['name']:<22} {name[:12]:<12} {_f(g['value_control']):>10} {_f(g['value_treatment']):>10} "
                         f"{_f(g['delta'], '.4g', True):>10} {_f(g['threshold']):>10}  {status}")
    return "\n".join(lines) + "\n"
