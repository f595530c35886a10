"""The ``reeval`` and ``quantize`` subcommands; ``add_parsers(subparsers)`` registers both.

Handlers return an exit code: 0 on success, 1 when a gate of ``reeval`` (``--min-accuracy``...) is missed, 2 when
the input is unusable (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import MISSING, fields
from pathlib import Path

from monitor.cli.common import UsageError, add_config_flags, config_from_args
from monitor.config.reeval import option_fields
from monitor.reeval.errors import ReevalError
from monitor.reeval.gates import Gates, check_gates, flag

__all__ = ["add_parsers", "reeval_command", "quantize_command"]


def _checked(convert, what: str, ok, must: str):
    """An argparse ``type``: ``convert`` the text (else "'x' is not WHAT"), then refuse values ``ok`` rejects."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{must}, got {value}")
        return value

    return parse


_positive_int = _checked(int, "an integer", lambda v: v >= 1, "must be at least 1")
_non_negative_int = _checked(int, "an integer", lambda v: v >= 0, "must be 0 or more")
_fraction = _checked(float, "a number", lambda v: 0.0 <= v <= 1.0, "must be an accuracy in [0, 1]")
_share = _checked(float, "a number", lambda v: 0.0 <= v <= 1.0, "must be a number in [0, 1]")


class _Unset:
    """A flag's default, told apart from the same value given on the command line (``--help`` shows the value)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __str__(self) -> str:
        return str(self.value)


_ARGS = {"path": Path, "positive_int": _positive_int, "non_negative_int": _non_negative_int, "fraction": _fraction}


def _add_option_flags(p: argparse.ArgumentParser) -> None:
    """One flag per setting of ``ReevalOptions`` (its flag, default and help), in the order of its fields."""
    for name, f in option_fields().items():
        meta = f.metadata
        if meta["flag"] is None:
            continue
        flag = meta["flag"] or "--" + name.replace("_", "-")
        kwargs = {"dest": name, "help": meta["help"]}
        if meta["action"]:
            kwargs.update(action=meta["action"], default=_Unset(f.default))
        else:
            # Required settings (model, tokenizer, data) are checked after [reeval] of --config filled in the rest.
            kwargs.update(default=_Unset(None if f.default is MISSING else f.default),
                          help=meta["help"] + (" (required, here or as [reeval] of --config)" if f.default is MISSING else ""))
            if meta["arg"]:
                kwargs["type"] = _ARGS[meta["arg"]]
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
            else:  # as argparse names it from the flag (dest is the option's name)
                kwargs["metavar"] = flag[2:].replace("-", "_").upper()
        p.add_argument(flag, **kwargs)
        if name == "candidate":  # where it is read from: the CLI's own flag, next to the setting it serves
            p.add_argument(
                "--traffic",
                type=Path,
                metavar="EVENTS.jsonl",
                help="with --candidate: a prediction log (nlpmon's event JSONL); both models also score the logged "
                "texts of its last --traffic-sample events (of --name's model when given) and the report shows their "
                "agreement",
            )


def add_parsers(subparsers) -> None:
    """Register ``reeval`` and ``quantize`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "reeval",
        help="replay a labelled held-out set through an ONNX model and report how good it still is",
        description="Replay a labelled held-out set through an ONNX text classifier and report accuracy, "
        "macro-F1, per-class precision/recall, calibration (ECE) and throughput. See docs/reeval.md.",
    )
    _add_option_flags(p)
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--store",
        metavar="URL",
        help="SQL store URL: store this run in reeval_runs, and use the first stored run of the model and data "
        "set as the baseline when --baseline-accuracy is not given",
    )
    gates = p.add_argument_group(
        "gates",
        "bars the run must meet, for CI: after the report, one line per bar checked on stderr "
        "('gate passed: ...' or 'gate failed: ...'); exit 1 when any bar is missed, 0 when all are met",
    )
    for f in fields(Gates):  # one flag per field of Gates, which validates them again for the Python API
        gates.add_argument(flag(f.name), dest=f.name, type=_share, metavar="X", help=f.metadata["help"])
    add_config_flags(p, tokenizer=False)  # --config: its [reeval] section gives the defaults of the flags above
    p.set_defaults(func=reeval_command)

    q = subparsers.add_parser(
        "quantize",
        help="write a dynamically quantized INT8 copy of an ONNX model",
        description="Quantize an ONNX model's weights to INT8 with onnxruntime's dynamic quantization "
        "(per output channel unless --per-tensor). Judge the result with: nlpmon reeval --candidate OUT.",
    )
    q.add_argument("model", type=Path, help="the FP32 .onnx model")
    q.add_argument("-o", "--output", required=True, type=Path, help="where to write the quantized model")
    q.add_argument(
        "--per-tensor", action="store_true", help="one scale per weight tensor instead of per output channel"
    )
    q.add_argument("--reduce-range", action="store_true", help="7-bit weights (can help on CPUs without VNNI)")
    q.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    q.set_defaults(func=quantize_command)


def _fail(command: str, exc: BaseException) -> int:
    print(f"nlpmon {command}: error: {exc}", file=sys.stderr)
    return 2


def reeval_command(args: argparse.Namespace) -> int:
    """Handle ``nlpmon reeval``."""
    from monitor.config.reeval import Baseline
    from monitor.reeval.job import run_reeval
    from monitor.reeval.options import options_from
    from monitor.reeval.report import ProgressBar, format_table

    from monitor.logs import setup_logging

    bar = None
    store = None
    try:
        config = config_from_args(args, {"source.kind": "stdin"})
        setup_logging(config.logging.level, config.logging.format)
        settings = _settings(args, config.reeval if args.config or args.set else None)
        gates = _gates(args)
        baseline = Baseline(accuracy=args.baseline_accuracy) if args.baseline_accuracy is not None else None
        if args.traffic is not None and args.candidate is None:
            raise ValueError("--traffic needs --candidate: it compares the two models on logged traffic")
        traffic = ()
        if args.traffic is not None:
            from monitor.reeval.traffic import read_traffic_texts

            sample = read_traffic_texts(args.traffic, limit=args.traffic_sample, model=args.model_name)
            traffic = sample.texts
            if sample.invalid:
                reasons = ", ".join(f"{k}: {v}" for k, v in sorted(sample.invalid.items()))
                print(f"nlpmon reeval: {args.traffic}: skipped invalid events ({reasons})", file=sys.stderr)
        if args.store:
            store, baseline = _open_store(args, baseline)
        options = options_from(settings, baseline=baseline, traffic_texts=traffic)
        if not args.quiet and sys.stderr.isatty():
            bar = ProgressBar(sys.stderr)
        started_at_ms = time.time_ns() // 1_000_000
        result = run_reeval(options, progress=bar)
    except (ReevalError, ValueError, UsageError) as exc:
        if store is not None:
            store.close()
        return _fail("reeval", exc)
    finally:
        if bar is not None:
            bar.close()
    if args.format == "json":
        print(json.dumps(result.to_dict(), allow_nan=False))
    else:
        sys.stdout.write(format_table(result))
    code = _save_run(store, result, started_at_ms) if store is not None else 0
    return _report_gates(result, gates) if code == 0 else code


def _gates(args: argparse.Namespace) -> Gates:
    """The bars of the command line, refused before the run where they cannot be checked."""
    gates = Gates(**{f.name: getattr(args, f.name) for f in fields(Gates)})
    needs = gates.candidate_flags()
    if needs and args.candidate is None:
        verb = "judges" if len(needs) == 1 else "judge"
        raise UsageError(f"{', '.join(needs)} {verb} a candidate model: give --candidate")
    if gates.max_drop is not None and args.baseline_accuracy is None and not args.store:
        raise UsageError("--max-drop needs a baseline: --baseline-accuracy X, or --store URL holding an earlier run")
    return gates


def _report_gates(result, gates: Gates) -> int:
    """One line per bar checked, on stderr (stdout is the report); 1 when any bar is missed."""
    outcomes = check_gates(result, gates)
    for outcome in outcomes:
        print(f"nlpmon reeval: {outcome.line}", file=sys.stderr)
    return 0 if all(o.passed for o in outcomes) else 1


def _settings(args: argparse.Namespace, section) -> dict:
    """The job's settings: a flag given on the command line, else the ``[reeval]`` key of ``section`` (the
    config's, with --config or --set), else the flag's default; raises UsageError for a missing required one."""
    settings, missing = {}, []
    for name, f in option_fields().items():
        if f.metadata["flag"] is None:
            continue
        value = getattr(args, name)
        if isinstance(value, _Unset):
            value = value.value
            if section is not None and f.metadata["config"]:
                configured, none_as = getattr(section, name), f.metadata["none_as"]
                if not (f.default is MISSING and configured == "") and not (none_as is not None and configured == none_as):
                    value = Path(configured) if f.metadata["arg"] == "path" else configured
        if value is None and f.default is MISSING:
            missing.append(f.metadata["flag"] or "--" + name.replace("_", "-"))
        settings[name] = value
    if missing:
        raise UsageError(f"required: {', '.join(missing)} (a flag, or the [reeval] section of --config)")
    vars(args).update(settings)  # the handler reads some of them from args (baseline, traffic, store names)
    return settings


def _open_store(args: argparse.Namespace, baseline):
    """Open ``--store``; without a configured baseline, take the first stored successful run of this model
    and data set (labels as the result will have them)."""
    from monitor.config.reeval import Baseline
    from sinks.sql import SqlStore, StoreUnavailable

    store = SqlStore(args.store)
    if baseline is not None:
        return store, baseline
    name = args.model_name or args.model.stem
    dataset = args.dataset_name or args.data.stem
    try:
        first = store.reeval_runs(name, dataset=dataset, outcome="success", limit=1)
    except StoreUnavailable as exc:
        store.close()
        raise ReevalError(f"cannot reach the store: {exc}") from None
    if first and first[0].result:
        baseline = Baseline.from_result(first[0].result, source="first_run", run=str(first[0].id))
    return store, baseline


def _save_run(store, result, started_at_ms: int) -> int:
    from sinks.sql import StoreUnavailable

    try:
        with store:
            run_id = store.save_reeval_run(
                model=result.model_name, version=result.model_version or "unversioned", dataset=result.dataset,
                started_at_ms=started_at_ms, trigger="cli", outcome="success", result=result.to_dict(),
                duration_seconds=result.duration_seconds,
            )
    except StoreUnavailable as exc:
        return _fail("reeval", f"the run is not stored: cannot reach the store: {exc}")
    print(f"stored as re-evaluation run {run_id}", file=sys.stderr)
    return 0


def quantize_command(args: argparse.Namespace) -> int:
    """Handle ``nlpmon quantize``."""
    from monitor.reeval.quantize import quantize_model

    try:
        res = quantize_model(args.model, args.output, per_channel=not args.per_tensor, reduce_range=args.reduce_range)
    except ReevalError as exc:
        return _fail("quantize", exc)
    if args.format == "json":
        print(json.dumps(res.to_dict()))
    else:
        mode = "per-tensor" if args.per_tensor else "per-channel"
        print(
            f"wrote {res.output} ({res.bytes_before / 1e6:.2f} MB -> {res.bytes_after / 1e6:.2f} MB, "
            f"{mode} {res.weight_type} weights{', reduced range' if res.reduce_range else ''}, "
            f"{res.integer_nodes} integer nodes)\n"
            f"judge it with: nlpmon reeval --model {res.source} --candidate {res.output} --tokenizer DIR --data FILE"
        )
    return 0
