"""A stall of the node's store is not the client's jitter (issue 23, Must show 2).

A real `netcheck serve` on loopback whose every store write sleeps 200 ms inside its transaction,
in the thread that writes, as a slow disk would (the fault hook `NETCHECK_FAULT_STORE_WRITE_MS`,
store/local.py). A UDP probe (`netcheck probe udp`, its own process) runs once alone, then again
while browser checks are posted and stored; the second run's jitter stays at the first's.
Before issue 23 the write ran on the server's event loop and the reflector read its receive times
there: each stored check added up to 200 ms to the round trips of the packets behind it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.harness.servers import start_serve, stop, subprocess_env
from tests.harness.udp_accuracy import run_netcheck_probe

pytestmark = [pytest.mark.slow, pytest.mark.measures]  # the UDP probe's jitter beside a stalled store

STALL_MS = 200
PROBE_S = 5.0
POSTS = 4
"""One stored check a second during the probe (the per-client burst is 5)."""
JITTER_MARGIN_MS = 0.3
"""Over the run without stalls: ≈ 3× the median jitter error on loopback (BENCHMARKS.md); four
200-ms stalls on the loop read ≈ 6 ms of mean IPDV over 250 packets."""
RTT_MAX_MARGIN_MS = 50.0
"""A stalled loop puts the whole stall into the round trip of the packet that waited longest."""
LOOP_ANSWERS_WITHIN_S = 0.1
"""The server's loop answers GET /v1/info meanwhile within half a stall: the writes wait in their own
thread. (The probe's figures alone would not tell: with kernel stamps a stalled reflector only
lengthens its turnaround, which the probe subtracts.)"""
DEVICES_ONLY_CHECK = {"devices": {"secure_context": True, "camera": "denied", "camera_width": None,
                                  "camera_height": None, "microphone": "ok", "microphone_level_db": -23.5,
                                  "speakers": "heard", "output_device_choice": True}}
"""The smallest check the server stores (the contract's example devices, nothing measured)."""


def post_checks(http_url: str, count: int, every_s: float, outcomes: list[tuple[int, float]]) -> None:
    """Post `count` checks `every_s` apart; record (status, seconds the answer took)."""
    for _ in range(count):
        time.sleep(every_s)
        request = urllib.request.Request(http_url + "/v1/checks", data=json.dumps(DEVICES_ONLY_CHECK).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        started_s = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        outcomes.append((status, time.monotonic() - started_s))


def poll_info(http_url: str, until: threading.Event, latencies_s: list[float]) -> None:
    """GET /v1/info every 50 ms until `until`: how long the server's event loop takes to answer."""
    while not until.wait(0.05):
        started_s = time.monotonic()
        with urllib.request.urlopen(http_url + "/v1/info", timeout=10) as response:
            response.read()
        latencies_s.append(time.monotonic() - started_s)


def test_a_200_ms_stall_of_the_store_during_a_udp_probe_does_not_raise_its_jitter(tmp_path: Path) -> None:
    env = subprocess_env(NETCHECK_HOME=str(tmp_path), NETCHECK_FAULT_STORE_WRITE_MS=str(STALL_MS))
    server = start_serve(env=env)
    try:
        target = (server.udp_host, server.udp_port)
        calm = run_netcheck_probe(target, PROBE_S, server.http_url)
        outcomes: list[tuple[int, float]] = []
        latencies_s: list[float] = []
        probe_done = threading.Event()
        poster = threading.Thread(target=post_checks, args=(server.http_url, POSTS, 1.0, outcomes))
        poller = threading.Thread(target=poll_info, args=(server.http_url, probe_done, latencies_s))
        poster.start()
        poller.start()
        stalled = run_netcheck_probe(target, PROBE_S, server.http_url)
        probe_done.set()
        poster.join(30)
        poller.join(30)
    finally:
        stop(server.process)
    assert [status for status, _ in outcomes] == [201] * POSTS, outcomes
    assert all(took_s >= STALL_MS / 1000 for _, took_s in outcomes), f"the fault hook did not stall: {outcomes}"
    for metric in ("jitter_ms", "jitter_up_ms", "jitter_down_ms"):
        assert stalled[metric] <= calm[metric] + JITTER_MARGIN_MS, (metric, calm[metric], stalled[metric])
    assert stalled["rtt_max_ms"] <= calm["rtt_max_ms"] + RTT_MAX_MARGIN_MS, (calm["rtt_max_ms"], stalled["rtt_max_ms"])
    assert stalled["loss_pct"] == 0.0
    assert len(latencies_s) > 20 and max(latencies_s) < LOOP_ANSWERS_WITHIN_S, \
        f"the server's loop stalled: GET /v1/info took up to {max(latencies_s) * 1000:.0f} ms"
