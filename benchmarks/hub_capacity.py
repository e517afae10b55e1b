"""Session hub capacity of one node: how many sessions (2 legs posting a summary every 5 s + 1 watcher
each) one `netcheck serve` process carries while the p99 latency from a post being sent to its event
reaching the session's watcher (SSE) stays ≤ 1 s. In-memory hub vs the Redis backend.

Loopback only, bounded, stops by itself: the node (a subprocess running `start_server` with the
in-memory session cap lifted, so CPU is what limits), optionally a `redis-server` (appendfsync
everysec, as deployed), and this process as the load generator, which adds sessions step by step
(the earlier ones keep running), warms each step up for one window, then measures. It stops at the
first step whose p99 exceeds 1 s or where more than 1 % of posts fail, or after the last step.
Latency is measured on one clock (this process sends and receives), so it includes the generator's
own lateness: the CPU of the node, Redis and the generator is printed for each step to show which
one ran out.

    python benchmarks/hub_capacity.py --backend memory [--steps 100,200,400,800,1200,1600] [--measure 10]
    python benchmarks/hub_capacity.py --backend redis [--node-core 1]

`--node-core N` gives the node core N to itself (CPU affinity) and the generator and Redis the
other cores: the node's figure without the generator competing for its core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WINDOW_S = 5.0
LAG_TICK_S = 0.05
P99_LIMIT_S = 1.0
MAX_FAILED_POST_SHARE = 0.01
MAX_SESSIONS = 8000
MAX_RUN_S = 600.0
SECRET = b"hub-capacity-benchmark-secret-0123456789"
HOST = "127.0.0.1"


def summary(index: int, sent_s: float) -> dict[str, Any]:
    """A window summary the size of the contract's example (docs/session-hub.md), stamped with its send time."""
    cue = {"level": "good", "deciding_metric": "rtt_p95_ms", "value": 48.0, "unit": "ms", "direction": None}
    at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")  # the hub takes times within a day of its own
    return {"type": "summary", "at": at,
            "window": {"index": index, "window_s": WINDOW_S, "recommendation": "video", "level": "good",
                       "cues": {name: cue for name in ("facial_expression", "vocal_tone", "conversational_timing",
                                                       "lip_sync")},
                       "figures": {"rtt_p95_ms": 48.0, "jitter_one_way_ms": 3.1, "loss_one_way_pct": 0.0,
                                   "mos": 4.1, "video_fps": 29.8, "frozen_pct": 0.0, "av_skew_ms": 12.0},
                       "sent_s": sent_s}}


def post_template() -> str:
    """A post of one summary as JSON text with `%d` for its index and `%r` for its send time, encoded
    once: encoding it at every post took a fifth of the generator's CPU at 3,000 sessions (profile)."""
    text = json.dumps({"events": [summary(-1, -1.5)]}, separators=(",", ":"))
    if text.count('"index":-1,') != 1 or text.count('"sent_s":-1.5') != 1 or "%" in text:
        raise RuntimeError("the summary's JSON no longer has one index and one sent_s to fill in")
    return text.replace('"index":-1,', '"index":%d,').replace('"sent_s":-1.5', '"sent_s":%r')


def serve_node(hub_url: str | None, profile_path: str | None = None) -> None:
    """In the node's own process: the real server with the session cap lifted; prints its URL.
    `profile_path`: run it under cProfile and write the statistics there when it stops."""
    from netcheck.server.app import settle_collector, start_server
    from netcheck.server.hub.routes import HubLimits

    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

    async def main() -> None:
        server = await start_server(HOST, 0, 0, secret=SECRET, hub_url=hub_url,
                                    hub_limits=HubLimits(max_sessions=MAX_SESSIONS * 2))
        settle_collector()  # as `netcheck serve` does once it is up
        print(server.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
        await server.close()

    asyncio.run(main())
    if profile_path:
        profiler.disable()
        profiler.dump_stats(profile_path)


class Load:
    def __init__(self, url: str) -> None:
        import aiohttp

        from netcheck.tokens import create_token

        self.url = url
        self.create_token = create_token
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                          timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        self.post_timeout = aiohttp.ClientTimeout(total=10)
        self.errors: Counter[str] = Counter()
        self.latencies_s: list[float] = []
        self.lags_s: list[float] = []
        """How late this process's own 50 ms timer fired while measuring: its share of every latency."""
        self.template = post_template()
        self.posts_ok = 0
        self.measuring = False
        self.tasks: list[asyncio.Task[None]] = []

    def add_session(self, number: int, run_id: str) -> None:
        session_id = f"cap-{run_id}-{number}"
        connected = asyncio.Event()
        self.tasks.append(asyncio.ensure_future(self._watch(session_id, connected)))
        for role in ("client", "therapist"):
            self.tasks.append(asyncio.ensure_future(self._leg(session_id, role, connected)))

    def start(self) -> None:
        self.tasks.append(asyncio.ensure_future(self._tick()))

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due_s = loop.time() + LAG_TICK_S
            await asyncio.sleep(LAG_TICK_S)
            if self.measuring:
                self.lags_s.append(max(0.0, loop.time() - due_s))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.http.close()

    def _headers(self, session_id: str, role: str) -> dict[str, str]:
        """Signed once per leg or watcher (valid for the longest run, MAX_RUN_S), not at every post."""
        return {"Authorization": f"Bearer {self.create_token(SECRET, session_id, role, 3600)}",
                "Content-Type": "application/json"}

    async def _watch(self, session_id: str, connected: asyncio.Event) -> None:
        import aiohttp

        url = f"{self.url}/v1/sessions/{session_id}/events"
        headers = self._headers(session_id, "therapist")
        while True:
            try:
                async with self.http.get(url, headers=headers) as response:
                    if response.status != 200:
                        self.errors[f"watch HTTP {response.status}"] += 1
                        await asyncio.sleep(1.0)  # the hub's Retry-After order of magnitude
                        continue
                    connected.set()
                    async for line in response.content:
                        if line.startswith(b"data: ") and self.measuring:
                            sent_s = json.loads(line[6:])["window"]["sent_s"]
                            self.latencies_s.append(time.monotonic() - sent_s)
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                self.errors[f"watch {type(error).__name__}"] += 1
                await asyncio.sleep(1.0)

    async def _leg(self, session_id: str, role: str, connected: asyncio.Event) -> None:
        import aiohttp

        url = f"{self.url}/v1/sessions/{session_id}/events"
        headers = self._headers(session_id, role)
        await connected.wait()
        loop = asyncio.get_running_loop()
        next_s = loop.time() + random.uniform(0, WINDOW_S)  # legs' windows spread over the 5 s
        index = 0
        while True:
            await asyncio.sleep(max(0.0, next_s - loop.time()))
            next_s += WINDOW_S
            measured = self.measuring
            try:
                async with self.http.post(url, data=(self.template % (index, time.monotonic())).encode(),
                                          headers=headers,
                                          timeout=self.post_timeout) as response:
                    body = await response.read()
                    ok = response.status == 202
                    if measured and not ok:
                        self.errors[f"post HTTP {response.status}{refusal_reason(body)}"] += 1
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                ok = False
                if measured:
                    self.errors[f"post {type(error).__name__}"] += 1
            if measured and ok:
                self.posts_ok += 1
            index += 1


def refusal_reason(body: bytes) -> str:
    """The refusal's reason code and the detail its sentence names in parentheses, e.g. " unavailable
    (TimeoutError)" for a 503 of the Redis round trip: which limit refused, not only the status."""
    try:
        refusal = json.loads(body)
        error, reason = str(refusal.get("error", "")), str(refusal.get("reason", ""))
    except (ValueError, AttributeError):
        return ""
    detail = error[error.rindex("(") + 1:-1] if error.endswith(")") and "(" in error else ""
    return "".join(f" {part}" for part in (reason, f"({detail})" if detail else "") if part)


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(url: str, steps: list[int], measure_s: float, processes: dict[str, Any]) -> list[dict[str, Any]]:
    import psutil

    load = Load(url)
    load.start()
    run_id = f"{int(time.time())}-{random.randrange(10**6)}"
    rows: list[dict[str, Any]] = []
    started_s = time.monotonic()
    try:
        for sessions in steps:
            while len(load.tasks) // 3 < sessions:
                load.add_session(len(load.tasks) // 3, run_id)
            await asyncio.sleep(WINDOW_S + 1.0)  # every new leg has posted once, every watcher is connected
            _settle_generator()
            load.latencies_s.clear()
            load.lags_s.clear()
            load.errors.clear()
            load.posts_ok = 0
            for process in processes.values():
                process.cpu_percent(None)
            node_cpu_s, node_waits = _cpu_s(processes["node"]), _run_waits(processes["node"].pid)
            load.measuring = True
            await asyncio.sleep(measure_s)
            load.measuring = False
            node_cpu_s = _cpu_s(processes["node"]) - node_cpu_s
            node_wait_ms = _wait_per_run_ms(node_waits, _run_waits(processes["node"].pid))
            failed = sum(count for kind, count in load.errors.items() if kind.startswith("post"))
            p99 = percentile(load.latencies_s, 0.99)
            row = {"sessions": sessions, "posts_ok": load.posts_ok, "posts_failed": failed,
                   "events_received": len(load.latencies_s),
                   "p50_ms": round(1000 * (percentile(load.latencies_s, 0.50) or 0), 1),
                   "p99_ms": round(1000 * p99, 1) if p99 is not None else None,
                   "errors": dict(load.errors),
                   "cpu_pct": {name: round(process.cpu_percent(None), 0) for name, process in processes.items()},
                   "node_cpu_ms_per_post": round(1000 * node_cpu_s / max(1, load.posts_ok + failed), 3),
                   "node_loop_wait_ms_per_run": node_wait_ms,
                   "node_rss_mb": round(processes["node"].memory_info().rss / 1e6, 1),
                   "generator_lag_p99_ms": round(1000 * (percentile(load.lags_s, 0.99) or 0), 1),
                   "load_avg_1m": round(psutil.getloadavg()[0], 2)}
            print(json.dumps(row), flush=True)
            rows.append(row)
            too_slow = p99 is None or p99 > P99_LIMIT_S
            if too_slow or failed > MAX_FAILED_POST_SHARE * max(1, load.posts_ok + failed):
                break
            if time.monotonic() - started_s > MAX_RUN_S:
                break
    finally:
        await load.close()
    return rows


def _settle_generator() -> None:
    """The generator's sessions live to the end of the run: out of the cyclic collector, which otherwise
    walked them all at each full collection (22 % of its time at 3,000 sessions, its loop stopped up to
    360 ms: its own lateness in the latencies it measures). Collections as seldom as the node's."""
    import gc

    from netcheck.server.app import GC_THRESHOLDS

    gc.freeze()  # without collecting first: a full collection here would stop the loop just before measuring
    gc.set_threshold(*GC_THRESHOLDS)


def _cpu_s(process: Any) -> float:
    """The process's CPU time so far (user + system), its threads' included."""
    times = process.cpu_times()
    return float(times.user + times.system)


def _run_waits(pid: int) -> tuple[float, int] | None:
    """The process's main thread (the node's event loop): (seconds it waited for a CPU while runnable,
    times it ran) so far, from Linux's schedstat; None elsewhere. Other work on the node's core shows here."""
    try:
        _, delay_ns, runs = Path(f"/proc/{pid}/schedstat").read_text().split()[:3]
    except (OSError, ValueError):
        return None
    return int(delay_ns) / 1e9, int(runs)


def _wait_per_run_ms(before: tuple[float, int] | None, after: tuple[float, int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(1000 * (after[0] - before[0]) / (after[1] - before[1]), 3)


def run(backend: str, steps: list[int], measure_s: float, profile_path: str | None = None,
        node_core: int | None = None) -> dict[str, Any]:
    import psutil

    from tests.harness.redis_server import RedisServer

    redis = RedisServer(appendfsync="everysec") if backend == "redis" else None
    node = None
    try:
        processes: dict[str, Any] = {"generator": psutil.Process()}
        if redis is not None:
            redis.start()
            assert redis.process is not None
            processes["redis"] = psutil.Process(redis.process.pid)
        node = subprocess.Popen([sys.executable, __file__, "--node"] + (["--hub", redis.url] if redis else [])
                                + (["--profile", profile_path] if profile_path else []),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                cwd=REPO)  # its stderr: tracebacks of posts cut off when the generator stops
        assert node.stdout is not None
        url = node.stdout.readline().strip()
        if not url.startswith(f"http://{HOST}:"):
            raise RuntimeError("the node did not start")
        processes["node"] = psutil.Process(node.pid)
        if node_core is not None:
            others = [core for core in range(psutil.cpu_count()) if core != node_core]
            processes["node"].cpu_affinity([node_core])
            for name in ("generator", "redis"):
                if name in processes:
                    processes[name].cpu_affinity(others)
        rows = asyncio.run(measure(url, steps, measure_s, processes))
    finally:
        if node is not None:
            assert node.stdin is not None
            node.stdin.close()
            try:
                node.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.kill()
        if redis is not None:
            redis.close()
    passing = [row["sessions"] for row in rows
               if row["p99_ms"] is not None and row["p99_ms"] <= 1000 * P99_LIMIT_S and row["posts_failed"] == 0]
    return {"backend": backend, "node_core": node_core, "capacity_sessions": max(passing, default=0), "steps": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("memory", "redis"), default="memory")
    parser.add_argument("--steps", default="500,1000,1500,2000,2500,3000,4000,5000,6000",
                        help="sessions at each step, rising (at most %d)" % MAX_SESSIONS)
    parser.add_argument("--measure", type=float, default=10.0, help="seconds measured at each step (5..60)")
    parser.add_argument("--node", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hub", help=argparse.SUPPRESS)
    parser.add_argument("--profile", metavar="FILE", help="run the node under cProfile; its statistics into FILE "
                                                          "(python -m pstats FILE)")
    parser.add_argument("--node-core", type=int, metavar="N", help="the node alone on core N; the rest on the others")
    args = parser.parse_args()
    if args.node:
        serve_node(args.hub, args.profile)
        return
    steps = [int(step) for step in args.steps.split(",")]
    if steps != sorted(steps) or not 1 <= steps[0] or steps[-1] > MAX_SESSIONS or not 5 <= args.measure <= 60:
        parser.error(f"--steps must rise within 1..{MAX_SESSIONS}; --measure within 5..60 s")
    cores = os.cpu_count() or 1
    if args.node_core is not None and not (0 <= args.node_core < cores and cores >= 2):
        parser.error(f"--node-core must name one of this machine's {cores} cores and leave another")
    print(json.dumps(run(args.backend, steps, args.measure, args.profile, args.node_core)), flush=True)


if __name__ == "__main__":
    main()
