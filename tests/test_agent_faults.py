"""The background agent's delivery through faults: kill -9 mid-delivery and bad configuration, against a
real `netcheck serve`, real InfluxDB 1.6.7 and VictoriaMetrics (issue 5, "Must show" 3 and 4). They count
points, writes and retries, not milliseconds: the suite runs them beside other tests (its first
phase; a module of their own so that one process does not get all the agent's delivery); the
clean delivery and the outage are test_agent_delivery.py."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.harness.agent import STORE, backlog, finish, start_agent, v1_env, v2_env, wait_for
from tests.harness.delivered import (
    acknowledged_writes, assert_influx_has_exactly, assert_victoria_has_exactly, count_resends, outbox_pending,
    stored_points,
)
from tests.harness.http_faults import HttpFaultProxy
from tests.harness.ports import free_port
from tests.harness.servers import ServerProcess
from tests.harness.tsdb import InfluxDB1, VictoriaMetrics


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
            proxy.fail_next(2, 503)  # by count, not for 4 s: on a starved machine 4 s held one attempt only
        agent = start_agent(server, tmp_path / "home", env, "--window", "1s", "--duration", "8s",
                            "--av-every", "0", "--json")
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
