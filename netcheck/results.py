"""What each probe returns: frozen dataclasses with unit-suffixed fields and a status (STYLE 2).

They live apart from the probes so that the quality model, the stores and the renderers can read
results without importing anything that opens a socket. Field names are a public contract
(`--json`, the local store, InfluxDB): add fields, never rename one or give it a new meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, TypeVar, get_args

from netcheck.model import Status

SubStatus = Literal["ok", "timeout", "unreachable", "blocked", "error", "auth_failed", "skipped"]
"""The status of one part of the reachability probe."""
SUB_STATUSES: tuple[str, ...] = get_args(SubStatus)
R = TypeVar("R")


@dataclass(frozen=True)
class UdpResult:
    """What the UDP probe measured. Field names are a public contract (JSON, InfluxDB)."""

    status: Status
    packets_sent: int
    packets_received: int
    rtt_min_ms: float | None
    rtt_mean_ms: float | None
    rtt_p50_ms: float | None
    rtt_p95_ms: float | None
    rtt_max_ms: float | None
    jitter_ms: float | None
    """Mean |ΔRTT| of consecutive sequence numbers (RFC 3393 IPDV, as irtt reports it)."""
    jitter_rfc3550_ms: float | None
    jitter_up_ms: float | None
    """Mean |Δ one-way delay| client → reflector of consecutive sequence numbers (irtt's send IPDV).

    The two clocks' constant offset cancels in the differences; None when no two consecutive
    packets came back."""
    jitter_down_ms: float | None
    """The same for reflector → client (irtt's receive IPDV)."""
    loss_pct: float | None
    loss_up_pct: float | None
    loss_down_pct: float | None
    loss_burst_max: int
    duplicates: int
    reordered: int
    error: str | None = None
    """Why nothing could be measured, when the reflector said so (an expired key)."""


@dataclass(frozen=True)
class AvDirection:
    """One direction of the call, as its receiver saw it (and its sender sent it)."""

    video_fps: float | None
    video_width: int | None
    video_height: int | None
    video_freezes: int | None
    video_frozen_ms: float | None
    video_loss_pct: float | None
    video_bitrate_kbps: float | None
    audio_loss_pct: float | None
    audio_jitter_ms: float | None
    audio_bitrate_kbps: float | None
    rtt_ms: float | None
    av_skew_ms: float | None
    """Positive: audio arrives before its video (BT.1359 sign); pipeline offset removed."""
    resolution_adapts: bool | None = None
    """True when this direction's sender adapts its resolution to the path (a browser's camera does);
    None or False for a fixed size (aiortc, the server's marked tracks): only an adapting sender's
    received height says something about the path."""


@dataclass(frozen=True)
class AvResult:
    status: Status
    time_to_first_frame_ms: float | None
    av_skew_ms: float | None
    """The direction with the larger |skew|."""
    upstream: AvDirection | None
    downstream: AvDirection | None
    ice_path: str | None
    """host | srflx | prflx | relay-udp | relay-tcp: how the media flowed."""
    udp_blocked: bool | None
    """True when the call failed over UDP and then worked through TURN over TCP/TLS; None if not tried."""
    duration_s: float | None
    """The measured window (after the first frame)."""
    error: str | None
    server_cpu_pct: float | None = None
    """The node's own CPU during the call at its busiest, % of the CPU it may use (its cores or its
    cgroup quota): a figure, not the mark; whether the node was short of CPU is `server_busy`."""
    server_busy: bool | None = None
    """True when the clinic's server was short of CPU during the call (server/headroom.py), or refused
    it as busy (429) until the probe gave up: a figure worse than good may then be the server's doing
    and is not held against the connection, nor is a call that could not be set up. The voice stream
    measured beside the call (the UDP probe, a page's voice path) carries the same mark: UdpResult's
    fields are a pinned contract. None: the server did not say (an older one)."""
    not_measured_here: tuple[str, ...] = ()
    """Quality metrics the client's browser could not measure (e.g. `av_skew_ms` where the page's lip-sync
    timing is not calibrated for its engine): named as not measured in that browser, never as missing probes."""


@dataclass(frozen=True)
class CallDirection:
    """One direction of the session's own call, from its browser's getStats (issue 25): downstream is
    what this leg received, upstream what it sent and what the other end said it received of it."""

    video_fps: float | None
    """Downstream: frames decoded a second; upstream: frames sent a second (what the other end can see at most)."""
    video_height: int | None
    """Downstream: the received height at the window's end; upstream: the sent height."""
    video_frozen_ms: float | None
    """Downstream only: time frozen in the window (totalFreezesDuration), or the whole window without a frame."""
    video_loss_pct: float | None
    audio_loss_pct: float | None
    audio_jitter_ms: float | None
    audio_concealed_pct: float | None
    """Downstream only: share of the received audio the receiver had to invent (concealment), DTX silence excluded."""
    jitter_buffer_ms: float | None
    """Downstream only: mean time an audio sample waited in the jitter buffer (reported, not judged)."""


@dataclass(frozen=True)
class CallResult:
    """One window of the session's own call, judged like a probe's (`source=call`). Field names are a
    contract (JSON, InfluxDB `netcheck_call`)."""

    status: Status
    duration_s: float | None
    """The window: the span of the stats' own timestamps between two snapshots."""
    call_s: float | None
    """How long the node has followed this call: its adapting resolution is judged after 20 s."""
    upstream: CallDirection | None
    downstream: CallDirection | None
    rtt_ms: float | None
    """The window's RTCP round trips (remote-inbound-rtp), else the ICE pair's current one."""
    quality_limitation: str | None
    """none | cpu | bandwidth | other: why the browser held its sending video back at the window's end."""
    cpu_limited_pct: float | None
    """Share of the window the sending video was limited by the CPU."""
    bandwidth_limited_pct: float | None
    available_outgoing_kbps: float | None
    """The sender's bandwidth estimate on the selected ICE pair."""
    error: str | None = None


@dataclass(frozen=True)
class ThroughputResult:
    status: Status
    download_mbps: float | None
    upload_mbps: float | None
    idle_rtt_ms: float | None
    """RTT p95 of the UDP probe on the idle link."""
    loaded_rtt_down_ms: float | None
    """RTT p95 while the download saturates the link."""
    loaded_rtt_up_ms: float | None
    bufferbloat_ms: float | None
    """The larger loaded RTT minus the idle RTT."""
    bytes_down: int | None
    bytes_up: int | None
    backend: str
    """netcheck (a netcheck server) or speedtest (speedtest-cli's servers)."""
    error: str | None
    server_busy: bool | None = None
    """True when the clinic's server was short of CPU while this was measured (server/headroom.py):
    a figure worse than good may then be the server's doing and is not held against the connection.
    None: the server did not say (an older one, or one that was not asked)."""


@dataclass(frozen=True)
class SystemResult:
    """Facts about this computer during the check. Platform-specific ones may be None."""

    status: Status
    cpu_pct: float | None
    """All cores' share busy with work at normal or higher priority (low-priority work yields to a call)."""
    memory_pct: float | None
    battery_pct: float | None
    battery_plugged: bool | None
    interface: str | None
    interface_kind: str
    """wifi | ethernet | cellular | loopback | unknown"""
    nic_errors: int | None
    """Receive + transmit errors on the interface during the window."""
    nic_drops: int | None
    rx_mbps: float | None
    """All traffic received on the interface during the window, the probes' own included."""
    tx_mbps: float | None
    window_s: float


@dataclass(frozen=True)
class ReachResult:
    """What the reachability probe measured. Field names are a public contract (JSON, InfluxDB)."""

    status: Status
    """ok when the server's HTTP port answered (DNS and TCP ok), unreachable otherwise."""
    dns_status: SubStatus
    dns_ms: float | None
    """0 for an IP literal."""
    tcp_status: SubStatus
    tcp_connect_ms: float | None
    tls_status: SubStatus
    tls_handshake_ms: float | None
    udp_status: SubStatus
    """ok, blocked (no reply), unreachable (ICMP refusal, or the server's /v1/info unreachable), error."""
    udp_rtt_ms: float | None
    """Median of the replies, the reflector's turnaround subtracted."""
    udp_packets_sent: int
    udp_packets_received: int
    stun_status: SubStatus
    stun_rtt_ms: float | None
    turn_udp_status: SubStatus
    turn_udp_ms: float | None
    """From the first Allocate to the allocation, the 401 nonce round included."""
    turn_tcp_status: SubStatus
    turn_tcp_ms: float | None
    """From the TCP (and TLS, for turns:) connect to the allocation, the 401 nonce round included."""
    error: str | None
    """What went wrong in the parts that did not succeed, for people; None when nothing did."""


@dataclass(frozen=True)
class ProbeFailure:
    """A probe that raised where it should have returned a result: the check goes on without it."""

    status: Status
    error: str


def marked_server_busy(result: R, busy: bool | None) -> R:
    """`result` with the node's word on its CPU added: busy if either it or `busy` says so; unchanged
    for a result without the mark (system, reach) or when the node did not say (None)."""
    if busy is None or not hasattr(result, "server_busy"):
        return result
    return replace(result, server_busy=bool(result.server_busy) or busy)  # type: ignore[attr-defined]
