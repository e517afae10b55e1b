"""`netcheck_server`: a node's own load, into InfluxDB beside the measurements (docs/deploy.md).

An admin running one node or many needs to see, per node, what it carries and whether it keeps up:
hub sessions' posts and watchers, watchers cut for falling behind, A/V calls and throughput streams
in progress, requests refused for lack of room (429), the reflector's traffic, the outbox, CPU.
Written only when the node delivers to InfluxDB: without a database the points would only crowd the
browser checks' points out of the bounded local outbox.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from netcheck.server.capacity import Capacity
from netcheck.server.checks import CheckEndpoints
from netcheck.server.hub.routes import SessionHub
from netcheck.server.legs.routes import SessionTabs
from netcheck.server.media import MediaPeerHub
from netcheck.server.reflector import Reflector
from netcheck.server.throughput import ThroughputEndpoints
from netcheck.store.points import NODE_MEASUREMENT, FieldValue, Origin, Point

NODE_METRICS_EVERY_S = 10.0
"""One point per node every 10 s: 8,640 a day, the agent's rate at its default window."""


@dataclass
class NodeSources:
    """The node's parts whose counters make up its metrics (server/app.py builds it)."""

    hub: SessionHub | None
    """None when the hub is off."""
    reflector: Reflector
    """Its `counters`."""
    media: MediaPeerHub
    """Its `sessions` are the A/V calls in progress."""
    throughput: ThroughputEndpoints
    """`active_streams`."""
    capacity: Capacity
    """The fair shares' refusals and the node's CPU headroom."""
    session_tabs: SessionTabs
    """The session tabs (clients' and therapists' legs) the node measures now."""


def node_fields(sources: NodeSources, process_cpu_pct: float, rss_bytes: int, outbox_pending: int,
                machine_cpu_pct: float = 0.0) -> dict[str, FieldValue]:
    """Counters since the node started (`_total`: Grafana takes their rate) and levels now."""
    reflector = sources.reflector.counters
    load = sources.capacity.cpu.load
    fields: dict[str, FieldValue] = {
        "cpu_pct": round(process_cpu_pct, 1),
        "machine_cpu_pct": round(machine_cpu_pct, 1),
        "cpu_wait_per_run_ms": load.wait_per_run_ms,
        "cpu_throttled_pct": load.throttled_pct,
        "loop_lag_ms": load.loop_lag_ms,
        "short_of_cpu_s_total": sources.capacity.cpu.short_s_total,
        "rss_mb": round(rss_bytes / 1e6, 1),
        "outbox_pending": outbox_pending,
        "av_calls": len(sources.media.sessions),
        "session_tabs": len(sources.session_tabs.legs),
        "av_refused_total": sources.capacity.av.refused,
        "throughput_streams": sources.throughput.active_streams,
        "throughput_refused_total": sources.capacity.throughput.refused,
        "udp_received_total": reflector.received,
        "udp_answered_total": reflector.answered,
        "udp_dropped_total": (reflector.dropped_malformed + reflector.dropped_unauthenticated
                              + reflector.dropped_rate_limited + reflector.dropped_flow_limit),
    }
    if sources.hub is not None:
        hub = sources.hub.counters
        fields.update({
            "hub_posts_total": hub.posts_accepted,
            "hub_posts_refused_total": hub.posts_refused,
            "hub_events_total": hub.events_published,
            "hub_watchers": hub.watchers_open,
            "hub_watchers_dropped_total": hub.watchers_dropped,
        })
    return fields


async def report_node_metrics(checks: CheckEndpoints, sources: NodeSources, origin: Origin,
                              every_s: float = NODE_METRICS_EVERY_S) -> None:
    """Every `every_s`, one point into the node's outbox (`checks.store_points`)."""
    import psutil

    process = psutil.Process()
    process.cpu_percent(None)
    psutil.cpu_percent(None)
    while True:
        await asyncio.sleep(every_s)
        store = checks.store
        if store is None:
            continue
        fields = node_fields(sources, process.cpu_percent(None), process.memory_info().rss,
                             store.outbox_stats().outbox_pending, psutil.cpu_percent(None))
        checks.store_points([Point(NODE_MEASUREMENT, origin.tags(), fields, int(time.time() * 1000))])
