"""A session's report covers all of it: the node records every accepted hub event in its store.

The hub holds only a session's last `history_events`; two agents fill the default 500 in about 20
minutes, so without the node's record a 50-minute session's report would start late.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp

from netcheck.config import StoreLimits
from netcheck.server.app import start_server
from netcheck.server.checks import CheckSettings
from netcheck.server.hub.routes import HubLimits
from netcheck.store.local import LocalStore
from netcheck.tokens import create_token

SECRET = b"session-record-secret-0123456789"
START = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
"""The session's first minute: within the day of the server's clock that the hub takes (netcheck/instants.py)."""


def summary(minute: int) -> dict:
    return {"type": "summary", "at": (START + timedelta(minutes=minute)).isoformat(timespec="milliseconds"),
            "window": {"index": minute, "window_s": 60.0, "cues": {"vocal_tone": {"level": "good"}}}}


async def report_after_posts(store_path: Path, posts: int) -> dict:
    server = await start_server("127.0.0.1", 0, 0, secret=SECRET, checks=CheckSettings(store_path),
                                hub_limits=HubLimits(history_events=5, ids_from_clock=False,
                                                    post_rate_per_s=1000.0, post_burst=100))
    client = {"Authorization": f"Bearer {create_token(SECRET, 's1', 'client', 600)}"}
    therapist = {"Authorization": f"Bearer {create_token(SECRET, 's1', 'therapist', 600)}"}
    try:
        async with aiohttp.ClientSession() as http:
            for minute in range(posts):
                async with http.post(f"{server.url}/v1/sessions/s1/events", headers=client,
                                     data=json.dumps({"events": [summary(minute)]})) as answer:
                    assert answer.status == 202
            await asyncio.sleep(1.5)  # the node writes its record once a second
            async with http.get(f"{server.url}/v1/sessions/s1/report", headers=therapist) as answer:
                assert answer.status == 200
                return await answer.json()
    finally:
        await server.close()


def test_the_report_covers_more_than_the_hub_holds(tmp_path: Path) -> None:
    report = asyncio.run(report_after_posts(tmp_path / "node.sqlite3", 12))
    assert report["windows"] == {"client": 12}, report  # the hub held 5
    assert report["first_at"] == START.isoformat(timespec="milliseconds")
    assert report["minutes_by_level"]["client"]["vocal_tone"]["good"] == 12.0


def test_the_nodes_record_keeps_the_newest_events(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "node.sqlite3", limits=StoreLimits(max_session_events=4)) as store:
        store.add_session_events([{**summary(minute), "session_id": "s1", "leg": "client"} for minute in range(10)])
        assert store.table_stats()["session_events"].dropped_by_count == 6
        assert [event["at"][14:16] for event in store.session_events("s1")] == ["06", "07", "08", "09"]
        store.add_session_events([{**summary(9), "session_id": "s1", "leg": "client"}])  # the same event again
        assert store.table_stats()["session_events"].dropped_by_count == 6
