"""A session's own call as a leg (issue 25): `POST /v1/sessions/{id}/legs/{role}/call`.

The clinic's video page (web/callstats.js) posts a snapshot of its call's getStats every 5 s with
the session's token; the node keeps each leg's previous snapshot, takes the deltas itself
(browser/call_window.py), judges the window with the clinic's thresholds and the rows only a call
measures (`quality.assess`), runs the warnings' hysteresis (`AlertTracker`, as a tab's leg does) and
publishes the summary and warnings into the hub with `"source": "call"` set by the server, into the
node's store and, through the outbox, InfluxDB (`netcheck_call`, tag `source=call`). A window whose
counters contradict each other is dropped with a reason and counted (`CallCounters.dropped`), never
stored. Contract and bounds: docs/design-notes.md, "The call itself (issue 25)".

| answer | when |
|---|---|
| 200 `{"index", "level", "warnings", "source": "call"}` | a window judged |
| 202 `{"dropped": reason, "source": "call"}` | a baseline (`first_snapshot`, …) or inconsistent counters |
| 400 `bad_body` naming the field · 401 · 403 `role` · 404 `hub_disabled` · 413 | as the tab legs' |
| 429 `rate` + Retry-After | more than 3 posts at once, or one every 2 s on average, for one leg |
| 503 `busy` | the node follows `MAX_CALL_LEGS` calls already, none of them silent |
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from netcheck.browser.call_window import (
    DROP_REASONS,
    MAX_CALL_BODY_BYTES,
    Snapshot,
    WindowDropped,
    audio_packets,
    call_result,
    parse_call_window,
    window_deltas,
)
from netcheck.browser.check_body import BodyError
from netcheck.errors import StoreError
from netcheck.model import Measurement
from netcheck.quality import CALL_ONLY_METRICS, METRICS, Metric, assess
from netcheck.server.checks import CheckEndpoints
from netcheck.server.hub.routes import SessionHub
from netcheck.server.legs.publish import publish_events
from netcheck.server.legs.routes import LEG_PATH, leg_claims, node_address
from netcheck.server.rate import TokenBuckets
from netcheck.server.refusal import Refusal, bad_body, read_body
from netcheck.session.agent import WindowReport, window_to_dict
from netcheck.session.alerts import AlertTracker
from netcheck.session.loss_evidence import PacketCounts
from netcheck.session.events import summary_event, warning_event
from netcheck.session.hub_client import MAX_WAITING_EVENTS
from netcheck.store.points import Origin, report_points, warning_point

MAX_CALL_LEGS = 200
"""Calls one node follows at once; each holds its previous snapshot (a few kB) and its hysteresis."""
SILENT_S = 60.0
"""A call leg that has not posted for this long may be forgotten to make room for a new one."""
POSTS_PER_S = 0.5
POST_BURST = 3.0
"""A page's 5 s timer, late behind a busy tab, may post a few at once; faster is refused (429)."""
BUSY_RETRY_S = 60
SOURCE = "call"
WINDOW_S = 5.0
"""The module's posting interval: the summary's `window_s`."""


@dataclass
class CallCounters:
    """What this node did with call windows since it started (the admin's view)."""

    judged: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    refused: int = 0
    """Bodies that were not the contract's (400) or over the leg's rate (429)."""


class CallLeg:
    """One session's call as seen from one role's browser, from its first post until it goes silent."""

    def __init__(self, session_id: str, role: str, thresholds: tuple[Metric, ...]) -> None:
        self.session_id = session_id
        self.role = role
        self.previous: Snapshot = {}
        self.previous_at = datetime.now(timezone.utc)
        self.first_s = self.last_s = time.monotonic()
        self.alerts = AlertTracker(role, thresholds)
        self.index = 0
        self.waiting: deque[dict[str, Any]] = deque(maxlen=MAX_WAITING_EVENTS)
        self.lock = asyncio.Lock()


class SessionCalls:
    """The call legs' endpoint; register with `routes(app)`."""

    def __init__(self, hub: SessionHub | None, checks: CheckEndpoints | None) -> None:
        self.hub = hub
        self.checks = checks
        settings = checks.settings if checks is not None else None
        self.thresholds: tuple[Metric, ...] = (*(settings.thresholds if settings else METRICS), *CALL_ONLY_METRICS)
        self.legs: dict[tuple[str, str], CallLeg] = {}
        self.counters = CallCounters()
        self.post_limiter = TokenBuckets(POSTS_PER_S, POST_BURST, 2 * MAX_CALL_LEGS)
        """Posts per leg (tests widen it to post windows back to back)."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post(f"{LEG_PATH}/call", self.window)

    def _on_event(self, message: str) -> None:
        settings = self.checks.settings if self.checks is not None else None
        if settings is not None:
            settings.on_event(message)

    async def window(self, request: web.Request) -> web.Response:
        claims = leg_claims(self.hub, request)
        key = f"{claims.session_id}/{claims.role}"
        if not self.post_limiter.allow(key, time.monotonic()):  # before the body is read: a flood costs no parsing
            self.counters.refused += 1
            raise Refusal(429, "rate", "a call's statistics come once every 5 s", round(1 / POSTS_PER_S))
        try:
            _, snapshot = parse_call_window(await read_body(request, MAX_CALL_BODY_BYTES))
        except BodyError as error:
            self.counters.refused += 1
            raise bad_body(error) from None
        answer = await self.judge(claims.session_id, claims.role, snapshot, claims.accepted_until_s,
                                  node_address(request))
        status = 202 if "dropped" in answer else 200
        return web.json_response(answer, status=status, headers={"Cache-Control": "no-store"})

    async def judge(self, session_id: str, role: str, snapshot: Snapshot, accepted_until_s: float,
                    server: str) -> dict[str, Any]:
        """One snapshot of (session, role)'s call judged against the leg's previous one: the posts' and the
        rtcstats door's one way in (server/legs/rtcstats.py). Refusal 503 `busy` when no leg is free."""
        leg = self._leg(session_id, role)
        async with leg.lock:
            return await self._judge(leg, snapshot, accepted_until_s, server)

    def _leg(self, session_id: str, role: str) -> CallLeg:
        key = (session_id, role)
        leg = self.legs.get(key)
        if leg is None:
            if len(self.legs) >= MAX_CALL_LEGS:
                now_s = time.monotonic()
                for silent in [k for k, other in self.legs.items() if now_s - other.last_s > SILENT_S]:
                    del self.legs[silent]
            if len(self.legs) >= MAX_CALL_LEGS:
                raise Refusal(503, "busy", f"this node follows {MAX_CALL_LEGS} calls already", BUSY_RETRY_S)
            leg = self.legs[key] = CallLeg(session_id, role, self.thresholds)
        leg.last_s = time.monotonic()
        return leg

    async def _judge(self, leg: CallLeg, snapshot: Snapshot, accepted_until_s: float, server: str) -> dict[str, Any]:
        """The window between the leg's previous snapshot and this one, judged, published and stored."""
        try:
            deltas = window_deltas(leg.previous, snapshot)
        except WindowDropped as dropped:
            self.counters.dropped[dropped.reason] += 1
            if dropped.rebase:
                leg.previous, leg.previous_at = snapshot, datetime.now(timezone.utc)
            return {"dropped": dropped.reason, "source": SOURCE}
        result = call_result(deltas, time.monotonic() - leg.first_s)
        started_at = leg.previous_at.isoformat(timespec="milliseconds")
        ended = datetime.now(timezone.utc)
        measurements = {"call": Measurement("call", started_at, result.duration_s or 0.0, result)}
        assessment = assess({"call": result}, self.thresholds)
        packets = audio_packets(deltas)
        warnings = tuple(leg.alerts.update(assessment.cues, PacketCounts(*packets) if packets else None))
        window = WindowReport(uuid.uuid4().hex, leg.index, started_at, result.duration_s or 0.0, measurements,
                              assessment, ended.isoformat(timespec="milliseconds"), warnings)
        events = [summary_event(leg.session_id, leg.role, started_at, leg.index, WINDOW_S, assessment, measurements),
                  *(warning_event(leg.session_id, leg.role, window.ended_at, w) for w in warnings)]
        await publish_events(self.hub, leg.session_id, leg.role, accepted_until_s, leg.waiting, events, "call",
                             self._on_event, SOURCE)
        await self._store(leg, window, [{**event, "source": SOURCE} for event in events], server,
                          int(leg.previous_at.timestamp() * 1000), int(ended.timestamp() * 1000))
        self.counters.judged += 1
        leg.previous, leg.previous_at = snapshot, ended
        leg.index += 1
        return {"index": window.index, "level": assessment.level.value,
                "warnings": [cue.value for cue in leg.alerts.active], "source": SOURCE}

    async def _store(self, leg: CallLeg, window: WindowReport, events: list[dict[str, Any]], server: str,
                     time_ms: int, ended_ms: int) -> None:
        """The window, its events and its points (`source=call`) in the node's store; the outbox delivers them."""
        checks = self.checks
        if checks is None or checks.writer is None:
            return
        settings = checks.settings
        origin = Origin(agent=checks.agent_id, kind="session", role=leg.role, site=settings.site if settings else None,
                        server=server, session_id=leg.session_id, client="browser", source=SOURCE)
        points = report_points(window.measurements, window.assessment, origin, time_ms)
        points += [warning_point(w.kind, w.cue.value, w.level, w.metric, w.value, w.message, w.advice, origin,
                                 ended_ms) for w in window.warnings]
        record = {**window_to_dict(window), "session_id": leg.session_id, "role": leg.role, "client": "browser",
                  "source": SOURCE}
        try:
            await checks.writer.write(lambda store: store.save_window(record, [], events))
        except StoreError as error:
            self._on_event(f"session {leg.session_id}: the {leg.role}'s call window could not be stored: {error}")
            return
        checks.store_points(points)

