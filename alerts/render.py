#!/usr/bin/env python3
"""Render nlpmon's Prometheus rules from their one source, alerts/src/nlpmon.rules.yml (a small mixin).

Standard library only, so it runs wherever the rules are installed (no virtual environment, no jsonnet).

    python3 alerts/render.py                                   # the default, as committed in alerts/
    python3 alerts/render.py --selector 'job="ml/nlpmon"' \\
        --runbook-url https://git.example.org/ml/nlpmon/-/blob/main/docs/runbooks.md -o nlpmon.rules.yml

``make alerts`` rewrites alerts/nlpmon.rules.yml with the defaults; tests/test_alerts.py checks that the
committed file equals a fresh default render and that another selector/URL passes ``promtool check rules``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["DEFAULT_SELECTOR", "DEFAULT_RUNBOOK_URL", "SOURCE", "render", "parse_selector"]

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "src" / "nlpmon.rules.yml"
DEFAULT_OUTPUT = HERE / "nlpmon.rules.yml"
DEFAULT_SELECTOR = 'job="nlpmon"'
# A placeholder for where the repository is hosted: installations pass their own (--runbook-url).
DEFAULT_RUNBOOK_URL = "https://github.com/nlpmon/nlpmon/blob/main/docs/runbooks.md"
# NlpRealisedAccuracyLow (docs/runbooks.md): how far below its baseline realised accuracy may fall, and how many
# labelled predictions a window needs before it counts (--realised-accuracy-margin, --realised-min-labelled).
DEFAULT_REALISED_MARGIN = 0.05
DEFAULT_REALISED_MIN_LABELLED = 100

# One PromQL label matcher with a double-quoted value: name, operator, value (escapes kept as written).
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\\n]|\\.)*)"\s*')
_PARAM = re.compile(r"\$\{([a-z_]+)\}")


def parse_selector(selector: str) -> list[tuple[str, str, str]]:
    """Return the matchers of ``selector`` (``name="v",other=~"re"``) as (name, op, value); ValueError if bad.

    Values must be double-quoted. ``{{``/``}}`` are refused: the selector is also written into annotation
    text, where Prometheus would read them as a template action.
    """
    if "{{" in selector or "}}" in selector:
        raise ValueError(f"the selector {selector!r} contains '{{{{' or '}}}}', which Prometheus's annotation "
                         "templates would read as an action")
    body = selector.strip()
    if body.startswith("{") and body.endswith("}"):
        raise ValueError(f"give the selector's matchers without braces: {body[1:-1]!r}, not {selector!r}")
    matchers, pos = [], 0
    while True:
        m = _MATCHER.match(body, pos)
        if m is None:
            raise ValueError(f"the selector {selector!r} is not a comma-separated list of label matchers "
                             'with double-quoted values, like job="nlpmon",namespace="ml"')
        matchers.append(m.groups())
        pos = m.end()
        if pos == len(body):
            break
        if body[pos] != ",":
            raise ValueError(f"expected ',' after {body[:pos]!r} in the selector {selector!r}")
        pos += 1
    if all(op in ("!=", "!~") or (op == "=~" and value in ("", ".*")) for _, op, value in matchers):
        raise ValueError(f"the selector {selector!r} matches everything: give at least one matcher that "
                         'selects nlpmon, such as job="nlpmon"')
    return matchers


def _check_runbook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the runbook URL must be absolute (http or https), so that it is a link in Slack "
                         f"and PagerDuty: {url!r}")
    if parts.fragment or url.endswith("#"):
        raise ValueError(f"the runbook URL must have no '#fragment': each alert appends its own ({url!r})")
    if any(c in url for c in ' "\n{}'):
        raise ValueError(f"the runbook URL contains a space, quote or brace: {url!r}")
    return url


def _check_realised(margin: float, min_labelled: int) -> dict[str, str]:
    if not 0 < margin < 1:
        raise ValueError(f"the realised-accuracy margin must be between 0 and 1 (a share), got {margin!r}")
    if isinstance(min_labelled, bool) or not isinstance(min_labelled, int) or min_labelled < 1:
        raise ValueError(f"the realised-accuracy minimum labelled count must be an integer >= 1, got {min_labelled!r}")
    return {"realised_accuracy_margin": repr(float(margin)), "realised_min_labelled": str(min_labelled)}


def render(source: str, *, selector: str = DEFAULT_SELECTOR, runbook_url: str = DEFAULT_RUNBOOK_URL,
           realised_margin: float = DEFAULT_REALISED_MARGIN,
           realised_min_labelled: int = DEFAULT_REALISED_MIN_LABELLED) -> str:
    """Return the rule file for ``selector`` and ``runbook_url`` (and the realised-accuracy alert's margin and
    minimum labelled count) from the text of the source file."""
    matchers = parse_selector(selector)
    promql = ",".join(f'{name}{op}"{value}"' for name, op, value in matchers)
    # Inside a Go template's `printf "..."`: a Go string literal (\ and " escaped) that is a format (% doubled).
    in_printf = promql.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    params = {"selector": promql, "selector_printf": in_printf, "runbook_url": _check_runbook_url(runbook_url),
              **_check_realised(realised_margin, realised_min_labelled)}

    def substitute(m: re.Match) -> str:
        if m.group(1) not in params:
            raise ValueError(f"unknown parameter ${{{m.group(1)}}} in the rules source")
        return params[m.group(1)]

    start = re.search(r"^groups:", source, flags=re.M)
    if start is None:
        raise ValueError("the rules source has no top-level 'groups:'")
    body = source[start.start():]  # the source's header explains the parameters; the output has its own
    header = (
        "# GENERATED by alerts/render.py from alerts/src/nlpmon.rules.yml -- edit the source, then `make alerts`.\n"
        f"#   selector:    {promql}\n"
        f"#   runbook URL: {runbook_url}\n"
        "#\n"
        "# nlpmon's Prometheus recording and alerting rules. Load with `rule_files: [\"<repo>/alerts/*.yml\"]`: only\n"
        "# rule files live directly in alerts/ (promtool unit tests: alerts/tests/, the rules' source: alerts/src/,\n"
        "# an Alertmanager example: alerts/alertmanager/alertmanager.yml).\n"
        "# Metric names and labels: docs/metrics.md. Thresholds, how to tune them, severities: docs/runbooks.md.\n"
        "# Severities: critical pages, warning opens a ticket, info notifies no one (alertmanager.yml).\n\n"
    )
    rendered = _PARAM.sub(substitute, body)
    if "${" in rendered:
        line = next(ln for ln in rendered.splitlines() if "${" in ln)
        raise ValueError(f"a parameter is not written ${{name}} in the rules source: {line.strip()!r}")
    return header + rendered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render nlpmon's Prometheus rules from alerts/src/nlpmon.rules.yml.")
    parser.add_argument("--selector", default=DEFAULT_SELECTOR,
                        help=f"label matchers selecting nlpmon's series, without braces (default: {DEFAULT_SELECTOR})")
    parser.add_argument("--runbook-url", default=DEFAULT_RUNBOOK_URL,
                        help="absolute URL of docs/runbooks.md; alerts append #<alert name> "
                             f"(default: {DEFAULT_RUNBOOK_URL})")
    parser.add_argument("--realised-accuracy-margin", type=float, default=DEFAULT_REALISED_MARGIN,
                        help="NlpRealisedAccuracyLow fires when realised accuracy is this far below its baseline "
                             f"(default: {DEFAULT_REALISED_MARGIN})")
    parser.add_argument("--realised-min-labelled", type=int, default=DEFAULT_REALISED_MIN_LABELLED,
                        help="... in a window with at least this many labelled predictions "
                             f"(default: {DEFAULT_REALISED_MIN_LABELLED})")
    parser.add_argument("-o", "--output", default=str(DEFAULT_OUTPUT),
                        help="file to write, '-' for stdout (default: alerts/nlpmon.rules.yml)")
    args = parser.parse_args(argv)
    try:
        text = render(SOURCE.read_text(encoding="utf-8"), selector=args.selector, runbook_url=args.runbook_url,
                      realised_margin=args.realised_accuracy_margin, realised_min_labelled=args.realised_min_labelled)
    except ValueError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
