"""Guards the headline of BENCHMARKS.md "Session hub capacity of one node": with the Redis backend
one node alone on a core carries 3,000 sessions (2 legs posting every 5 s + 1 watcher each) at
p99 post → SSE ≤ 1 s with no failed post (median of 5 runs: 3,000; p99 there 574–775 ms; the node's
core runs out at 3,500). It runs the benchmark itself (a real node, a real redis-server), reaching
3,000 in two steps as the benchmark does: 3,000 sessions starting in the same second are a storm
of connections that one 6 s warm-up does not absorb (p99 2.4–3.1 s), not the steady state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SESSIONS = 3000


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the node needs a core to itself")
def test_one_node_with_redis_carries_3000_sessions_within_1_s_at_p99() -> None:
    run = subprocess.run([sys.executable, "benchmarks/hub_capacity.py", "--backend", "redis", "--node-core", "1",
                          "--steps", f"{SESSIONS // 2},{SESSIONS}", "--measure", "10"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    *_, step = json.loads(run.stdout.splitlines()[-1])["steps"]
    assert step["sessions"] == SESSIONS, json.dumps(step)
    assert step["posts_failed"] == 0 and step["errors"] == {}, json.dumps(step)
    assert step["p99_ms"] is not None and step["p99_ms"] <= 1000, step
    assert step["events_received"] >= 0.95 * step["posts_ok"], step
