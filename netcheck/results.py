"""What each probe returns: frozen dataclasses with unit-suffixed fields and a status (STYLE 2).

They live apart from the probes so that the quality model, the stores and the renderers can read
results without importing anything that opens a socket. Field names are a public contract
(`--json`, the local store, InfluxDB): add fields, never rename one or give it a new meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from netcheck.model import Status

SubStatus = Literal["ok", "timeout", "unreachable", "blocked", "error", "auth_failed", "skipped"]
"""The status of one part of the reachability probe."""
SUB_STATUSES: tuple[str, ...] = get_args(SubStatus)


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
    """The server's busiest CPU sample during the call: from SERVER_BUSY_CPU_PCT on, what the call
    lost may be the server's doing, not the client's network (the advice says so)."""


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


@dataclass(frozen=True)
class SystemResult:
    """Facts about this computer during the check. Platform-specific ones may be None."""

    status: Status
    cpu_pct: float | None
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
