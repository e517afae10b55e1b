"""The background agent end to end: a real `netcheck serve`, real agents, a real VictoriaMetrics; its
windows, its flags and its warnings (issue 5; issue 8 for the warnings). Its delivery — outages, kill -9,
bad configuration, 60 s to both APIs — is test_agent_delivery.py."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from netcheck.store.local import LocalStore
from tests.harness.agent import STORE, backlog, finish, start_agent, v2_env
from tests.harness.delivered import assert_victoria_has_exactly, outbox_pending, stored_points
from tests.harness.impairment import Impairment, Profile, Relay
from tests.harness.servers import ServerProcess
from tests.harness.tsdb import VictoriaMetrics


def test_agent_once_runs_one_window_and_delivers(server: ServerProcess, vm: VictoriaMetrics, tmp_path: Path) -> None:
    agent = start_agent(server, tmp_path / "home", v2_env(vm.url), "--once", "--window", "2s", "--av-every", "0",
                        "--json")
    code, stdout, stderr = finish(agent)
    assert code == 0, stderr
    window = json.loads(stdout)
    assert window["recommendation"] == "video" and window["measurements"]["udp"]["packets_sent"] == 16
    assert outbox_pending(tmp_path / "home" / STORE) == 0
    assert_victoria_has_exactly(vm, stored_points(tmp_path / "home" / STORE))


def test_sigint_finishes_the_window_and_exits_0(server: ServerProcess, tmp_path: Path) -> None:
    agent = start_agent(server, tmp_path / "home", {}, "--window", "1s", "--av-every", "0", "--json")
    assert agent.stdout is not None
    first_window = agent.stdout.readline()
    time.sleep(0.3)  # inside the second window
    agent.send_signal(signal.SIGINT)
    start_s = time.monotonic()
    code, stdout, stderr = finish(agent, timeout_s=15)
    assert code == 0, stderr
    assert time.monotonic() - start_s < 5.0
    assert len((first_window + stdout).splitlines()) == 2  # the interrupted window was finished and stored
    assert "stopped after 2 window(s)" in stderr


@pytest.mark.parametrize("args, message", [
    (("--window", "0.2s"), "--window"),
    (("--duration", "1s", "--window", "5s"), "shorter than one window"),
    (("--role", "admin"), "role"),
    (("--session", "x" * 200), "--session"),
])
def test_bad_agent_flags_are_one_line_usage_errors(server: ServerProcess, tmp_path: Path,
                                                   args: tuple[str, ...], message: str) -> None:
    agent = start_agent(server, tmp_path / "home", {}, *args)
    code, _, stderr = finish(agent, timeout_s=20)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and message in stderr


def test_influx_config_errors_name_the_variable(server: ServerProcess, tmp_path: Path) -> None:
    agent = start_agent(server, tmp_path / "home", {"NETCHECK_INFLUX_URL": "http://127.0.0.1:1",
                                                     "NETCHECK_INFLUX_API": "v3"})
    code, _, stderr = finish(agent, timeout_s=20)
    assert code == 2 and stderr.strip() == "netcheck: influx.api: must be v1 or v2, got 'v3'"


def test_a_full_store_drops_the_oldest_undelivered_points_and_says_so(server: ServerProcess, tmp_path: Path) -> None:
    home = tmp_path / "home"
    backlog(home, 1000)
    home.joinpath("config.toml").write_text("[store]\nmax_points = 1000\n")
    agent = start_agent(server, home, {}, "--once", "--window", "1s", "--av-every", "0")
    code, _, stderr = finish(agent)
    assert code == 0, stderr
    assert stderr.count("local store full") == 1
    with LocalStore(home / STORE) as store:
        stats = store.outbox_stats()
        oldest = store.pending_points(1)[0].point
    assert (stats.points_total, stats.dropped) == (1000, 4)  # the window's 4 points pushed out 4 old ones
    assert oldest.fields["rtt_p95_ms"] == 20.4  # backlog point 4 (0–3 dropped)


CLEAN = Profile("clean", Impairment(), Impairment())
LOSS_8_PCT = Profile("8pct-up", Impairment(loss_pct=8.0), Impairment())


@pytest.mark.slow
def test_loss_raises_a_vocal_tone_warning_stored_and_written_as_netcheck_warning(
        server: ServerProcess, tmp_path: Path) -> None:
    """The agent's side of in-call warnings, without the hub: 8 % loss on the UDP path raises a
    vocal-tone warning within 15 s, clean again clears it within 25 s; both are stored as session
    events and as `netcheck_warning` points."""
    relay = Relay((server.udp_host, server.udp_port), CLEAN, seed=5, max_clients=64).start()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "config.toml").write_text("[agent]\nudp_rate_pps = 25\n")  # see test_session_e2e.py
    try:
        agent = start_agent(server, tmp_path / "home", {}, "--window", "2s", "--av-every", "0", "--json",
                            "--udp-target", "%s:%d" % relay.address)
        assert agent.stdout is not None
        windows = iter(agent.stdout.readline, "")
        for _ in range(3):
            assert json.loads(next(windows))["warnings"] == []
        relay.set_profile(LOSS_8_PCT)
        switched_s = time.monotonic()
        raised_after_s = cleared_after_s = None
        for line in windows:
            window = json.loads(line)
            kinds = [w["type"] for w in window["warnings"] if w["cue"] == "vocal_tone"]
            if "warning_raised" in kinds and raised_after_s is None:
                raised_after_s = time.monotonic() - switched_s
                relay.set_profile(CLEAN)
                switched_s = time.monotonic()
            elif "warning_cleared" in kinds:
                cleared_after_s = time.monotonic() - switched_s
                break
            assert time.monotonic() - switched_s < 40, "no warning event within 40 s"
        agent.send_signal(signal.SIGTERM)
        code, _, stderr = finish(agent)
    finally:
        relay.stop()
    assert code == 0, stderr
    print(f"vocal_tone warning raised {raised_after_s:.1f} s after the switch to 8 % loss, "
          f"cleared {cleared_after_s:.1f} s after the switch back")
    assert raised_after_s is not None and raised_after_s <= 15.0
    assert cleared_after_s is not None and cleared_after_s <= 25.0
    points = stored_points(tmp_path / "home" / STORE)
    warnings = [p for p in points if p.measurement == "netcheck_warning"]
    assert [(p.tags["cue"], p.fields["active"]) for p in warnings] == [("vocal_tone", 1), ("vocal_tone", 0)]
    assert "breaking up" in str(warnings[0].fields["message"])
    with LocalStore(tmp_path / "home" / STORE) as store:
        events = store.session_events("sess-test")
    assert [e["type"] for e in events if e["type"] != "summary"] == ["warning_raised", "warning_cleared"]
    assert {e["leg"] for e in events} == {"client"}


@pytest.mark.slow
def test_delay_oscillating_around_the_timing_threshold_for_2_minutes_raises_at_most_twice(
        server: ServerProcess, tmp_path: Path) -> None:
    """Must show 2 of the warnings issue: RTT flips between 230 ms and 270 ms (the poor threshold is
    250 ms) every 1.4 windows for 24 windows. The issue's 2 minutes at the default 5 s windows (a flip
    every 7 s) compressed through the window's setting to 2 s windows, a flip every 2.8 s, 48 s:
    the hysteresis counts windows, so it sees the same sequence."""
    low = Profile("rtt-230", Impairment(delay_ms=115.0), Impairment(delay_ms=115.0))
    high = Profile("rtt-270", Impairment(delay_ms=135.0), Impairment(delay_ms=135.0))
    relay = Relay((server.udp_host, server.udp_port), low, seed=6, max_clients=64).start()
    try:
        agent = start_agent(server, tmp_path / "home", {}, "--av-every", "0", "--json", "--duration", "48s",
                            "--window", "2s", "--udp-target", "%s:%d" % relay.address)
        end_s = time.monotonic() + 48
        flips = 0
        while time.monotonic() < end_s and agent.poll() is None:
            time.sleep(2.8)
            flips += 1
            relay.set_profile(high if flips % 2 else low)
        code, stdout, stderr = finish(agent, timeout_s=30)
    finally:
        relay.stop()
    assert code == 0, stderr
    windows = [json.loads(line) for line in stdout.splitlines()]
    levels = "".join(w["cues"]["conversational_timing"]["level"][0] for w in windows)
    raises: dict[str, int] = {}
    for window in windows:
        for warning in window["warnings"]:
            if warning["type"] == "warning_raised":
                raises[warning["cue"]] = raises.get(warning["cue"], 0) + 1
    print(f"timing levels per window: {levels}; raises per cue: {raises}")
    assert len(windows) == 24
    assert "p" in levels and "f" in levels  # it did oscillate around the threshold
    assert all(count <= 2 for count in raises.values()), raises
