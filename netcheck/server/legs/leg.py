"""One open session tab measured as its token's leg (the client's or the therapist's): its windows,
warnings and where they go.

Each window the tab posts its report; the server adds its own records of the same window (the voice
stream's arrivals, the picture it received, its RTCP round trip), builds the probes' results
(browser/tab.py), judges them with the clinic's thresholds (`quality.assess`), runs the warnings'
hysteresis (`alerts.AlertTracker`, with the packets' loss evidence as the agent passes it), and
publishes the agent's events: a summary and the warnings raised or cleared, into the session hub
as the tab's leg (its token's role, as `netcheck agent --role` does), into the node's store with the
window's points (`kind=session`, `role=<the leg>`, `client=browser`), from where the outbox delivers
them to InfluxDB. So `netcheck watch`, `session report`, the therapist's panel and the dashboards
read a tab's leg as an agent's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from netcheck.session.agent import WindowReport, packet_counts, window_to_dict
from netcheck.session.alerts import AlertTracker
from netcheck.browser.tab import voice_window, window_av
from netcheck.errors import StoreError
from netcheck.session.hub_client import MAX_WAITING_EVENTS
from netcheck.model import Measurement, ProbeResult
from netcheck.store.points import Origin, report_points, warning_point
from netcheck.quality import METRICS, Metric, assess
from netcheck.server.checks import CheckEndpoints
from netcheck.server.hub.routes import SessionHub
from netcheck.server.headroom import CpuHeadroom
from netcheck.server.legs.peer import ARRIVALS_KEPT_S, LegPeer
from netcheck.server.legs.publish import publish_events
from netcheck.session.events import summary_event, warning_event
from netcheck.tokens import LEGS


@dataclass(frozen=True)
class LegSinks:
    """Where a tab's windows go: the hub (None: off), the node's checks endpoints (their store and
    outbox), how they are judged, and the tags of their points."""

    hub: SessionHub | None
    checks: CheckEndpoints | None
    """Its `store` is None when the server keeps no store."""
    thresholds: tuple[Metric, ...] = METRICS
    site: str | None = None
    server: str | None = None
    """This node as host:port (the points' `server` tag)."""
    on_event: Callable[[str], None] = field(default=lambda message: None, repr=False)


class TabLeg:
    """A tab's leg of one session, from its offer until it closes."""

    def __init__(self, leg_id: str, session_id: str, role: str, until_s: float, peer: LegPeer, window_s: float,
                 sinks: LegSinks, cpu: CpuHeadroom | None = None) -> None:
        if role not in LEGS:  # a check token measures no session leg
            raise ValueError(f"a tab measures a client's or a therapist's leg, not {role!r}")
        self.leg_id = leg_id
        self.session_id = session_id
        self.role = role
        """client or therapist: the token's role, the hub's leg and the points' `role` tag."""
        self.until_s = until_s
        """Unix seconds: the token's end; the leg closes then."""
        self.peer = peer
        self.window_s = window_s
        self.sinks = sinks
        self.cpu = cpu
        self.alerts = AlertTracker(role, sinks.thresholds)
        self.index = 0
        self.window_start_s = time.monotonic()
        self.window_started = datetime.now(timezone.utc)
        self.last_report_s = self.window_start_s
        self.waiting: deque[dict[str, Any]] = deque(maxlen=MAX_WAITING_EVENTS)
        """Events the hub could not take yet (over its rate, Redis away): sent with the next window."""
        self.lock = asyncio.Lock()
        """One window at a time."""

    async def window(self, report: dict[str, Any]) -> dict[str, Any]:
        """Close the current window with the tab's report; the answer tells the tab what to show."""
        async with self.lock:
            return await self._window(report)

    async def _window(self, report: dict[str, Any]) -> dict[str, Any]:
        end_s = time.monotonic()
        ended = datetime.now(timezone.utc)
        duration_s = end_s - self.window_start_s
        started_at = self.window_started.isoformat(timespec="milliseconds")
        results: dict[str, ProbeResult] = {}
        arrivals = self.peer.voice.take(older_than_ms=(end_s - ARRIVALS_KEPT_S) * 1000.0)
        if (udp := voice_window(report["voice"], arrivals)) is not None:
            results["udp"] = udp
        # the node short of CPU during the window (its own, headroom.py): its figures are not held against the tab
        spell = self.cpu.during(self.window_start_s) if self.cpu is not None else None
        av = window_av(self.peer.take_video(end_s), report, duration_s, await self.peer.server_rtt_ms(),
                       spell.cpu_max_pct if spell else None, spell.short_of_cpu if spell else None)
        if av is not None:
            results["av"] = av
        measurements = {name: Measurement(name, started_at, round(duration_s, 3), result)
                        for name, result in results.items()}
        assessment = assess(results, self.sinks.thresholds)
        warnings = tuple(self.alerts.update(assessment.cues, packet_counts(results.get("udp"))))
        window = WindowReport(uuid.uuid4().hex, self.index, started_at, round(duration_s, 3), measurements,
                              assessment, ended.isoformat(timespec="milliseconds"), warnings)
        events = [summary_event(self.session_id, self.role, started_at, self.index, self.window_s, assessment,
                                measurements),
                  *(warning_event(self.session_id, self.role, window.ended_at, w) for w in warnings)]
        await self._publish(events)
        await self._store(window, events, report, int(self.window_started.timestamp() * 1000),
                          int(ended.timestamp() * 1000))
        self.index += 1
        self.window_start_s, self.window_started, self.last_report_s = end_s, ended, end_s
        active = [cue.value for cue in self.alerts.active]
        return {"index": window.index, "level": assessment.level.value,
                "connection": "weak" if active else "ok", "warnings": active}

    async def close(self) -> None:
        await self.peer.close()

    async def _publish(self, events: list[dict[str, Any]]) -> None:
        """Into the hub as this tab's leg (publish.py: the hub's own validation and post rate, exactly as
        an agent's POST goes; what it refuses now waits for the next window)."""
        await publish_events(self.sinks.hub, self.session_id, self.role, self.until_s, self.waiting, events, "tab",
                             self.sinks.on_event)

    async def _store(self, window: WindowReport, events: list[dict[str, Any]], report: dict[str, Any], time_ms: int,
                     ended_ms: int) -> None:
        """The window, its session events and its points in the node's store; the outbox delivers them."""
        checks = self.sinks.checks
        if checks is None or checks.writer is None:
            return
        writer = checks.writer
        try:
            origin = Origin(agent=checks.agent_id, kind="session", role=self.role, site=self.sinks.site,
                            server=self.sinks.server, session_id=self.session_id, client="browser")
            points = report_points(window.measurements, window.assessment, origin, time_ms)
            points += [warning_point(w.kind, w.cue.value, w.level, w.metric, w.value, w.message, w.advice, origin,
                                     ended_ms) for w in window.warnings]
            sending, receiving = report["upstream"] or {}, report["downstream"] or {}
            record = {**window_to_dict(window), "session_id": self.session_id, "role": self.role, "client": "browser",
                      "tab": {"quality_limitation": sending.get("quality_limitation"),
                              "sending_kbps": sending.get("video_bitrate_kbps"),
                              "receiving_kbps": receiving.get("video_bitrate_kbps")}}
            await writer.write(lambda store: store.save_window(record, [], events))  # off the loop (store/writer.py)
        except StoreError as error:
            self.sinks.on_event(f"session {self.session_id}: the {self.role}'s tab's window could not be stored: "
                                f"{error}")
            return
        checks.store_points(points)  # and wakes the outbox's delivery
