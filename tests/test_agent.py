"""The background agent end to end: a real `netcheck serve`, real agents, real InfluxDB 1.6.7 and
VictoriaMetrics, outages, kill -9 and bad configuration (issue 5, "Must show" 1–4)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netcheck.store.points import Point
from netcheck.store.local import LocalStore
from tests.harness.servers import REPO, ServerProcess, subprocess_env
from tests.harness.delivered import (
    acknowledged_writes, assert_influx_has_exactly, assert_victoria_has_exactly, count_resends, outbox_pending,
    stored_points,
)
from tests.harness.http_faults import HttpFaultProxy
from tests.harness.impairment import Impairment, Profile, Relay
from tests.harness.ports import free_port
from tests.harness.tsdb import InfluxDB1, VictoriaMetrics

STORE = "netcheck.sqlite3"


def v1_env(influx: InfluxDB1, **changes: str) -> dict[str, str]:
    return {"NETCHECK_INFLUX_URL": influx.url, "NETCHECK_INFLUX_API": "v1",
            "NETCHECK_INFLUX_DATABASE": influx.database, "NETCHECK_INFLUX_USERNAME": influx.username,
            "NETCHECK_INFLUX_PASSWORD": influx.password, **changes}


def v2_env(url: str, **changes: str) -> dict[str, str]:
    return {"NETCHECK_INFLUX_URL": url, "NETCHECK_INFLUX_ORG": "clinic", "NETCHECK_INFLUX_BUCKET": "netcheck",
            "NETCHECK_INFLUX_TOKEN": "t0ken", **changes}


def start_agent(server: ServerProcess, home: Path, influx_env: dict[str, str], *args: str) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), "agent", "--server", server.http_url, "--session", "sess-test", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=subprocess_env(NETCHECK_HOME=str(home), **influx_env),
    )


def finish(agent: subprocess.Popen, timeout_s: float = 60.0) -> tuple[int, str, str]:
    stdout, stderr = agent.communicate(timeout=timeout_s)
    return agent.returncode, stdout, stderr


def wait_for(condition, timeout_s: float, poll_s: float = 0.2) -> float:  # type: ignore[no-untyped-def]
    """Seconds until `condition()` held; fails the test after `timeout_s`."""
    start_s = time.monotonic()
    while not condition():
        if time.monotonic() - start_s > timeout_s:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(poll_s)
    return time.monotonic() - start_s


def measurements(points: list[Point]) -> set[str]:
    return {point.measurement for point in points}




@pytest.mark.slow
def test_agent_for_60_s_delivers_every_stored_point_to_both_apis(
        server: ServerProcess, influx: InfluxDB1, vm: VictoriaMetrics, tmp_path: Path) -> None:
    """Must show 1: 12 windows with one A/V run, v1 to InfluxDB and v2 to VictoriaMetrics. The
    defaults' 60 s (5 s windows) compressed to 24 s through the window's setting (2 s windows)."""
    agents = {
        "v1": start_agent(server, tmp_path / "v1", v1_env(influx), "--duration", "24s", "--window", "2s",
                          "--role", "therapist"),
        "v2": start_agent(server, tmp_path / "v2", v2_env(vm.url), "--duration", "24s", "--window", "2s"),
    }
    results = {name: finish(agent, timeout_s=100) for name, agent in agents.items()}
    for name, (code, _, stderr) in results.items():
        assert code == 0, stderr
        assert "stopped after 12 window(s), 0 skipped" in stderr
        assert "outbox 0 pending" in stderr
    v1_points = stored_points(tmp_path / "v1" / STORE)
    v2_points = stored_points(tmp_path / "v2" / STORE)
    for points in (v1_points, v2_points):
        assert measurements(points) == {"netcheck_udp", "netcheck_system", "netcheck_av", "netcheck_assessment",
                                        "netcheck_agent"}
        assert len(points) == 12 * 4 + 1  # udp, system, assessment, agent per window; one A/V run
        assert {point.fields.get("session_id") for point in points} == {"sess-test"}
    assert {point.tags["role"] for point in v1_points} == {"therapist"}
    assert_influx_has_exactly(influx, v1_points)
    assert_victoria_has_exactly(vm, v2_points)


@pytest.mark.slow
def test_an_outage_past_the_backoff_cap_loses_nothing_duplicates_nothing_and_drains_within_30_s(
        server: ServerProcess, influx: InfluxDB1, vm: VictoriaMetrics, tmp_path: Path) -> None:
    """Must show 2, against both servers at once; VictoriaMetrics runs without dedup, so a re-sent
    point would show as a duplicate sample. The issue's 30 s outage at the default backoff cap
    (15 s) on 2 s windows, compressed through the settings: a 14 s outage, cap 2 s (`[influx]
    retry_max_s`), 1 s windows — the backoff reaches its cap and the outage holds ≥ 10 windows."""
    args = ("--window", "1s", "--av-every", "0")
    for name in ("v1", "v2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.toml").write_text("[influx]\nretry_max_s = 2\n")
    agents = {"v1": start_agent(server, tmp_path / "v1", v1_env(influx), *args),
              "v2": start_agent(server, tmp_path / "v2", v2_env(vm.url), *args)}
    stores = {name: tmp_path / name / STORE for name in agents}
    try:
        wait_for(lambda: all(path.exists() and len(stored_points(path)) >= 12 for path in stores.values()), 30)
        influx.stop()
        vm.stop()
        time.sleep(14)
        assert all(outbox_pending(path) >= 40 for path in stores.values())  # ≥ 10 windows waited
        influx.start()
        vm.start()
        recovery_s = {name: wait_for(lambda path=path: outbox_pending(path) == 0, 30) for name, path in stores.items()}
        time.sleep(2)  # a couple of windows after the recovery
    finally:
        for agent in agents.values():
            agent.send_signal(signal.SIGTERM)
    for name, agent in agents.items():
        code, _, stderr = finish(agent, timeout_s=30)
        assert code == 0, stderr
        assert stderr.count("retrying with backoff") == 1 and stderr.count("reachable again") == 1, stderr
        assert "outbox 0 pending" in stderr
    print(f"outbox back to 0 after the servers returned: {recovery_s}")
    assert_influx_has_exactly(influx, stored_points(stores["v1"]))
    assert_victoria_has_exactly(vm, stored_points(stores["v2"]))


def backlog(home: Path, count: int) -> None:
    """Points queued as after a long outage (the agent's own windows add to them)."""
    home.mkdir(parents=True, exist_ok=True)
    now_ms = int(time.time() * 1000) - count * 10
    with LocalStore(home / STORE, max_points=1_000_000) as store:
        agent_id = store.agent_id()
        store.add_points([Point("netcheck_udp", {"agent": agent_id, "kind": "session", "role": "client"},
                                {"rtt_p95_ms": 20.0 + i % 100 / 10, "packets_sent": 40, "session_id": "backlog"},
                                now_ms + i * 10) for i in range(count)])


@pytest.mark.slow
@pytest.mark.parametrize("api", ["v1", "v2"])
def test_kill_9_mid_delivery_then_restart_loses_nothing_and_resends_at_most_one_batch(
        server: ServerProcess, tmp_path: Path, api: str) -> None:
    """Must show 3 (issue 5) and 4 (issue 18): delivery is at least once, of idempotent points.

    While a 40,000-point backlog drains in batches of 500, a recording proxy in front of the server
    forwards one write, lets the server store it and holds its acknowledgement; the agent is
    killed then, the worst moment (the server has the batch, the outbox still says pending). After
    the restart the proxy's count of acknowledged writes shows exactly that one batch re-sent, each re-sent point is byte-identical to its first send (same series, time and
    fields), and the stored series has no duplicate rows: InfluxDB overwrites the same series and
    time, VictoriaMetrics dedups with -dedup.minScrapeInterval=1ms, the setting docs/agent.md asks for."""
    home = tmp_path / "home"
    backlog(home, 40_000)
    home.joinpath("config.toml").write_text("[influx]\nbatch_size = 500\n")
    tsdb = InfluxDB1() if api == "v1" else VictoriaMetrics(extra_args=("-dedup.minScrapeInterval=1ms",))
    with tsdb, HttpFaultProxy(tsdb.url, keep_bodies=True) as proxy:
        env = v1_env(tsdb, NETCHECK_INFLUX_URL=proxy.url) if isinstance(tsdb, InfluxDB1) else v2_env(proxy.url)
        first = start_agent(server, home, env, "--window", "2s", "--av-every", "0")
        wait_for(lambda: outbox_pending(home / STORE) < 30_000, 60, poll_s=0.02)
        proxy.hold_responses()
        wait_for(lambda: proxy.held_count >= 1, 10, poll_s=0.01)
        os.kill(first.pid, signal.SIGKILL)
        first.communicate()
        proxy.release()
        writes_before_restart = len(acknowledged_writes(proxy.exchanges))
        left = outbox_pending(home / STORE)
        assert left > 1000, "the kill came too late to be mid-delivery"
        second = start_agent(server, home, env, "--window", "2s", "--av-every", "0")
        drained = True
        try:
            wait_for(lambda: outbox_pending(home / STORE) == 0, 60)
        except pytest.fail.Exception:
            drained = False
        finally:
            second.send_signal(signal.SIGTERM)
        code, _, stderr = finish(second)
        assert drained, (f"{outbox_pending(home / STORE)} still pending; last requests {proxy.requests[-5:]}; "
                         f"agent said: {stderr[-1500:]}")
        assert code == 0, stderr
        points = stored_points(home / STORE)
        assert len(points) > 40_000
        writes = acknowledged_writes(proxy.exchanges)
        resends = count_resends(writes)
        print(f"{api}: {len(writes)} acknowledged writes ({writes_before_restart} before the restart), "
              f"{resends.batches} re-sent batch(es), {resends.points} point(s) written twice")
        assert resends.batches == 1 and 0 < resends.points <= 500, resends  # the held batch, nothing more
        assert resends.changed == 0, "a re-sent point differed from its first send: not idempotent"
        assert sum(len(lines) for lines in writes) == len(points) + resends.points  # nothing else was sent
        if isinstance(tsdb, InfluxDB1):
            assert_influx_has_exactly(tsdb, points)  # as many rows as stored points: no duplicate row
        else:
            assert_victoria_has_exactly(tsdb, points)  # one sample per stored field and time


@pytest.mark.slow
@pytest.mark.parametrize("case", ["wrong password", "unknown database", "unreachable URL", "503 then healthy"])
def test_bad_configuration_never_stops_measuring(server: ServerProcess, influx: InfluxDB1, tmp_path: Path,
                                                 case: str) -> None:
    """Must show 4: a 4xx is reported once and not retried; 5xx and network errors are retried;
    the agent keeps measuring and storing; exit 0."""
    with HttpFaultProxy(influx.url) as proxy:
        env = {
            "wrong password": v1_env(influx, NETCHECK_INFLUX_URL=proxy.url, NETCHECK_INFLUX_PASSWORD="wrong"),
            "unknown database": v1_env(influx, NETCHECK_INFLUX_URL=proxy.url, NETCHECK_INFLUX_DATABASE="nope"),
            "unreachable URL": v1_env(influx, NETCHECK_INFLUX_URL=f"http://127.0.0.1:{free_port()}"),
            "503 then healthy": v1_env(influx, NETCHECK_INFLUX_URL=proxy.url),
        }[case]
        if case == "503 then healthy":
            proxy.fail_always(503)
        agent = start_agent(server, tmp_path / "home", env, "--window", "1s", "--duration", "8s",
                            "--av-every", "0", "--json")
        if case == "503 then healthy":
            time.sleep(4)
            proxy.heal()
        code, stdout, stderr = finish(agent)
        requests = proxy.requests
    assert code == 0, stderr
    windows = [json.loads(line) for line in stdout.splitlines()]
    assert len(windows) == 8  # measuring went on throughout
    assert all(window["measurements"]["udp"]["status"] == "ok" for window in windows)
    stored = len(stored_points(tmp_path / "home" / STORE))
    assert stored == 8 * 4
    pending = outbox_pending(tmp_path / "home" / STORE)
    if case in ("wrong password", "unknown database"):
        assert stderr.count("refused the write") == 1, stderr
        assert ("HTTP 401" if case == "wrong password" else "HTTP 404") in stderr
        assert len(requests) == 1  # never retried
        assert pending == stored  # kept for after the fix
    elif case == "unreachable URL":
        assert stderr.count("retrying with backoff") == 1, stderr
        assert pending == stored
    else:
        assert len([r for r in requests if r.status == 503]) >= 2  # retried with backoff
        assert stderr.count("retrying with backoff") == 1 and stderr.count("reachable again") == 1, stderr
        assert pending == 0
        assert influx.count("netcheck_udp") == 8


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
