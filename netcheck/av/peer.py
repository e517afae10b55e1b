"""aiortc at the boundary: ICE configuration, and stats converted once into ms, % and kbps.

aiortc reports jitter in RTP clock units, roundTripTime in seconds and fractionLost in 1/256;
nothing outside this module sees those units.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from netcheck.errors import UsageError

CLOCK_RATE_HZ = {"audio": 48000, "video": 90000}
ICE_HOST_ADDRESSES_ENV = "NETCHECK_ICE_HOST_ADDRESSES"
MDNS_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ [^ ]+\.local \d+ ", re.MULTILINE | re.IGNORECASE)
"""A host candidate named by mDNS (`<uuid>.local`): how Firefox, and Chromium without camera
permission, hide a client's addresses."""


def offer_left_open(sdp: str) -> str:
    """A browser's offer, ready for aiortc: without its mDNS candidates and left open (no
    `end-of-candidates`) when it has any.

    aioice resolves `.local` names by multicast on the node's own LAN, so a client's do not resolve,
    and each waits out the resolver before the answer; at end-of-candidates aioice then drops every
    ICE component that has no candidate left, gathers no candidate of its own and answers with none:
    measured, Firefox's call to the node failed every time. Without them and left open, the node
    answers at once with its candidates, the browser checks them, and the node learns the browser's
    address from those checks (a peer-reflexive candidate, RFC 8445 7.3.1.3).
    """
    if not MDNS_CANDIDATE.search(sdp):
        return sdp
    return "".join(line for line in sdp.splitlines(keepends=True)
                   if not line.startswith("a=end-of-candidates") and not MDNS_CANDIDATE.match(line))


@dataclass(frozen=True)
class IceSettings:
    """Where ICE may look for a path: STUN for reflexive, TURN for relayed candidates."""

    stun_url: str | None = None
    turn_url: str | None = None
    turn_user: str | None = None
    turn_password: str | None = field(default=None, repr=False)
    relay_only: bool = False

    def validate(self) -> None:
        for name, url, schemes in (("--stun", self.stun_url, ("stun",)), ("--turn", self.turn_url, ("turn", "turns"))):
            if url is None:
                continue
            scheme, _, rest = url.partition(":")
            if scheme not in schemes or not rest:
                raise UsageError(f"bad {name} URL {url!r}: use {schemes[0]}:HOST:PORT")
        if self.turn_url and not (self.turn_user and self.turn_password):
            raise UsageError("--turn needs --turn-user and a password (--turn-pass or NETCHECK_TURN_PASSWORD)")
        if self.relay_only and not self.turn_url:
            raise UsageError("--relay-only needs a TURN server (--turn)")

    def with_turn_transport(self, transport: str) -> IceSettings:
        """The same TURN server over another transport (udp or tcp), relay only."""
        if not self.turn_url:
            return self
        base = self.turn_url.split("?", 1)[0]
        return IceSettings(self.stun_url, f"{base}?transport={transport}", self.turn_user, self.turn_password, True)


def rtc_configuration(ice: IceSettings):
    from aiortc import RTCConfiguration, RTCIceServer
    from aiortc.rtcconfiguration import RTCIceTransportPolicy

    servers = []
    if ice.stun_url:
        servers.append(RTCIceServer(urls=ice.stun_url))
    if ice.turn_url:
        servers.append(RTCIceServer(urls=ice.turn_url, username=ice.turn_user, credential=ice.turn_password))
    policy = RTCIceTransportPolicy.RELAY if ice.relay_only else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


def restrict_host_candidates(addresses: list[str] | None = None) -> None:
    """Offer ICE host candidates only on `addresses` (default: $NETCHECK_ICE_HOST_ADDRESSES).

    aioice offers every interface but loopback. The loopback self-test (`check --local`) and the
    tests need media to stay on 127.0.0.1, so they name the addresses here. This replaces
    aioice's address lookup for the whole process; without a setting it changes nothing.
    """
    import aioice.ice

    if addresses is None:
        configured = os.environ.get(ICE_HOST_ADDRESSES_ENV, "").strip()
        if not configured:
            return
        addresses = [address.strip() for address in configured.split(",") if address.strip()]
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [address for address in chosen if (":" in address and use_ipv6) or (":" not in address and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


@dataclass(frozen=True)
class InboundFigures:
    """What a receiver saw of one media stream."""

    loss_pct: float | None
    jitter_ms: float | None


@dataclass(frozen=True)
class OutboundFigures:
    """What a sender sent of one media stream, and the RTT its RTCP receiver reports gave."""

    bitrate_kbps: float | None
    rtt_ms: float | None


async def inbound_figures(pc: Any) -> dict[str, InboundFigures]:
    """Per kind: cumulative RTP loss and interarrival jitter of the media stream, in ms and %.

    A video receiver also has a retransmission (RTX) stream, and aiortc's getStats() gives both
    streams the same stats id, so whichever came last wins. So the receiver's per-SSRC statistics
    are read where aiortc keeps them, leaving out the SSRCs it maps as RTX.
    """
    figures: dict[str, InboundFigures] = {}
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        kind = transceiver.kind
        streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", None)
        rtx_ssrcs = set(getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {}))
        media_streams = [stream for ssrc, stream in (streams or {}).items() if ssrc not in rtx_ssrcs]
        if media_streams:
            main = max(media_streams, key=lambda stream: stream.packets_received)
            received, lost, jitter = main.packets_received, main.packets_lost, main.jitter
        else:
            inbound = [stats for stats in (await receiver.getStats()).values() if stats.type == "inbound-rtp"]
            if not inbound:
                continue
            received, lost, jitter = inbound[0].packetsReceived, inbound[0].packetsLost, inbound[0].jitter
        expected = received + max(0, lost)
        loss_pct = 100.0 * max(0, lost) / expected if expected else None
        figures[kind] = InboundFigures(loss_pct, 1000.0 * jitter / CLOCK_RATE_HZ[kind])
    return figures


async def outbound_figures(pc: Any, sending_since_s: float | None) -> dict[str, OutboundFigures]:
    """Per kind: the sending bitrate since media started, and the RTCP round-trip time."""
    figures: dict[str, OutboundFigures] = {}
    elapsed_s = time.monotonic() - sending_since_s if sending_since_s else None
    for transceiver in pc.getTransceivers():
        sender = transceiver.sender
        if sender.track is None:
            continue
        bitrate_kbps = rtt_ms = None
        for stats in (await sender.getStats()).values():
            if stats.type == "outbound-rtp" and elapsed_s:
                bitrate_kbps = stats.bytesSent * 8 / elapsed_s / 1000.0
            elif stats.type == "remote-inbound-rtp" and stats.roundTripTime is not None:
                rtt_ms = stats.roundTripTime * 1000.0
        figures[sender.track.kind] = OutboundFigures(bitrate_kbps, rtt_ms)
    return figures


def selected_candidate_type(pc: Any) -> str | None:
    """'host', 'srflx', 'prflx' or 'relay' for the local side of the ICE pair in use; None if unknown.

    aiortc does not expose the selected pair, so this reads aioice's nominated pair: best effort.
    """
    try:
        connection = pc.getTransceivers()[0].receiver.transport.transport._connection
        return next(iter(connection._nominated.values())).local_candidate.type
    except (AttributeError, IndexError, StopIteration):
        return None


def turn_transport(turn_url: str | None) -> str:
    """The transport a TURN URL asks for: 'tcp' for turns: or ?transport=tcp, else 'udp'."""
    if not turn_url:
        return "udp"
    return "tcp" if turn_url.startswith("turns:") or "transport=tcp" in turn_url else "udp"
