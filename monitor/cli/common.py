"""What every ``nlpmon`` subcommand shares: exit codes, the usage error, the config flags and their loading.

Subcommand modules (``main``, ``ab``, ``reeval``) import from here and never from each other.
"""

from __future__ import annotations

import argparse

from monitor.config import ConfigError, load_config

__all__ = ["EXIT_OK", "EXIT_INTERNAL", "EXIT_USAGE", "UsageError", "add_config_flags", "config_from_args"]

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem the user can fix (bad flag, missing file, incompatible profile): exit 2, one line, no traceback."""


def add_config_flags(p: argparse.ArgumentParser, *, source: bool = True) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="TOML config file (see docs/config.md)")
    p.add_argument(
        "--set", metavar="SECTION.KEY=VALUE", action="append", default=[],
        help="override one config key, e.g. --set window.min_events=100 (repeatable; beats file and environment)",
    )  # fmt: skip
    p.add_argument("--tokenizer", metavar="DIR", help="served model's tokenizer directory (tokenizer.path)")
    p.add_argument("--log-format", choices=("text", "json"), help="log format (logging.format)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log level (logging.level)")


# -- helpers -------------------------------------------------------------------------------------------------
def _overrides(args, extra: dict | None = None) -> dict:
    out: dict = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise UsageError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    if args.tokenizer:
        out["tokenizer.path"] = args.tokenizer
    if args.log_format:
        out["logging.format"] = args.log_format
    if args.log_level:
        out["logging.level"] = args.log_level
    out.update({k: v for k, v in (extra or {}).items() if v is not None})
    return out


def config_from_args(args, extra: dict | None = None):
    try:
        return load_config(args.config, overrides=_overrides(args, extra))
    except ConfigError as exc:
        raise UsageError(f"config error: {exc}") from None
