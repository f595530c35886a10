"""The settings of a re-evaluation, each defined once: :class:`ReevalOptions`, and the ``[reeval]`` section.

Every setting of the job is one field of :class:`ReevalOptions` with its name, its default, its limits and
its help text (:func:`setting`). The ``nlpmon reeval`` flags are generated from these fields
(``monitor.cli.reeval``), the ``[reeval]`` keys the job shares are declared with :func:`option_key`, which
takes default and limits from the field, and the daemon turns its section back into options with
``monitor.reeval.options.options_from_config``. Where a surface spells a value differently the field says so
once: ``none_as`` is how TOML writes "not set" (it has no null: ``max_length = 0``), ``daemon_default`` a
default the sidecar needs that the CLI does not (``threads = 1``: the run shares the CPUs with the consumer).

This module is the config room's: standard library only, so the loader can use it (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Baseline", "ReevalOptions", "ReevalConfig", "PROVIDERS", "setting", "option_key", "option_fields"]

PROVIDERS = ("auto", "cuda", "cpu")


def setting(default: Any = MISSING, help: str = "", *, flag: str | None = "", arg: str | None = None,
            action: str | None = None, config: bool = True, none_as: Any = None, daemon_default: Any = MISSING,
            min: float | None = None, max: float | None = None, choices: tuple | None = None):
    """One setting of :class:`ReevalOptions`: a dataclass field whose metadata the CLI and the config read.

    ``flag``: the ``nlpmon reeval`` flag ("" derives ``--field-name``, None: no flag); ``help`` its help text
    (argparse expands ``%(default)s``); ``arg`` how the flag's text is parsed (``path``, ``positive_int``,
    ``non_negative_int``, ``fraction``; None: a string); ``action`` an argparse action instead. ``config``:
    whether it is a ``[reeval]`` key, with the limits ``min``/``max``/``choices`` the loader checks.
    """
    meta = {"help": help, "flag": flag, "arg": arg, "action": action, "config": config, "none_as": none_as,
            "daemon_default": daemon_default,
            # what monitor.config's loader reads from a section's field
            "min": min, "max": max, "choices": choices, "secret": False, "secret_url": False, "kind": None}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Baseline:
    """What the current run is compared against: a configured accuracy or a stored earlier run.

    ``source`` says which (``"configured"``, ``"first_run"``, ...); ``run`` can carry an identifier of the
    stored run (a SQL row id, a timestamp) so that the comparison names what it compared to.
    """

    accuracy: float
    macro_f1: float | None = None
    source: str = "configured"
    run: str | None = None

    def __post_init__(self):
        for name in ("accuracy", "macro_f1"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"baseline {name} must be a number in [0, 1], got {value!r}")

    @classmethod
    def from_result(cls, result: Any, *, source: str = "first_run", run: str | None = None) -> Baseline:
        """Use an earlier run (a ``ReevalResult``, a ``ReevalReport`` or a stored ``to_dict()``) as the baseline."""
        d = result.to_dict() if hasattr(result, "to_dict") else result
        try:
            return cls(
                accuracy=float(d["accuracy"]), macro_f1=d.get("macro_f1"), source=source, run=run or d.get("started_at")
            )
        except (KeyError, TypeError):
            raise ValueError(
                "a stored re-evaluation result must hold an 'accuracy' figure to serve as a baseline"
            ) from None


@dataclass(frozen=True, kw_only=True)
class ReevalOptions:
    """Everything one re-evaluation needs; validated on construction, no I/O.

    ``label_map`` is the parsed ``--label-map`` (name -> class index); without it the labels come from
    ``config.json`` id2label next to the model or in the tokenizer directory, or must be class indices.
    ``max_length=None`` uses the tokenizer's ``model_max_length`` (512 when it has none).
    ``flip_check_limit`` caps how many sentences the candidate re-runs one at a time (a seeded sample).
    ``model_name``, ``model_version`` and ``dataset_name`` label the result (default: file stems).
    ``baseline_accuracy`` is a configured baseline; ``baseline`` (a stored run's, say) takes its place.
    ``traffic_texts`` are logged texts of recent real traffic (unlabelled); with a ``candidate`` both models
    score them too and the result reports their agreement there (``candidate.traffic``); ``traffic_sample``
    is how many are gathered. The texts themselves never appear in the result.
    """

    # The settings, in the order of `nlpmon reeval --help`.
    model: Path = setting(help="the served model, an .onnx file", arg="path")
    tokenizer: Path = setting(help="local directory that AutoTokenizer loads", arg="path")
    data: Path = setting(help="labelled held-out set: .jsonl, .csv or .tsv", arg="path")
    text_field: str = setting("text", "field/column holding the text (default: %(default)s)")
    label_field: str = setting("label", "field/column holding the label (default: %(default)s)")
    label_map: tuple[tuple[str, int], ...] | None = setting(
        None, "label name to class index: a JSON file or inline neg=0,pos=1 (default: id2label from config.json "
        "next to the model, else labels must be class indices)", none_as="")
    batch_size: int = setting(32, "sentences per model call (default: %(default)s)", arg="positive_int",
                              min=1, max=100_000)
    max_length: int | None = setting(None, "truncate at this many tokens (default: the tokenizer's limit, else 512)",
                                     arg="positive_int", none_as=0, min=0)
    provider: str = setting("auto", "onnxruntime execution provider (default: %(default)s)", choices=PROVIDERS)
    candidate: Path | None = setting(None, "a second model (e.g. the INT8 export) to compare on the same data",
                                     arg="path", none_as="")
    traffic_sample: int = setting(2000, "logged texts used from --traffic (default: %(default)s)", arg="positive_int",
                                  daemon_default=1000, min=0, max=100_000)
    baseline_accuracy: float | None = setting(None, "accuracy to compare against; the report shows the drop",
                                              arg="fraction", none_as=0.0, min=0, max=1)
    calibration_bins: int = setting(15, "equal-width confidence bins for ECE (default: %(default)s)",
                                    arg="positive_int", min=1, max=1000)
    flip_check_limit: int | None = setting(
        2000, "sentences the candidate re-runs at batch size 1 (default: %(default)s, 0 to skip)",
        arg="non_negative_int", config=False)
    sort_by_length: bool = setting(True, "batch in file order instead of by length (for comparisons)",
                                   flag="--no-sort", action="store_false", config=False)
    threads: int = setting(0, "onnxruntime intra-op threads (default: %(default)s, its own choice)",
                           arg="non_negative_int", daemon_default=1, min=0, max=1024)
    model_name: str | None = setting(None, "model name in the report (default: the model file's stem)",
                                     flag="--name", none_as="")
    model_version: str | None = setting(None, "model version in the report", daemon_default="unversioned")
    dataset_name: str | None = setting(None, "data set name in the report (default: the data file's stem)",
                                       none_as="")
    # What one run is given besides its settings.
    baseline: Baseline | None = None
    seed: int = 0
    traffic_texts: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("model", "tokenizer", "data", "candidate"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if not isinstance(self.traffic_texts, tuple):
            object.__setattr__(self, "traffic_texts", tuple(self.traffic_texts))
        if not all(isinstance(t, str) for t in self.traffic_texts):
            raise ValueError("traffic_texts must be strings")
        if isinstance(self.label_map, dict):
            object.__setattr__(self, "label_map", tuple(self.label_map.items()))
        if self.baseline is None and self.baseline_accuracy is not None:
            object.__setattr__(self, "baseline", Baseline(accuracy=self.baseline_accuracy, source="configured"))
        self._validate()

    def _validate(self) -> None:
        if not self.text_field or not self.label_field:
            raise ValueError("text_field and label_field must be non-empty")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2 (room for the special tokens), got {self.max_length}")
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, got {self.provider!r}")
        if self.calibration_bins < 1:
            raise ValueError(f"calibration_bins must be at least 1, got {self.calibration_bins}")
        if self.threads < 0:
            raise ValueError(f"threads must be 0 (onnxruntime's default) or more, got {self.threads}")
        if self.flip_check_limit is not None and self.flip_check_limit < 0:
            raise ValueError(f"flip_check_limit must be non-negative, got {self.flip_check_limit}")
        if self.traffic_sample < 0:
            raise ValueError(f"traffic_sample must be non-negative, got {self.traffic_sample}")

    @property
    def intra_op_threads(self) -> int:
        """The name onnxruntime gives ``threads`` (kept for callers of the old field)."""
        return self.threads


def option_fields() -> dict[str, dataclasses.Field]:
    """The settings of :class:`ReevalOptions` (the fields that carry a help text or a config key), by name."""
    return {f.name: f for f in dataclasses.fields(ReevalOptions) if "config" in f.metadata}


def option_key(name: str):
    """The ``[reeval]`` key of the setting ``name``: its default and limits as the config file writes them."""
    f = option_fields()[name]
    meta = f.metadata
    if not meta["config"]:
        raise ValueError(f"{name} is not a [reeval] key")
    if meta["daemon_default"] is not MISSING:
        default = meta["daemon_default"]
    elif f.default is MISSING:
        default = ""  # a path the daemon requires once enabled (checked by the loader)
    elif f.default is None:
        default = meta["none_as"]
    else:
        default = f.default
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ReevalConfig:
    """``[reeval]``: the daemon's re-evaluation (docs/config.md); the job's keys come from :class:`ReevalOptions`."""

    enabled: bool = False
    model: str = option_key("model")
    tokenizer: str = option_key("tokenizer")
    data: str = option_key("data")
    text_field: str = option_key("text_field")
    label_field: str = option_key("label_field")
    label_map: str = option_key("label_map")
    batch_size: int = option_key("batch_size")
    max_length: int = option_key("max_length")
    provider: str = option_key("provider")
    threads: int = option_key("threads")
    calibration_bins: int = option_key("calibration_bins")
    model_name: str = option_key("model_name")
    model_version: str = option_key("model_version")
    dataset_name: str = option_key("dataset_name")
    # When the daemon runs it: the triggers (docs/reeval.md, *In the daemon*).
    on_drift: bool = True
    cooldown_seconds: float = field(default=3600.0, metadata={"min": 0})
    interval_seconds: float = field(default=0.0, metadata={"min": 0})
    timeout_seconds: float = field(default=600.0, metadata={"min": 0.1})
    baseline_accuracy: float = option_key("baseline_accuracy")
    candidate: str = option_key("candidate")
    traffic_sample: int = option_key("traffic_sample")
    # Secret: only from the environment (NLPMON_REEVAL_TOKEN), refused in a file, redacted when shown.
    token: str = field(default="", metadata={"secret": True})
