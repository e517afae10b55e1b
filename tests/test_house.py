"""The house's structure: no import cycle in netcheck, and a quality model that does no I/O.

Imports are read from the source (every `import`, at module level or inside a function, since a
lazy import still ties two modules together), not from what a run happens to load.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "netcheck"
IO_MODULES = frozenset({
    "socket", "ssl", "asyncio", "selectors", "subprocess", "sqlite3", "http", "urllib.request", "shutil",
    "tempfile", "pathlib", "io", "aiohttp", "aiortc", "aioice", "psutil", "influxdb_client", "speedtest",
})
"""Modules that open sockets, files or processes: none of them may be reached from netcheck/quality."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, absolute names: `from a import b` is a.b where b is a module of
    netcheck (a package's __init__ is not what a submodule import means), else a."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                names.add(submodule if is_module(submodule) else node.module)
    return names


def netcheck_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {imported for imported in imports_of(path) if imported in modules and imported != name}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path a → … → a, or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_netcheck_has_no_import_cycle() -> None:
    cycle = find_cycle(netcheck_graph())
    assert cycle is None, " → ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_quality_imports_nothing_that_does_io() -> None:
    graph = netcheck_graph()
    reached: set[str] = set()
    todo = [name for name in graph if name.startswith("netcheck.quality")]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(graph[name])
    offenders = {}
    for name in reached:
        path = PACKAGE.parent / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = PACKAGE.parent / name.replace(".", "/") / "__init__.py"
        bad = {imported for imported in imports_of(path) if imported.split(".")[0] in IO_MODULES
               or imported in IO_MODULES}
        calls_open = any(isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open"
                         for node in ast.walk(ast.parse(path.read_text())))
        if bad or calls_open:
            offenders[name] = sorted(bad) + (["open()"] if calls_open else [])
    assert not offenders, offenders
    assert "netcheck.quality.assess" in reached and "netcheck.results" in reached


# --- the package map (docs/design-notes.md, "The house"): what each part may import --------------------

ROOT_MODULES = frozenset(path.stem for path in PACKAGE.glob("*.py")) - {"__init__"}
ROOT = frozenset({"netcheck"}) | ROOT_MODULES - {"check", "__main__"}
"""What any root module may import: the others (the package's own `__version__` too), not `check`."""
SERVER_PARTS = frozenset({"server", "server.hub", "server.legs"})
MAP: dict[str, frozenset[str]] = {
    # importer: the parts it may import, besides itself, the standard library and third parties
    **{module: ROOT for module in ROOT_MODULES},
    "check": ROOT | {"probes", "quality", "net"},
    "config": ROOT | {"quality", "av"},  # the thresholds it overrides, the video format it validates
    "__main__": frozenset({"cli"}),
    "net": frozenset({"errors"}),
    "av": frozenset({"errors"}),
    "probes": ROOT - {"config"} | {"net", "av"},
    "quality": frozenset({"model", "results", "errors"}),
    "store": ROOT,
    "session": ROOT | {"probes", "quality", "store", "net"},
    "browser": ROOT | {"probes", "quality"},
    "dashboards": frozenset({"quality"}),
    "server": ROOT | {"net", "av", "probes", "quality", "store", "session", "browser"} | SERVER_PARTS,
    "server.app": ROOT | {"net", "av", "probes", "quality", "store", "session", "browser"} | SERVER_PARTS,
    "server.hub": ROOT | {"net", "session", "store", "server"},
    "server.legs": ROOT | {"net", "av", "browser", "quality", "session", "store", "server", "server.hub"},
    "cli": ROOT | {"check", "net", "av", "probes", "quality", "store", "session", "browser", "dashboards",
                   "server", "server.app", "server.hub", "server.legs"},
}
"""The map's table as allow-lists: nothing imports `cli` (only `__main__`), `browser` and `session` never
`server`, `net` and `av` only `errors`, `quality` only the data it judges (and no I/O, below), the hub and
the legs never `server.app` and the hub never the legs."""


def part_of(module: str) -> str:
    """The map's row of a module: a root module by its name, a package by its own, the server by its parts."""
    parts = module.split(".")
    if len(parts) == 1:
        return "netcheck"
    if parts[1] == "server":
        return f"server.{parts[2]}" if len(parts) > 2 and parts[2] in ("app", "hub", "legs") else "server"
    return parts[1]


def map_violations(graph: dict[str, set[str]], table: dict[str, frozenset[str]]) -> list[str]:
    """Every import of one part by another that the table does not allow, as "a → b"."""
    found = []
    for importer, imported in sorted(graph.items()):
        for target in sorted(imported):
            own, other = part_of(importer), part_of(target)
            if own != other and other not in table.get(own, frozenset()):
                found.append(f"{importer} → {target}")
    return found


def test_every_import_keeps_to_the_package_map() -> None:
    graph = netcheck_graph()
    assert {part_of(name) for name in graph} - {"netcheck"} <= set(MAP), "a part the map does not know"
    assert map_violations(graph, MAP) == []


def test_the_map_check_finds_a_forbidden_import() -> None:
    graph = {"netcheck.browser.tab": {"netcheck.server.app", "netcheck.model"},
             "netcheck.net.wire": {"netcheck.errors"}, "netcheck.server.hub.routes": {"netcheck.server.legs.leg"},
             "netcheck.session.watch": {"netcheck.cli.render"}}
    assert map_violations(graph, MAP) == ["netcheck.browser.tab → netcheck.server.app",
                                          "netcheck.server.hub.routes → netcheck.server.legs.leg",
                                          "netcheck.session.watch → netcheck.cli.render"]


MAX_ROOT_MODULES = 12


def test_at_most_12_modules_directly_under_netcheck() -> None:
    modules = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(modules) <= MAX_ROOT_MODULES, modules


def test_every_package_says_what_it_holds_and_what_it_may_import() -> None:
    """Each package's docstring has a line beginning "Holds:" and one beginning "May import:"."""
    missing = {}
    for init in sorted(PACKAGE.rglob("__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
        lines = [line.strip() for line in docstring.splitlines()]
        absent = [key for key in ("Holds:", "May import:") if not any(line.startswith(key) for line in lines)]
        if absent:
            missing[module_name(init)] = absent
    assert not missing, missing


# --- sizes: a module past ~400 lines is probably two concepts; a function past ~80, two steps ----------

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
LONG_ALLOWED: dict[str, str] = {
}
"""Module paths (relative to the repository) or `path:function` over the bounds, and why (said beside them too)."""


def oversized() -> list[str]:
    found = []
    sources = [*PACKAGE.rglob("*.py"), *(PACKAGE / "web").glob("*.js")]
    for path in sorted(sources):
        relative = str(path.relative_to(PACKAGE.parent))
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES and relative not in LONG_ALLOWED:
            found.append(f"{relative}: {len(text.splitlines())} lines")
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and f"{relative}:{node.name}" not in LONG_ALLOWED:
                    found.append(f"{relative}:{node.name}: {length} lines")
    return found


def test_no_module_over_400_lines_and_no_function_over_80_without_a_reason() -> None:
    assert oversized() == []
