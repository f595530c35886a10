"""The house rules of docs/architecture.md, checked on the source: rooms, who may import whom, sizes.

Imports are read with ``ast`` from every module of ``monitor``, ``sinks`` and ``detectors``, function-level
imports included (a lazy import is still a dependency). An edge goes to the module named, or to the
submodule when ``from package import name`` names one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("monitor", "sinks", "detectors")
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in MODULES and t != name:
                found.add(t)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _in(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


def test_no_import_cycle():
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                cycles.append(sorted(scc))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "detectors")))
def test_detectors_import_nothing_of_the_daemon(module):
    assert {d for d in GRAPH[module] if not _in(d, "detectors")} == set()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "sinks")))
def test_sinks_import_only_result_types_from_monitor(module):
    assert {d for d in GRAPH[module] if _in(d, "monitor") and d != "monitor.results"} == set()


# The one exception (docs/architecture.md): `nlpmon sample` writes the devkit's synthetic data and model, so a
# new user can try every command; it imports the generators lazily, so no other command ever loads them.
DEVKIT_EXCEPTION = "monitor.cli.sample"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "monitor") and not _in(m, "monitor.devkit")
                                          and m != DEVKIT_EXCEPTION))
def test_production_code_never_imports_the_devkit(module):
    assert {d for d in GRAPH[module] if _in(d, "monitor.devkit")} == set()


def test_the_sample_command_imports_only_the_generators_and_lazily():
    # Only the dispatcher imports the command, so its devkit import is reached from `nlpmon sample` alone.
    assert not [m for m in MODULES if DEVKIT_EXCEPTION in GRAPH[m] and m != "monitor.cli.main"]
    devkit = {d for d in GRAPH[DEVKIT_EXCEPTION] if _in(d, "monitor.devkit")}
    assert devkit and all(_in(d, "monitor.devkit.synth") for d in devkit)
    tree = ast.parse(MODULES[DEVKIT_EXCEPTION].read_text())
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not [n for n in top_level if "devkit" in ast.unparse(n)], "the devkit is imported inside cmd_sample only"


def test_the_client_is_only_what_a_serving_app_needs():
    deps = {d for m in MODULES if _in(m, "monitor.client") for d in GRAPH[m]}
    assert {d for d in deps if not _in(d, "monitor.client")} <= {"monitor.ingest.events"}


def test_at_most_eight_modules_directly_in_monitor():
    top = sorted(p.name for p in (ROOT / "monitor").glob("*.py"))
    assert len(top) <= 8, top


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_600_lines(module):
    assert len(MODULES[module].read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("module", sorted(m for m in MODULES if (_in(m, "monitor") and not _in(m, "monitor.devkit"))
                                          or _in(m, "sinks")))
def test_no_statistics_outside_detectors(module):
    tree = ast.parse(MODULES[module].read_text())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            bad += [n for n in names if n.split(".")[0] == "scipy"]
        if isinstance(node, ast.Attribute) and node.attr in {"percentile", "quantile", "median", "nanpercentile"}:
            bad.append(node.attr)
    assert bad == []


def test_every_package_has_a_docstring_and_all():
    for name, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), name
        assert any((isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets))
                   or (isinstance(n, ast.AnnAssign) and getattr(n.target, "id", None) == "__all__")
                   for n in tree.body), name


# -- the rooms of monitor/ and the "may import" column of docs/architecture.md --------------------------------
DOC = ROOT / "docs" / "architecture.md"
# A row of the rooms table: | `monitor/<room>/` or `monitor/<room>.py` (more paths may follow) | what | may import |
ROW = re.compile(r"^\| `monitor/(?P<room>[a-z_]+)(?:/|\.py)`[^|]*\|[^|]*\|(?P<allowed>[^|]*)\|\s*$")
ALIASES = {"results_reeval": "results"}  # a module of a room that is one file: the results room has two


def room_of(module: str) -> str:
    """The room a module lives in: ``monitor.windowing.streams`` -> ``windowing``; detectors and sinks are one each."""
    parts = module.split(".")
    if parts[0] != "monitor":
        return parts[0]
    if len(parts) == 1:
        return "monitor"  # the package itself (__version__)
    return ALIASES.get(parts[1], parts[1])


def documented_rooms() -> dict[str, set[str] | None]:
    """Room -> what its row lets it import (rooms, or ``room.module`` for one module); None: anything."""
    rows: dict[str, set[str] | None] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            allowed = m.group("allowed")
            rows[m.group("room")] = None if "anything" in allowed else set(re.findall(r"`([a-z_.]+)`", allowed))
    return rows


ROOMS = documented_rooms()


def _room_imports(room: str) -> dict[str, set[str]]:
    """What the modules of ``room`` import outside it: allowed-table token -> the module edges behind it."""
    out: dict[str, set[str]] = {}
    for module, deps in GRAPH.items():
        if not _in(module, "monitor") or room_of(module) != room:
            continue
        for dep in deps:
            if room_of(dep) != room:
                out.setdefault(room_of(dep), set()).add(f"{module} -> {dep}")
    return out


def test_every_room_has_a_row_and_every_row_a_room():
    code = {room_of(m) for m in MODULES if _in(m, "monitor") and m != "monitor"}
    assert set(ROOMS) == code


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_a_room_imports_exactly_what_its_row_says(room):
    """Every import across rooms is in the row, and every room in the row is imported (no stale permission)."""
    allowed = ROOMS[room]
    if allowed is None:
        return
    used = _room_imports(room)
    # `runtime.sources` in a row allows that one module of a room, not the whole room.
    narrow = {a for a in allowed if "." in a}
    for token in narrow:
        edges = used.get(token.split(".")[0], set())
        outside = {e for e in edges if not e.split(" -> ")[1].removeprefix("monitor.").startswith(token)}
        assert outside == set(), f"{room} may import only {token} of its room: {sorted(outside)}"
    unexpected = {r: sorted(e) for r, e in used.items() if r not in allowed and r not in {a.split(".")[0] for a in narrow}}
    assert unexpected == {}, f"imports not in the row of {room} in docs/architecture.md"
    stale = {a.split(".")[0] for a in allowed} - set(used)
    assert stale == set(), f"the row of {room} allows what it never imports: {sorted(stale)}"


def _defs(kinds):
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "devkit" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, kinds):
                    yield path.relative_to(ROOT), node


MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 80  # argument parsers excepted: one add_argument call per flag is the clearest form
MAX_POSITIONAL = 4  # self and cls not counted; more is a sign the behaviour belongs to the object


def test_no_class_over_300_lines():
    big = [f"{p}: {n.name} {n.end_lineno - n.lineno + 1}" for p, n in _defs(ast.ClassDef)
           if n.end_lineno - n.lineno + 1 > MAX_CLASS_LINES]
    assert big == []


def test_no_function_over_80_lines():
    big = [f"{p}: {n.name} {n.end_lineno - n.lineno + 1}" for p, n in _defs((ast.FunctionDef, ast.AsyncFunctionDef))
           if n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES and "parser" not in n.name]
    assert big == []


def test_no_function_of_the_daemon_takes_more_than_4_positional_parameters():
    many = []
    for path, node in _defs((ast.FunctionDef, ast.AsyncFunctionDef)):
        if path.parts[0] == "detectors":  # statistics take their sufficient statistics as arguments
            continue
        args = node.args.posonlyargs + node.args.args
        positional = [a.arg for a in args if a.arg not in ("self", "cls")]
        if len(positional) > MAX_POSITIONAL:
            many.append(f"{path}: {node.name}({', '.join(positional)})")
    assert many == []


def test_no_private_name_imported_across_modules():
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found += [f"{name}: from {node.module} import {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []
