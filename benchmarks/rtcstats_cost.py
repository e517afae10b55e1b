"""What following a call participant through the rtcstats door costs the node (issue 25, Must show 4).

    python benchmarks/rtcstats_cost.py --rooms 25 --runs 3

A `netcheck serve` subprocess; `--rooms` rooms bound to sessions of their own (`PUT
/v1/sessions/{id}/rooms/{room}`), each with its two participants replaying, at the pace they were sent,
the messages the real @jitsi/rtcstats client sent from two headless Chromiums in a real call
(tests/rtcstats/chromium_call.jsonl, recorded by tests/rtcstats/record_chromium.py: its identity, its
events and a getstats every 5 s). Each participant connects from a loopback address of its own room
(the door takes ≤ 20 connections per address). Measured on the node's process, over the replay: its
CPU (user + system, % of one core) and its resident memory's growth, each divided by the participants,
less the same node's idle CPU (read for 15 s before); and, from each session's report, that every leg was judged on
the call. Median (min–max) over `--runs`, a fresh node each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so `tests.*` imports from a checkout

import aiohttp  # noqa: E402
import psutil  # noqa: E402

from netcheck.server.legs.rtcstats import PROTOCOL  # noqa: E402
from netcheck.tokens import create_token  # noqa: E402
from tests.harness.call_pair import NAMES  # noqa: E402
from tests.harness.servers import start_serve, stop, subprocess_env  # noqa: E402

RECORDING = Path(__file__).resolve().parent.parent / "tests" / "rtcstats" / "chromium_call.jsonl"
SECRET = "rtcstats-cost-secret-0123456789abcdef"
ORIGIN = "https://meet.example-clinic.org"
IDLE_S = 15.0
"""How long the node's idle CPU is read before the replay (its headroom sampling, its timers)."""


def recorded() -> dict[str, list[tuple[float, str]]]:
    """Each role's messages: (ms after its socket opened, the message's text)."""
    by_role: dict[str, list[tuple[float, str]]] = {}
    for line in RECORDING.read_text().splitlines():
        entry = json.loads(line)
        by_role.setdefault(entry["role"], []).append((float(entry["at_ms"]), json.dumps(entry["sent"])))
    return by_role


async def participant(node_url: str, room: str, address: str, messages: list[tuple[float, str]]) -> None:
    """One participant: connect from `address`, wait for the node's `sn`, send at the recorded pace."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        url = f"{node_url.replace('http', 'ws', 1)}/v1/rtcstats/{room}?statsSessionId=cost&isReconnect=false"
        async with http.ws_connect(url, protocols=(PROTOCOL,), origin=ORIGIN) as ws:
            await ws.receive_json(timeout=10)
            started = time.monotonic()
            for at_ms, text in messages:
                await asyncio.sleep(max(0.0, started + at_ms / 1000 - time.monotonic()))
                await ws.send_str(text)
            await asyncio.sleep(0.5)


async def bind(http: aiohttp.ClientSession, node_url: str, session_id: str, room: str) -> None:
    token = create_token(SECRET.encode(), session_id, "therapist", 3600)
    body = {"expires_s": 3600, "therapist_name": NAMES["therapist"], "client_name": NAMES["client"]}
    async with http.put(f"{node_url}/v1/sessions/{session_id}/rooms/{room}", json=body,
                        headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200, await response.text()


async def judged_legs(http: aiohttp.ClientSession, node_url: str, session_id: str) -> int:
    """How many of the session's legs its report says were measured on the call."""
    token = create_token(SECRET.encode(), session_id, "therapist", 3600)
    async with http.get(f"{node_url}/v1/sessions/{session_id}/report",
                        headers={"Authorization": f"Bearer {token}"}) as response:
        report = await response.json()
    return sum(1 for minutes in report.get("minutes_on_call", {}).values() if minutes > 0)


def usage(process: psutil.Process) -> tuple[float, float]:
    times = process.cpu_times()
    return times.user + times.system, process.memory_info().rss / 2**20


async def one_run(rooms: int, home: Path) -> dict[str, float]:
    messages = recorded()
    home.mkdir(parents=True, exist_ok=True)
    node = start_serve("--call-origin", ORIGIN, env=subprocess_env(NETCHECK_SECRET=SECRET, NETCHECK_HOME=str(home)))
    process = psutil.Process(node.process.pid)
    try:
        sessions = [(f"cost-{index}", f"room-{index}") for index in range(rooms)]
        async with aiohttp.ClientSession() as http:
            for session_id, room in sessions:
                await bind(http, node.http_url, session_id, room)
            replay_s = max(at_ms for role in messages.values() for at_ms, _ in role) / 1000 + 0.5
            await asyncio.sleep(2.0)  # the node settles after its start and the bindings
            cpu0, _ = usage(process)
            await asyncio.sleep(IDLE_S)
            idle_cpu_s = usage(process)[0] - cpu0
            cpu0, rss0_mb = usage(process)
            started = time.monotonic()
            await asyncio.gather(*(participant(node.http_url, room, f"127.0.1.{index + 1}", messages[role])
                                   for index, (_, room) in enumerate(sessions) for role in messages))
            elapsed_s = time.monotonic() - started
            cpu1, rss1_mb = usage(process)
            judged = sum([await judged_legs(http, node.http_url, session_id) for session_id, _ in sessions])
    finally:
        stop(node.process)
    followed = rooms * len(messages)
    return {"participants": followed, "legs_judged": judged, "seconds": elapsed_s,
            "idle_cpu_pct": 100 * idle_cpu_s / IDLE_S,
            "cpu_pct": 100 * (cpu1 - cpu0) / elapsed_s,
            "cpu_pct_per_participant": 100 * ((cpu1 - cpu0) / elapsed_s - idle_cpu_s / IDLE_S) / followed,
            "rss_mb": rss1_mb, "rss_mb_per_participant": (rss1_mb - rss0_mb) / followed}


def spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=25)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import tempfile

    runs: list[dict[str, Any]] = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory() as folder:
            run = asyncio.run(one_run(args.rooms, Path(folder)))
        print(f"run {index + 1}: {run}", file=sys.stderr, flush=True)
        runs.append(run)
    print(f"| participants | legs judged | replay s | node idle, % core | node CPU, % core | per participant, % core "
          f"| node RSS MiB | per participant, MiB |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n"
          f"| {runs[0]['participants']} | {spread([r['legs_judged'] for r in runs], 0)} "
          f"| {spread([r['seconds'] for r in runs], 1)} | {spread([r['idle_cpu_pct'] for r in runs], 2)} "
          f"| {spread([r['cpu_pct'] for r in runs], 1)} | {spread([r['cpu_pct_per_participant'] for r in runs], 3)} "
          f"| {spread([r['rss_mb'] for r in runs], 0)} | {spread([r['rss_mb_per_participant'] for r in runs], 3)} |")


if __name__ == "__main__":
    main()
