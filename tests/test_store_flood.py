"""Issue 23, Must show 4: 10,000 anonymous checks posted from 50 addresses to a real `netcheck serve` →
its store stays within the configured bound the whole time, and `netcheck store stats --json` says what
was dropped.

The config admits every post (a share of 200 per address, a global share of 10,000: the bound under
test is the store's, not the rates', which tests/test_checks_origin.py covers) and keeps 500 checks.
The clients are 50 sockets bound to 127.0.0.2 … 127.0.0.51 (any 127/8 address is a local source on
Linux), each posting the smallest valid check in turn, all 50 at once. While they post, the store is
read every 0.1 s from outside the server: it never holds more than the bound.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.harness.servers import REPO, start_serve, stop, subprocess_env

pytestmark = pytest.mark.slow

ADDRESSES = [f"127.0.0.{host}" for host in range(2, 52)]
CHECKS_PER_ADDRESS = 200
MAX_CHECKS = 500
MAX_POINTS = 2000
CONFIG = f"""
[store]
max_checks = {MAX_CHECKS}
max_points = {MAX_POINTS}

[serve]
check_burst = {CHECKS_PER_ADDRESS}
check_every_s = 86400
anonymous_check_burst = {len(ADDRESSES) * CHECKS_PER_ADDRESS}
anonymous_check_every_s = 86400
"""
SMALL_BODY = json.dumps({"devices": {"secure_context": True, "camera": "not_asked", "microphone": "not_asked",
                                     "speakers": "not_asked"}}).encode()


async def post_from(url: str, source: str) -> list[int]:
    """One client's checks, one after another, from `source`: the statuses."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=1)
    statuses = []
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(CHECKS_PER_ADDRESS):
            async with http.post(url + "/v1/checks", data=SMALL_BODY,
                                 headers={"Content-Type": "application/json"}) as response:
                await response.read()
                statuses.append(response.status)
    return statuses


def counts(store_path: Path) -> tuple[int, int]:
    db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=10.0)
    try:
        return (db.execute("SELECT COUNT(*) FROM checks").fetchone()[0],
                db.execute("SELECT COUNT(*) FROM points").fetchone()[0])
    finally:
        db.close()


async def flood(url: str, store_path: Path) -> tuple[list[int], list[tuple[int, int]]]:
    """Every client at once; meanwhile the store's sizes, read from outside every 0.1 s."""
    seen: list[tuple[int, int]] = []
    clients = asyncio.gather(*(post_from(url, source) for source in ADDRESSES))
    while not clients.done():
        seen.append(await asyncio.to_thread(counts, store_path))
        await asyncio.wait([clients], timeout=0.1)
    return [status for statuses in clients.result() for status in statuses], seen


def test_ten_thousand_anonymous_checks_from_50_addresses_leave_the_store_within_its_bound(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(CONFIG)
    env = subprocess_env(NETCHECK_HOME=str(tmp_path))
    store_path = tmp_path / "netcheck.sqlite3"
    server = start_serve(env=env)
    try:
        started_s = time.monotonic()
        statuses, seen = asyncio.run(flood(server.http_url, store_path))
        elapsed_s = time.monotonic() - started_s
        answer = subprocess.run([sys.executable, str(REPO / "cli.py"), "store", "stats", "--json"],
                                capture_output=True, text=True, timeout=60, env=env)
    finally:
        stop(server.process)
    total = len(ADDRESSES) * CHECKS_PER_ADDRESS
    print(f"{total} checks in {elapsed_s:.1f} s ({total / elapsed_s:.0f}/s); store read {len(seen)} times, "
          f"at most {max(seen, default=(0, 0))}")
    assert statuses.count(201) == total, {status: statuses.count(status) for status in set(statuses)}
    assert len(seen) >= 10 and all(checks <= MAX_CHECKS and points <= MAX_POINTS for checks, points in seen), seen

    assert answer.returncode == 0, answer.stderr
    stats = json.loads(answer.stdout)
    checks, measurements, points = (stats["tables"][name] for name in ("checks", "measurements", "points"))
    assert (checks["kept"], checks["max_rows"]) == (MAX_CHECKS, MAX_CHECKS)
    assert checks["dropped_by_count"] == total - MAX_CHECKS and checks["dropped_by_age"] == 0
    per_check = measurements["kept"] // MAX_CHECKS  # whatever rows a check of nothing measured has
    assert measurements["kept"] == per_check * MAX_CHECKS
    assert measurements["dropped_by_count"] == per_check * (total - MAX_CHECKS)
    assert (points["kept"], points["max_rows"]) == (MAX_POINTS, MAX_POINTS)
    assert stats["points_total"] == MAX_POINTS and stats["dropped"] == points["dropped_by_count"] > 0  # undelivered
    assert counts(store_path) == (MAX_CHECKS, MAX_POINTS)
