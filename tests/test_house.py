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
