"""Options of one run from the values a surface gives: the ``nlpmon reeval`` flags or the ``[reeval]`` section.

The settings are defined once, as the fields of :class:`monitor.config.reeval.ReevalOptions`; a surface only
spells some values its own way, and the field says how (``none_as``: TOML's "not set"; ``label_map``: the
text of ``--label-map``, parsed here because parsing may read a JSON file).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.config.reeval import Baseline, ReevalOptions, option_fields
from monitor.reeval.data import parse_label_map

__all__ = ["ReevalOptions", "Baseline", "options_from", "options_from_config"]


def options_from(values: Mapping[str, Any], **inputs: Any) -> ReevalOptions:
    """Build options from settings as the flags give them (``None``: not set), plus the run's ``inputs``."""
    settings = dict(values)
    if settings.get("label_map") is not None:
        settings["label_map"] = tuple(parse_label_map(settings["label_map"]).items())
    return ReevalOptions(**{**settings, **inputs})


def options_from_config(section, **inputs: Any) -> ReevalOptions:
    """Build options from the ``[reeval]`` section (a ``ReevalConfig``): its keys that are job settings."""
    values = {}
    for name, f in option_fields().items():
        if f.metadata["config"]:
            value, none_as = getattr(section, name), f.metadata["none_as"]
            values[name] = None if none_as is not None and value == none_as else value
    return options_from(values, **inputs)
