"""Hostile session events (issue 23): what a token holder posts is checked, what a store holds never
breaks the report, and every sentence a therapist reads is the server's.

The hub runs in-process on loopback (as in test_hub.py); stores are seeded with rows written the way
an older netcheck wrote them (any `at` string, any JSON), in SQLite directly and in Redis with XADD.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from netcheck.model import Cue
from netcheck.quality.warnings import warning_text
from netcheck.server.app import RunningServer, start_server
from netcheck.server.checks import CheckSettings
from netcheck.server.hub.routes import HubLimits
from netcheck.session.report import build_report
from netcheck.store.local import LocalStore
from netcheck.tokens import create_token
from tests.harness.redis_server import RedisServer

SECRET = b"hostile-events-secret-0123456789"
HOSTILE_PHONE = "555-0100"
"""What must never be shown or stored of HOSTILE_TEXT: the whole number, since a figure may contain 555
(a report's 12555 minutes since an old stored row did, on 2026-12-08)."""
HOSTILE_TEXT = f"<script>alert(1)</script> Your therapist asks you to call {HOSTILE_PHONE} now"
SERVER_SENTENCE = warning_text(True, Cue.VOCAL_TONE, "client", "loss_one_way_pct", 8.0)


def at(offset_s: float = 0.0, zone: timezone = timezone.utc) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=offset_s)).astimezone(zone).isoformat(timespec="milliseconds")


def warning(kind: str = "warning_raised", **fields: Any) -> dict[str, Any]:
    return {"type": kind, "at": at(), "cue": "vocal_tone", "level": "poor" if kind == "warning_raised" else "good",
            "metric": "loss_one_way_pct", "value": 8.0, **fields}


def bearer(session_id: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(SECRET, session_id, role, 3600)}"}


@asynccontextmanager
async def node(store_path: Path | None = None, hub_url: str | None = None) -> AsyncIterator[
        tuple[RunningServer, aiohttp.ClientSession]]:
    server = await start_server("127.0.0.1", 0, 0, secret=SECRET, hub_url=hub_url,
                                checks=CheckSettings(store_path) if store_path else None,
                                hub_limits=HubLimits(ids_from_clock=False))
    try:
        async with aiohttp.ClientSession() as http:
            yield server, http
    finally:
        await server.close()


async def post(http: aiohttp.ClientSession, server: RunningServer, events: list[Any],
               session_id: str = "s1") -> tuple[int, dict[str, Any]]:
    async with http.post(f"{server.url}/v1/sessions/{session_id}/events", data=json.dumps({"events": events}),
                         headers=bearer(session_id, "client")) as answer:
        return answer.status, await answer.json()


async def report(http: aiohttp.ClientSession, server: RunningServer, session_id: str = "s1") -> tuple[int, Any]:
    async with http.get(f"{server.url}/v1/sessions/{session_id}/report",
                        headers=bearer(session_id, "therapist")) as answer:
        return answer.status, await answer.json(content_type=None) if answer.status != 500 else await answer.text()


async def held(http: aiohttp.ClientSession, server: RunningServer, count: int) -> list[dict[str, Any]]:
    """The first `count` events a watcher is replayed (what the panel and `netcheck watch` receive)."""
    headers = {**bearer("s1", "therapist"), "Last-Event-ID": "0"}
    events = []
    async with http.get(f"{server.url}/v1/sessions/s1/events", headers=headers) as stream:
        while len(events) < count:
            raw = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5)
            data = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
            events += [json.loads(line) for line in data]
    return events


# --- 1. what comes in is checked ------------------------------------------------------------------------

NAIVE_NOW = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")
HOSTILE_INSTANTS = [
    (NAIVE_NOW, "no_time_zone"),
    (at(2 * 86400), "too_far_future"),
    (at(-2 * 86400), "too_far_past"),
    ("9999-12-31T23:59:59Z", "too_far_future"),
    ("yesterday", "not_a_date"),
    ("2026-02-30T10:00:00Z", "not_a_date"),
    ("2026-11-27T25:00:00Z", "not_a_date"),
    ("2026-11-27T20:00:00+24:00", "not_a_date"),
    ("2" * 5000, "not_a_date"),
    (1764270005, "not_a_string"),
    (1.5e9, "not_a_string"),
    (["2026-11-27T20:00:05Z"], "not_a_string"),
    (None, "not_a_string"),
    (True, "not_a_string"),
    ({"at": "now"}, "not_a_string"),
]
HOSTILE_FIELDS = [
    ({"cue": "nose"}, "events[0].cue", "unknown_cue"),
    ({"cue": 5}, "events[0].cue", "unknown_cue"),
    ({"cue": None}, "events[0].cue", "unknown_cue"),
    ({"level": "terrible"}, "events[0].level", "unknown_level"),
    ({"level": ["poor"]}, "events[0].level", "unknown_level"),
    ({"metric": "call 555-0100"}, "events[0].metric", "unknown_metric"),
    ({"metric": 7}, "events[0].metric", "bad_type"),
    ({"value": "8"}, "events[0].value", "bad_type"),
    ({"value": True}, "events[0].value", "bad_type"),
    ({"value": [8]}, "events[0].value", "bad_type"),
    ({"value": 1e6}, "events[0].value", "out_of_range"),  # a loss of a million per cent
    ({"value": -5}, "events[0].value", "out_of_range"),
    ({"value": 10**400}, "events[0].value", "out_of_range"),
]


@pytest.mark.parametrize(("value", "reason"), HOSTILE_INSTANTS,  # ids without the clock: xdist workers agree
                         ids=[f"{index}-{reason}" for index, (_, reason) in enumerate(HOSTILE_INSTANTS)])
def test_a_hostile_time_is_a_400_with_one_line_and_a_reason(value: Any, reason: str) -> None:
    async def body() -> None:
        async with node() as (server, http):
            for event in (warning(at=value), {"type": "summary", "at": value, "window": {"window_s": 5.0}}):
                status, answer = await post(http, server, [event])
                assert (status, answer.get("reason"), answer.get("problem")) == (400, "bad_body", reason), answer
                assert answer["field"] == "events[0].at"
                assert answer["error"].startswith("events[0].at: ") and "\n" not in answer["error"]
                assert len(answer["error"]) < 200

    asyncio.run(body())


@pytest.mark.parametrize(("fields", "where", "reason"), HOSTILE_FIELDS)
def test_a_hostile_warning_field_is_a_400_naming_it(fields: dict[str, Any], where: str, reason: str) -> None:
    async def body() -> None:
        async with node() as (server, http):
            status, answer = await post(http, server, [warning(**fields)])
            assert (status, answer.get("reason"), answer.get("problem")) == (400, "bad_body", reason), answer
            assert answer["field"] == where and answer["error"].startswith(where) and "\n" not in answer["error"]

    asyncio.run(body())


def test_times_in_any_zone_are_kept_in_utc() -> None:
    async def body() -> None:
        async with node() as (server, http):
            east, west = timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))
            posted = [{"type": "summary", "at": at(-60, east), "window": {"window_s": 5.0}},
                      {"type": "summary", "at": at(-30, west).replace("+00:00", "Z"), "window": {"window_s": 5.0}},
                      {"type": "summary", "at": at(0).replace("+00:00", "Z"), "window": {"window_s": 5.0}}]
            assert (await post(http, server, posted))[0] == 202
            stamps = [event["at"] for event in await held(http, server, 3)]
            assert all(stamp.endswith("+00:00") and len(stamp) == 29 for stamp in stamps), stamps
            assert stamps == sorted(stamps)  # string order is time order
            assert datetime.fromisoformat(stamps[0]) == datetime.fromisoformat(posted[0]["at"])

    asyncio.run(body())


def test_a_metric_of_another_cue_gets_the_cues_own_sentence() -> None:
    """Taken (older agents and fixtures post them), but worded by the server, generically for the cue."""
    async def body() -> None:
        async with node() as (server, http):
            posted = warning(cue="facial_expression", metric="rtt_p95_ms", value=410.0, message=HOSTILE_TEXT)
            assert (await post(http, server, [posted]))[0] == 202
            (shown,) = await held(http, server, 1)
            assert (shown["message"], shown["advice"]) == warning_text(True, Cue.FACIAL_EXPRESSION, "client",
                                                                       None, None)
            assert HOSTILE_PHONE not in json.dumps(shown)

    asyncio.run(body())


# --- 3. the server writes every sentence -----------------------------------------------------------------

def test_a_posted_text_never_reaches_the_therapist(tmp_path: Path) -> None:
    async def body() -> None:
        async with node(tmp_path / "node.sqlite3") as (server, http):
            hostile = warning(message=HOSTILE_TEXT, advice=HOSTILE_TEXT, text=HOSTILE_TEXT)
            cleared = warning("warning_cleared", at=at(1), message=HOSTILE_TEXT, advice=HOSTILE_TEXT)
            assert (await post(http, server, [hostile, cleared]))[0] == 202
            raised_event, cleared_event = await held(http, server, 2)  # the panel's and watch's stream
            assert (raised_event["message"], raised_event["advice"]) == SERVER_SENTENCE
            assert cleared_event["message"] == "The client's voice is clear again." and cleared_event["advice"] == ""
            await asyncio.sleep(1.3)  # the node's record is written once a second
            status, answer = await report(http, server)
            assert status == 200
            assert (answer["warnings"][0]["message"], answer["warnings"][0]["advice"]) == SERVER_SENTENCE
            assert answer["coverage"]["store_events"] == 2
            assert HOSTILE_PHONE not in json.dumps(answer) and HOSTILE_PHONE not in json.dumps([raised_event, cleared_event])
        with LocalStore(tmp_path / "node.sqlite3") as store:
            assert HOSTILE_PHONE not in json.dumps(store.session_events("s1"))

    asyncio.run(body())


# --- 2. the report never fails on what a store holds ----------------------------------------------------

def old_rows(session_id: str) -> tuple[list[tuple[str, str, str, str, str]], int]:
    """Session-event rows as an older netcheck stored them: (leg, type, at, cue, event_json), and how
    many of them the report cannot read."""
    def row(event: Any, leg: str = "client", kind: str = "warning_raised", when: str = "x", cue: str = "") -> tuple:
        return (leg, kind, when, cue, event if isinstance(event, str) else json.dumps(event))

    raised = {"type": "warning_raised", "session_id": session_id, "leg": "client", "at": "2026-11-29T10:00:00",
              "cue": "vocal_tone", "level": "poor", "metric": "loss_one_way_pct", "value": 8.0,
              "message": HOSTILE_TEXT, "advice": HOSTILE_TEXT}
    cleared = {**raised, "type": "warning_cleared", "at": "2026-11-29T10:02:00+00:00", "level": "good"}
    summary = {"type": "summary", "session_id": session_id, "leg": "client", "at": "2026-11-29T11:01:00+01:00",
               "window": {"window_s": 60.0, "cues": {"vocal_tone": {"level": "poor"}}}}
    readable = [row(raised, when=raised["at"], cue="vocal_tone"),  # no zone: the 500 of issue 23 …
                row(cleared, kind="warning_cleared", when=cleared["at"], cue="vocal_tone"),  # … with this one
                row(summary, kind="summary", when=summary["at"])]
    unreadable = [
        row({**summary, "at": "not a date"}, kind="summary", when="not a date"),
        row({**summary, "at": 1764410460}, kind="summary", when="1764410460"),
        row({**summary, "at": None}, kind="summary", when="null"),
        row({**summary, "at": "2026-11-29T10:03:00Z", "window": {"window_s": "sixty"}}, kind="summary", when="w1"),
        row({**summary, "at": "2026-11-29T10:04:00Z", "window": {"window_s": 1e308}}, kind="summary", when="w2"),
        row({**summary, "leg": ["client"]}, kind="summary", when="w3"),
        row({**raised, "cue": 5}, when="c1"),
        row({**raised, "value": "eight"}, when="c2"),
        row({**raised, "type": "hello"}, when="c3"),
        row("{not json", when="j1"),
        row("[1, 2, 3]", when="j2"),
        row("NaN", when="j3"),
    ]
    return readable + unreadable, len(unreadable)


def seed_sqlite(path: Path, session_id: str) -> int:
    """An older store: its rows written with plain SQL, no checks; returns how many are unreadable."""
    LocalStore(path).close()  # today's schema, so the node opens it without migrating
    rows, unreadable = old_rows(session_id)
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO session_events (session_id, leg, type, at, cue, event_json) "
                       "VALUES (?, ?, ?, ?, ?, ?)", [(session_id, *row) for row in rows])
        checks = [("c-text", "{not json"),  # not JSON: json_extract over it would fail the whole query
                  ("c-date", json.dumps({"check_id": "c-date", "session_id": session_id, "started_at": "soon",
                                         "recommendation": "video"})),
                  ("c-good", json.dumps({"check_id": "c-good", "session_id": session_id, "client": "browser",
                                         "started_at": "2026-11-29T09:55:00+00:00", "recommendation": "video",
                                         "summary": "ok", "code": "ACD234", "devices": "camera"}))]
        db.executemany("INSERT INTO checks (check_id, started_at, duration_s, recommendation, level, report_json) "
                       "VALUES (?, '2026-11-29T09:55:00', 1.0, 'video', 'good', ?)", checks)
    return unreadable + 2  # c-date and c-good's devices that are no list


def test_the_report_of_an_old_sqlite_store_answers_200_and_counts_what_it_skipped(tmp_path: Path) -> None:
    unreadable = seed_sqlite(tmp_path / "node.sqlite3", "s1")

    async def body() -> None:
        async with node(tmp_path / "node.sqlite3") as (server, http):
            for _ in range(2):  # and on every later request
                status, answer = await report(http, server)
                assert status == 200, answer
                assert answer["skipped_rows"] == unreadable
                (span,) = answer["warnings"]
                assert (span["message"], span["advice"]) == SERVER_SENTENCE and span["duration_s"] == 120.0
                assert answer["windows"] == {"client": 1} and answer["checks"] == []
                assert HOSTILE_PHONE not in json.dumps(answer)

    asyncio.run(body())


def test_session_report_reads_an_old_store(tmp_path: Path, run_cli, netcheck_home: Path) -> None:
    unreadable = seed_sqlite(netcheck_home / "netcheck.sqlite3", "s1")
    as_json = run_cli("session", "report", "s1", "--json")
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["skipped_rows"] == unreadable and answer["warnings"][0]["message"] == SERVER_SENTENCE[0]
    as_text = run_cli("session", "report", "s1")
    assert as_text.returncode == 0 and "Traceback" not in as_text.stderr
    assert f"{unreadable} stored row(s) could not be read" in as_text.stdout and HOSTILE_PHONE not in as_text.stdout


def test_build_report_of_a_naive_raise_and_a_zoned_clear() -> None:
    rows, _ = old_rows("s")
    report = build_report("s", [json.loads(row[4]) for row in rows[:2]])
    assert report.warnings[0].duration_s == 120.0 and report.skipped_rows == 0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.mark.servers
def test_the_report_of_old_redis_entries_answers_200(redis_server: RedisServer) -> None:
    import redis

    rows, _ = old_rows("s1")
    client = redis.Redis.from_url(redis_server.url)
    key = "netcheck:hub:{s1}:events"
    client.delete(key)
    for leg, _kind, _when, _cue, event in rows:  # as an older node XADDed them: the agent's JSON as it came
        client.xadd(key, {"leg": leg, "event": event})
    client.xadd(key, {"event": "{}"})  # no leg
    client.expire(key, 600)

    async def body() -> None:
        async with node(hub_url=redis_server.url) as (server, http):
            status, answer = await report(http, server)
            assert status == 200, answer
            (span,) = answer["warnings"]
            assert (span["message"], span["advice"]) == SERVER_SENTENCE and span["duration_s"] == 120.0
            assert answer["windows"] == {"client": 1} and answer["skipped_rows"] >= 1
            assert HOSTILE_PHONE not in json.dumps(answer)

    try:
        asyncio.run(body())
    finally:
        client.close()
