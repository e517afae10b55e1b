"""Shared fixtures: a real `netcheck serve` on loopback, a way to run the CLI as a user would, and
real InfluxDB / VictoriaMetrics servers. The helpers behind them live in tests/harness/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
import subprocess
import sys

import pytest

from tests.harness.servers import REPO, ServerProcess, start_serve, stop, subprocess_env
from tests.harness.tiers import OUT_OF_FAST, REAL_THINGS, command_lines_reached, measures, names_reached

if TYPE_CHECKING:
    from tests.harness.tsdb import InfluxDB1, VictoriaMetrics


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tiers (tests/harness/tiers.py): `servers`, `browser`, `netns`, `measures` from what a test
    and its fixtures reach; tests that build network namespaces are slow too; the rest is `fast`."""
    for item in items:
        function = getattr(item, "function", None)
        if function is not None:
            fixtures = getattr(item, "_fixtureinfo", None)
            definitions = fixtures.name2fixturedefs.values() if fixtures is not None else ()
            roots = [function, *(definition.func for chain in definitions for definition in chain)]
            names = names_reached(roots) | set(item.fixturenames)
            for marker in sorted({REAL_THINGS[name] for name in names if name in REAL_THINGS}):
                item.add_marker(marker)
            parameters = getattr(getattr(item, "callspec", None), "params", {}).values()
            command_lines = command_lines_reached(roots) | {
                frozenset(value) for value in parameters
                if isinstance(value, (tuple, list)) and all(isinstance(word, str) for word in value)}
            if measures(names, command_lines):
                item.add_marker(pytest.mark.measures)
        if item.get_closest_marker("netns") is not None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
        if not any(item.get_closest_marker(marker) for marker in OUT_OF_FAST):
            item.add_marker(pytest.mark.fast)


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    running = start_serve()
    yield running
    stop(running.process)


@pytest.fixture
def netcheck_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def run_cli(netcheck_home: Path):
    """Run `python cli.py ARGS` with its own NETCHECK_HOME; returns the CompletedProcess."""

    def run(*args: str, timeout: float = 60.0, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        env = subprocess_env(NETCHECK_HOME=str(netcheck_home), **(extra_env or {}))
        return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=REPO)

    return run


@pytest.fixture
def influx() -> Iterator["InfluxDB1"]:
    """A real InfluxDB 1.6.7 (auth on, database `netcheck`) on a free loopback port, fresh per test."""
    from tests.harness.tsdb import InfluxDB1

    with InfluxDB1() as running:
        yield running


@pytest.fixture
def vm() -> Iterator["VictoriaMetrics"]:
    """A real VictoriaMetrics (no dedup: duplicate samples stay visible) on a free loopback port."""
    from tests.harness.tsdb import VictoriaMetrics

    with VictoriaMetrics() as running:
        yield running


@pytest.fixture(scope="session")
def grafana_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple["InfluxDB1", Any]]:
    """A real InfluxDB 1.6.7 filled once by real agents and checks (tests/grafana_fill.py, ≈ 35 s),
    shared by the fill's own test and the dashboard tests."""
    from tests.harness.grafana_fill import fill_influx
    from tests.harness.tsdb import InfluxDB1

    with InfluxDB1() as running:
        yield running, fill_influx(running, tmp_path_factory.mktemp("grafana-fill"))


@pytest.fixture(scope="module")
def one_chromium_per_module() -> Iterator[None]:
    """For a browser module (`pytestmark = pytest.mark.usefixtures("one_chromium_per_module")`): one
    Playwright driver and one default Chromium for all its tests (tests/harness/browser.py)."""
    from tests.harness.browser import one_chromium_per_module as pool

    with pool():
        yield
