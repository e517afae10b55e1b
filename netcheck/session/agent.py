"""The background agent: light probing in fixed windows during a session, stored first, then delivered.

Scheduling is Telegraf's: windows start on a fixed grid (start + n × window_s); the agent, not a
probe, owns it. A window that overruns its slot makes the agent skip the slots it missed (and
count them) instead of stacking windows. Each window runs a low-rate UDP stream (10 packets/s
of 64 bytes by default, about 7 kbit/s each way) and the system probe, and every `av_every_s`
a small A/V probe starts in a short-lived subprocess, so that aiortc (≈ 170 ms to import, ≈ 100 MB
while a call runs) never lives in the agent. The window's measurements, its assessment and their
points are stored in one transaction; delivery to InfluxDB runs beside it (delivery.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from netcheck.session.alerts import AlertTracker, WarningEvent
from netcheck.store.delivery import Deliverer
from netcheck.store.influx import WriteError
from netcheck.errors import MeasurementError
from netcheck.session.hub_client import HubPoster
from netcheck.session.loss_evidence import PacketCounts
from netcheck.model import Assessment, Measurement, ProbeResult, Status, assessment_to_dict, result_fields
from netcheck.store.points import (
    AGENT_MEASUREMENT,
    Origin,
    Point,
    report_points,
    warning_point,
)
from netcheck.probes.av_subprocess import run_av_subprocess
from netcheck.probes.base import run_probe
from netcheck.probes.system import SystemProbe
from netcheck.probes.udp import KEY_EXPIRED_ERROR, UdpProbe, UdpProbeSettings, failed_result
from netcheck.results import AvResult, UdpResult
from netcheck.quality import METRICS, Metric, assess
from netcheck.net.server_info import ReflectorAddress, find_reflector
from netcheck.session.events import summary_event, warning_event
from netcheck.store.local import LocalStore

UDP_SHARE_OF_WINDOW = 0.8
"""The UDP stream fills 80 % of a window; the rest is for late replies and the loss count."""
SHUTDOWN_DELIVERY_S = 3.0
"""After a stop signal: deliver what can go within this, then exit; the rest waits in the store."""


@dataclass(frozen=True)
class AgentSettings:
    server_url: str
    role: str = "client"
    session_id: str | None = None
    site: str | None = None
    window_s: float = 5.0
    udp_rate_pps: float = 10.0
    udp_size_bytes: int = 64
    udp_target: tuple[str, int] | None = None
    hmac_key: bytes | None = field(default=None, repr=False)
    av_every_s: float = 300.0
    """0 = never."""
    av_duration_s: float = 2.0
    av_video: str = "320x240@30"
    av_audio_offset_ms: float = 0.0
    duration_s: float | None = None
    """Stop after this long (None: until a signal)."""
    once: bool = False
    thresholds: tuple[Metric, ...] = METRICS
    token: str | None = field(default=None, repr=False)
    """A session token (netcheck token create): with a session id, windows and warnings go to the hub."""

    def udp_settings(self) -> UdpProbeSettings:
        settings = UdpProbeSettings(interval_ms=1000.0 / self.udp_rate_pps,
                                    duration_s=self.window_s * UDP_SHARE_OF_WINDOW,
                                    size_bytes=self.udp_size_bytes, hmac_key=self.hmac_key)
        settings.validate()
        return settings


@dataclass(frozen=True)
class WindowReport:
    """One window: what was measured and what it means."""

    window_id: str
    index: int
    started_at: str
    duration_s: float
    measurements: dict[str, Measurement]
    """The probes run in this window; `av` only in the window in which an A/V run finished."""
    assessment: Assessment
    """Judged on this window's UDP and system figures and the latest A/V run."""
    ended_at: str
    warnings: tuple[WarningEvent, ...]
    """Warnings this window raised or cleared (hysteresis across windows, alerts.py)."""


@dataclass
class AgentCounters:
    windows: int = 0
    skipped_windows: int = 0
    """Grid slots missed because a window overran; never made up."""
    av_runs: int = 0
    av_skipped: int = 0
    """A/V runs not started because the previous one was still running."""
    points_dropped: int = 0
    """Undelivered points this run deleted to stay within the store's max_points."""


class Agent:
    """Runs windows until `stop` is set, `duration_s` passes, or after one window with `once`."""

    def __init__(self, settings: AgentSettings, store: LocalStore, deliverer: Deliverer | None,
                 on_window: Callable[[WindowReport], None] = lambda report: None,
                 on_event: Callable[[str], None] = lambda message: None,
                 hub: HubPoster | None = None) -> None:
        self.settings = settings
        self.store = store
        self.deliverer = deliverer
        self.on_window = on_window
        self.on_event = on_event
        self.counters = AgentCounters()
        self.hub = hub
        self.udp_settings = settings.udp_settings()
        self.thresholds = settings.thresholds
        self.alerts = AlertTracker(settings.role, self.thresholds)
        self.origin = Origin(agent=store.agent_id(), kind="session", role=settings.role, site=settings.site,
                             server=urlsplit(settings.server_url).netloc, session_id=settings.session_id)
        self._reflector: ReflectorAddress | None = None
        self._av_task: asyncio.Task[AvResult] | None = None
        self._latest_av: AvResult | None = None
        self._new_points = asyncio.Event()
        self._process: Any = None

    async def run(self, stop: asyncio.Event) -> AgentCounters:
        """The window loop, with delivery beside it; returns when stopped, after a last delivery."""
        import psutil

        self._process = psutil.Process()
        self._process.cpu_percent(None)
        delivery_stop = asyncio.Event()
        delivery = (asyncio.create_task(self.deliverer.run(self._new_points, delivery_stop))
                    if self.deliverer else None)
        try:
            await self._window_loop(stop)
        finally:
            delivery_stop.set()
            if delivery is not None:
                await delivery
            await self._cancel_av()
            if self.hub is not None:
                await self.hub.close()
            if self.deliverer is not None:
                await self._final_delivery(self.deliverer)
        return self.counters

    async def _window_loop(self, stop: asyncio.Event) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        start_s = loop.time()
        end_s = start_s + settings.duration_s if settings.duration_s else None
        next_av_s = start_s
        slot = 0
        while not stop.is_set():
            slot_start_s = start_s + slot * settings.window_s
            if end_s is not None and slot_start_s + settings.window_s > end_s + 0.001:
                break
            if await _wait_until(loop, slot_start_s, stop):
                break
            if settings.av_every_s > 0 and loop.time() >= next_av_s:
                self._start_av()
                next_av_s += settings.av_every_s
            report = await self._run_window(self.counters.windows)
            self.counters.windows += 1
            self.on_window(report)
            if settings.once:
                break
            slot += 1
            behind = int((loop.time() - (start_s + slot * settings.window_s)) // settings.window_s)
            if behind > 0:  # the window overran: skip the slots it ate, never stack windows
                self.counters.skipped_windows += behind
                slot += behind

    async def _run_window(self, index: int) -> WindowReport:
        started = datetime.now(timezone.utc)
        start_s = time.perf_counter()
        reflector = await self._reflector_for_window()
        host = reflector.host if reflector else urlsplit(self.settings.server_url).hostname or ""
        udp = (UdpProbe(reflector.host, reflector.port, replace(self.udp_settings, client_key=reflector.client_key))
               if reflector else None)
        probes = [SystemProbe(host or "127.0.0.1", self.udp_settings.duration_s)] + ([udp] if udp else [])
        measurements = {m.probe: m for m in await asyncio.gather(*(run_probe(probe) for probe in probes))}
        udp_result = measurements["udp"].result if udp else None
        if isinstance(udp_result, UdpResult) and udp_result.error == KEY_EXPIRED_ERROR:
            self._reflector = None  # the next window fetches a fresh key
        if udp is None:
            measurements["udp"] = Measurement("udp", measurements["system"].started_at, 0.0,
                                              failed_result(Status.UNREACHABLE))
        av = self._collect_av()
        if av is not None:
            measurements["av"] = av
        results: dict[str, ProbeResult] = {name: m.result for name, m in measurements.items()}
        if self._latest_av is not None:
            results["av"] = self._latest_av
        assessment = assess(results, self.thresholds)
        warnings = tuple(self.alerts.update(assessment.cues, packet_counts(results.get("udp"))))
        ended = datetime.now(timezone.utc)
        report = WindowReport(uuid.uuid4().hex, index, started.isoformat(timespec="milliseconds"),
                              round(time.perf_counter() - start_s, 3), measurements, assessment,
                              ended.isoformat(timespec="milliseconds"), warnings)
        self._store(report, int(started.timestamp() * 1000), int(ended.timestamp() * 1000))
        return report

    def _store(self, report: WindowReport, time_ms: int, ended_ms: int) -> None:
        """The window, its points and its session events in one transaction; then to the hub."""
        points = report_points(report.measurements, report.assessment, self.origin, time_ms)
        points += [warning_point(w.kind, w.cue.value, w.level, w.metric, w.value, w.message, w.advice, self.origin,
                                 ended_ms) for w in report.warnings]
        window = {**window_to_dict(report), "session_id": self.settings.session_id, "role": self.settings.role}
        events = self._session_events(report)
        dropped = (self.store.save_window(window, points, events)
                   + self.store.add_points([self._self_metrics(time_ms)]))
        if self.hub is not None:
            self.hub.send(events)
        if dropped and not self.counters.points_dropped:
            self.on_event("local store full (max_points): dropping the oldest undelivered points; "
                          "see `netcheck store stats`")
        self.counters.points_dropped += dropped
        self._new_points.set()

    def _session_events(self, report: WindowReport) -> list[dict[str, Any]]:
        session_id, leg = self.settings.session_id, self.settings.role
        if session_id is None:
            return []
        summary = summary_event(session_id, leg, report.started_at, report.index, self.settings.window_s,
                                report.assessment, report.measurements)
        return [summary, *(warning_event(session_id, leg, report.ended_at, w) for w in report.warnings)]

    def _self_metrics(self, time_ms: int) -> Point:
        """`netcheck_agent`: is the agent healthy and is it light? (outbox, delivery, CPU, memory)."""
        outbox = self.store.outbox_stats()
        delivery = self.deliverer.counters if self.deliverer else None
        fields: dict[str, float | int | bool | str] = {
            "outbox_pending": outbox.outbox_pending,
            "delivered_total": outbox.delivered,
            "dropped_total": outbox.dropped,
            "rejected_total": outbox.rejected,
            "write_errors": delivery.write_errors if delivery else 0,
            "delivery_paused": bool(delivery and delivery.paused_reason),
            "windows": self.counters.windows + 1,
            "skipped_windows": self.counters.skipped_windows,
            "av_runs": self.counters.av_runs,
            "cpu_pct": float(self._process.cpu_percent(None)),
            "rss_mb": round(self._process.memory_info().rss / 1e6, 2),
        }
        return Point(AGENT_MEASUREMENT, self.origin.tags(), {**fields, **self.origin.id_fields()}, time_ms)

    async def _reflector_for_window(self) -> ReflectorAddress | None:
        """The reflector and this agent's key for it, asked of the server when there is none yet or
        the key runs out within the next window (failure is data: the window says unreachable)."""
        reflector = self._reflector
        if reflector is None or reflector.key_expires_within(2 * self.settings.window_s):
            try:
                reflector = await find_reflector(self.settings.server_url, self.settings.hmac_key,
                                                 self.settings.token)
            except MeasurementError as error:
                self.on_event(f"server: {error}")
                return None
            if self.settings.udp_target:  # another path to the same reflector (a relay): the key still fits
                reflector = replace(reflector, host=self.settings.udp_target[0], port=self.settings.udp_target[1])
            self._reflector = reflector
        return reflector

    def _start_av(self) -> None:
        if self._av_task is not None and not self._av_task.done():
            self.counters.av_skipped += 1
            return
        self._av_task = asyncio.create_task(run_av_subprocess(
            self.settings.server_url, self.settings.av_duration_s, self.settings.av_video,
            self.settings.av_audio_offset_ms))

    def _collect_av(self) -> Measurement | None:
        """The A/V run that finished since the last window, if any."""
        task = self._av_task
        if task is None or not task.done():
            return None
        self._av_task = None
        result = task.result()
        self.counters.av_runs += 1
        self._latest_av = result
        started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        return Measurement("av", started_at, result.duration_s or 0.0, result)

    async def _cancel_av(self) -> None:
        if self._av_task is not None and not self._av_task.done():
            self._av_task.cancel()
            try:
                await self._av_task
            except asyncio.CancelledError:
                pass

    async def _final_delivery(self, deliverer: Deliverer) -> None:
        try:
            await deliverer.deliver_pending(deadline=time.monotonic() + SHUTDOWN_DELIVERY_S)
        except WriteError:
            pass  # reported by the deliverer; the points wait in the store for the next run


async def _wait_until(loop: asyncio.AbstractEventLoop, at_s: float, stop: asyncio.Event) -> bool:
    """Sleep until loop time `at_s`; True if `stop` was set first."""
    delay_s = at_s - loop.time()
    if delay_s <= 0:
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), delay_s)
        return True
    except asyncio.TimeoutError:
        return False


def window_to_dict(report: WindowReport) -> dict[str, Any]:
    """The `agent --json` line and the stored form of a window."""
    return {
        "window_id": report.window_id,
        "index": report.index,
        "started_at": report.started_at,
        "duration_s": report.duration_s,
        **assessment_to_dict(report.assessment, detail=False),
        "warnings": [{"type": w.kind, "cue": w.cue.value, "level": w.level.value, "message": w.message,
                      "advice": w.advice} for w in report.warnings],
        "measurements": {name: result_fields(m.result) for name, m in report.measurements.items()},
    }


def packet_counts(udp: ProbeResult | None) -> PacketCounts | None:
    """What the window's UDP stream sent and lost in its worse direction: the evidence the loss
    warnings weigh, one way like the loss metric they back. Without the reflector's count, the
    round trip's losses are split evenly between the directions."""
    if not isinstance(udp, UdpResult) or udp.status != Status.OK or udp.packets_sent <= 0:
        return None
    sent, received = udp.packets_sent, udp.packets_received
    if udp.loss_up_pct is None or udp.loss_down_pct is None:
        return PacketCounts(sent, max(0, round((sent - received) / 2)))
    reached = round(sent * (1.0 - udp.loss_up_pct / 100.0))
    up_lost, down_lost = sent - reached, max(0, reached - received)
    if udp.loss_up_pct >= udp.loss_down_pct:
        return PacketCounts(sent, up_lost)
    return PacketCounts(reached, down_lost)
