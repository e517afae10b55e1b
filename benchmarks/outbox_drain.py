"""Outbox drain after a long outage: points/s delivered, and the memory of the process draining.

A local store is filled with N points shaped like the agent's (netcheck_udp, 16 fields, agent tags)
as if InfluxDB had been down for days; then a child process delivers them with the real
Deliverer and writer (batches of the default 5,000) to a real VictoriaMetrics (v2 API) and a real
InfluxDB 1.6.7 (v1 /write), both on loopback. The child's RSS is sampled every 50 ms: memory
stays bounded when it does not grow with the points already sent.

    python benchmarks/outbox_drain.py [--points 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from netcheck.config import InfluxSettings  # noqa: E402
from netcheck.store.points import Point  # noqa: E402
from netcheck.store.local import LocalStore  # noqa: E402
from tests.harness.tsdb import InfluxDB1, VictoriaMetrics  # noqa: E402


def fill(path: Path, count: int) -> None:
    start_ms = int(time.time() * 1000) - count * 1000
    with LocalStore(path, max_points=10 * count) as store:
        tags = {"agent": "bench0000001", "kind": "session", "role": "client", "site": "north", "server": "clinic:8470",
                "status": "ok"}
        for first in range(0, count, 10_000):
            store.add_points([Point("netcheck_udp", tags, {
                "packets_sent": 40, "packets_received": 40 - i % 2, "rtt_min_ms": 18.0 + i % 7 / 10,
                "rtt_mean_ms": 21.5, "rtt_p50_ms": 21.0, "rtt_p95_ms": 30.0 + i % 13, "rtt_max_ms": 41.2,
                "jitter_ms": 2.25, "jitter_rfc3550_ms": 1.75, "loss_pct": 2.5 * (i % 2), "loss_up_pct": 0.0,
                "loss_down_pct": 2.5 * (i % 2), "loss_burst_max": i % 2, "duplicates": 0, "reordered": 0,
                "session_id": f"s{i // 720}"}, start_ms + i * 1000) for i in range(first, min(count, first + 10_000))])


def drain_child(store_path: str, settings_json: str) -> None:
    """In the child: deliver everything, print points delivered and seconds."""
    from netcheck.store.delivery import Deliverer
    from netcheck.store.influx import make_writer

    settings = InfluxSettings(**json.loads(settings_json))
    with LocalStore(Path(store_path), max_points=10_000_000) as store:
        deliverer = Deliverer(store, make_writer(settings), settings.batch_size)
        start_s = time.perf_counter()
        delivered = asyncio.run(deliverer.deliver_pending())
        elapsed_s = time.perf_counter() - start_s
        deliverer.close()
    print(json.dumps({"delivered": delivered, "seconds": elapsed_s}))


def drain(store_path: Path, settings: InfluxSettings) -> tuple[dict, float, list[float]]:
    child = subprocess.Popen([sys.executable, __file__, "--child", str(store_path), json.dumps(settings.__dict__)],
                             stdout=subprocess.PIPE, text=True)
    process = psutil.Process(child.pid)
    rss_mb: list[float] = []
    while child.poll() is None:
        try:
            rss_mb.append(process.memory_info().rss / 1e6)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    output = child.stdout.read() if child.stdout else ""
    return json.loads(output), max(rss_mb), rss_mb


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        drain_child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    args = parser.parse_args()
    print(f"{args.points} queued points, batches of 5000, one child process per drain")
    with TemporaryDirectory() as tmp, VictoriaMetrics() as vm, InfluxDB1() as influx:
        targets = {
            "VictoriaMetrics 1.79.5, v2 API (influxdb-client)": InfluxSettings(
                url=vm.url, api="v2", org="clinic", bucket="netcheck", token="t"),
            "InfluxDB 1.6.7, v1 /write": InfluxSettings(
                url=influx.url, api="v1", database=influx.database, username=influx.username,
                password=influx.password),
        }
        for name, settings in targets.items():
            store_path = Path(tmp) / f"{settings.api}.sqlite3"
            fill(store_path, args.points)
            result, peak_mb, samples = drain(store_path, settings)
            quarter = len(samples) // 4
            print(f"{name}: {result['delivered']} points in {result['seconds']:.1f} s = "
                  f"{result['delivered'] / result['seconds']:,.0f} points/s; child RSS peak {peak_mb:.1f} MB "
                  f"(at 25/50/75 % of the drain: {samples[quarter]:.1f} / {samples[2 * quarter]:.1f} / "
                  f"{samples[3 * quarter]:.1f} MB)")
            if settings.api == "v1":
                assert influx.count("netcheck_udp") == args.points


if __name__ == "__main__":
    main()
