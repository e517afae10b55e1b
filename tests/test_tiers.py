"""The suite's tiers (tests/harness/tiers.py): a test lands outside the fast tier by what it reaches,
however it reaches it — in its body, through a helper or a class of its module, or a fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings, strategies

from tests.harness.browser import chromium
from tests.harness.redis_server import RedisServer
from tests.harness.servers import start_serve, stop
from tests.harness.tiers import command_lines_reached, markers_reached, measures, names_reached


def _starts_redis() -> None:
    with RedisServer():
        pass


def _calls_a_helper_that_starts_redis() -> None:
    _starts_redis()


class _Bench:
    """Starts coturn in a method that the test never names: the class is reached, so are its methods."""

    def __init__(self) -> None:
        self.turn = None

    def start(self) -> None:
        from tests.harness.coturn import Coturn

        self.turn = Coturn()


def _influx_fixture() -> Iterator[object]:
    from tests.harness.tsdb import InfluxDB1

    with InfluxDB1() as running:
        yield running


def _drives_a_page() -> None:
    with chromium() as browser:
        browser.new_page()


def _builds_a_namespace() -> None:
    from tests.harness.netns import client_namespace

    with client_namespace():
        pass


def _serves_on_loopback() -> None:
    running = start_serve()
    stop(running.process)


@given(strategies.integers())
@settings(max_examples=1)
def _a_hypothesis_test_that_starts_redis(number: int) -> None:
    _starts_redis()


@pytest.mark.parametrize(("roots", "markers"), [
    ([_starts_redis], {"servers"}),
    ([_calls_a_helper_that_starts_redis], {"servers"}),
    ([lambda: _Bench()], {"servers"}),
    ([lambda: None, _influx_fixture], {"servers"}),
    ([lambda: [_drives_a_page() for _ in range(2)]], {"browser"}),
    ([_builds_a_namespace], {"netns"}),
    ([_a_hypothesis_test_that_starts_redis], {"servers"}),
    ([_serves_on_loopback, _drives_a_page], {"browser"}),
    ([_serves_on_loopback], set()),
], ids=["body", "helper", "class", "fixture", "nested-code", "netns", "hypothesis", "serve-and-browser",
        "loopback-serve-only"])
def test_a_test_is_tiered_by_what_it_reaches(roots: list, markers: set[str]) -> None:
    assert markers_reached(roots) == markers


def test_conftest_tiers_every_collected_test(request: pytest.FixtureRequest) -> None:
    """This test reaches nothing real: the conftest marks it fast; `fast` never sits beside another tier."""
    assert request.node.get_closest_marker("fast") is not None
    for item in request.session.items:
        tiers = {marker.name for marker in item.iter_markers()} & {"fast", "slow", "netns", "servers", "browser",
                                                                   "measures"}
        assert tiers and (tiers == {"fast"} or "fast" not in tiers), (item.nodeid, tiers)


def _check_with_av(run_cli, url: str) -> None:
    run_cli("check", "--server", url, "--quick")


def _check_without_av_then_with_it(run_cli, url: str) -> None:
    run_cli("check", "--server", url, "--quick", "--no-av")
    run_cli("check", "--server", url, "--json")


def _probe_udp_and_a_check_without_av(run_cli, url: str) -> None:
    result = run_cli("probe", "udp", url, "--duration", "1s")
    check = run_cli("check", "--server", url, "--no-av")
    assert check.returncode == 0, (result, check)  # the assertion's text names `check`: not a command


def _opens_an_aiortc_peer() -> None:
    from aiortc import RTCPeerConnection

    RTCPeerConnection()


@pytest.mark.parametrize(("root", "measuring"), [
    (_check_with_av, True),
    (_check_without_av_then_with_it, True),
    (_probe_udp_and_a_check_without_av, False),
    (_opens_an_aiortc_peer, True),
    (_serves_on_loopback, False),
])
def test_a_test_that_measures_is_told_from_one_that_does_not(root, measuring: bool) -> None:
    assert measures(names_reached([root]), command_lines_reached([root])) == measuring

