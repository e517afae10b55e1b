"""One line of plain advice per problem, for a client or a therapist who is not technical."""

from __future__ import annotations

from dataclasses import dataclass

from netcheck.model import Level, MetricVerdict
from netcheck.results import AvDirection, AvResult, ReachResult, SystemResult, ThroughputResult
from netcheck.quality.metrics import Metric
from netcheck.quality.thresholds import SystemLimits

VIDEO_LOSS_CAUSE_PCT = 2.0
"""Video packet loss from which loss, not the sender, is the likely cause of a poor picture."""
LOW_VIDEO_BITRATE_KBPS = 400.0
"""Below this the encoder was starved: 360p needs about 500 kbps."""
QUEUED_RTT_MS = 400.0
"""A call's RTT this high on a link that idles fast means packets wait in a full queue."""
DIRECTION_WORDS = {"upstream": "from you to the clinic", "downstream": "from the clinic to you"}


@dataclass(frozen=True)
class VideoCause:
    """Why the picture suffers in one direction, and what helps, in plain words."""

    direction: str
    because: str
    remedy: str

VOICE_WORDS = {
    "upstream": "Your voice to the clinic",
    "downstream": "The clinic's voice to you",
    None: "The voice (one way; the direction could not be measured)",
}


def metric_advice(verdict: MetricVerdict, metric: Metric, video_cause: VideoCause | None = None) -> str | None:
    """The advice line for a fair or poor metric, from its registry row; None for good or unmeasured ones."""
    if verdict.level not in (Level.FAIR, Level.POOR) or verdict.value is None:
        return None
    poor = verdict.level == Level.POOR
    cause = video_cause or VideoCause("", "of the connection", "stop other streams and uploads")
    return metric.advice.format(
        value=verdict.value,
        direction=DIRECTION_WORDS.get(cause.direction, "in one direction"),
        because=cause.because,
        remedy=cause.remedy,
        voice=VOICE_WORDS[verdict.direction if verdict.direction in VOICE_WORDS else None],
        phone="; if it does not improve, use the phone" if poor else "",
        audio="; if it does not improve, switch to audio only" if poor else "",
    )


def video_cause(direction_name: str, direction: AvDirection, system: SystemResult | None,
                limits: SystemLimits) -> VideoCause:
    """The likeliest reason for a poor picture in one direction: bandwidth, loss, or a busy computer.

    Network signs come first: a full link also keeps the CPU busy with retransmissions and
    keyframes, while a busy computer on a clean network shows no loss and no queueing. (A picture
    measured while the clinic's server was short of CPU is not judged at all: assess.py.)
    """
    # a full link also loses packets (its queue overflows), so its signs are looked for first
    starved = direction.video_bitrate_kbps is not None and direction.video_bitrate_kbps < LOW_VIDEO_BITRATE_KBPS
    queued = direction.rtt_ms is not None and direction.rtt_ms >= QUEUED_RTT_MS
    if starved or queued:
        figure = (f"video got {direction.video_bitrate_kbps:.0f} kbps" if starved
                  else f"the delay grew to {direction.rtt_ms:.0f} ms")
        return VideoCause(direction_name, f"the bandwidth is short ({figure})",
                          "stop other uploads, downloads and streaming, or move to the router")
    if (direction.video_loss_pct or 0) >= VIDEO_LOSS_CAUSE_PCT:
        return VideoCause(direction_name, f"{direction.video_loss_pct:.1f} % of the video packets are lost",
                          "move closer to the router or plug in a cable")
    # a clean network and a busy sender: the computer could not encode in time
    if direction_name == "upstream" and system is not None and (system.cpu_pct or 0) >= limits.cpu_busy_pct:
        return VideoCause(direction_name, f"your computer is busy (CPU {system.cpu_pct:.0f} %)",
                          "close other programs and video apps")
    return VideoCause(direction_name, "the connection stalls", "stop other uploads and streams, or move to the router")


PROBE_FAILURE_ADVICE: dict[str, str] = {
    "udp": "No answer on the server's UDP port ({status}): a firewall may block UDP, which video calls need — "
           "try another network (or your phone's hotspot) and tell the clinic.",
    "av": "The video test call could not be set up ({status}): a firewall may block video calls — try another "
          "network, or ask the clinic for a TURN server; until then use audio only.",
    "throughput": "The speed test could not run ({status}): bandwidth is unknown, so the video setting is a guess.",
}


SERVER_BUSY_FAILURE_ADVICE: dict[str, str] = {
    "udp": "The clinic's test server was busy and did not answer the voice test ({status}): this says nothing "
           "about your connection — run the check again in a few minutes.",
    "av": "The clinic's test server was busy, so the video test call could not be made ({status}): this says "
          "nothing about your connection — run the check again in a few minutes.",
    "throughput": "The clinic's test server was busy, so the speed test could not run ({status}): run the check "
                  "again in a few minutes.",
}
SERVER_BUSY_ADVICE = ("The clinic's test server was busy (short of processing power) during the check: figures "
                      "that came out worse than good may be its doing, not your connection's, so they were not "
                      "judged — run the check again in a few minutes.")


def probe_failure_advice(probe: str, status: str, server_busy: bool = False) -> str | None:
    """What to do when a probe could not measure at all. When the clinic's server was busy (short of CPU,
    or refusing the call as busy) the failure is its own, never a firewall's or the network's."""
    template = (SERVER_BUSY_FAILURE_ADVICE if server_busy else PROBE_FAILURE_ADVICE).get(probe)
    return template.format(status=status) if template else None


def bufferbloat_advice(throughput: ThroughputResult, limits: SystemLimits) -> str | None:
    """Name the direction whose load makes the delay rise, and what to pause."""
    if throughput.bufferbloat_ms is None or throughput.bufferbloat_ms < limits.bufferbloat_ms:
        return None
    up = throughput.loaded_rtt_up_ms or 0.0
    down = throughput.loaded_rtt_down_ms or 0.0
    idle = throughput.idle_rtt_ms or 0.0
    if up >= down:
        return (f"Delay rises from {idle:.0f} to {up:.0f} ms when uploading: pause cloud backups, photo sync and "
                "large uploads during sessions (a router with SQM/fq_codel fixes this for good).")
    return (f"Delay rises from {idle:.0f} to {down:.0f} ms when downloading: pause downloads, updates and "
            "streaming during sessions (a router with SQM/fq_codel fixes this for good).")


def video_setting_advice(setting: str, bandwidth_mbps: float) -> str | None:
    """Below 720p, say which setting the bandwidth carries."""
    if setting == "720p":
        return None
    if setting == "audio only":
        return (f"Your connection carries only {bandwidth_mbps:.1f} Mbps in its slower direction: too little "
                "for video — use audio only, or move closer to the router.")
    return (f"Your connection carries {bandwidth_mbps:.1f} Mbps in its slower direction: set the video to "
            f"{setting} (or let the app lower it) so the picture stays smooth.")


def reach_advice(reach: ReachResult, call_went_through: bool) -> list[str]:
    """What the reachability figures mean for a call: UDP blocked, TURN refusing the credentials."""
    lines: list[str] = []
    if reach.udp_status in ("blocked", "unreachable"):
        relay = ("calls will relay over TCP through the clinic's TURN server" if reach.turn_tcp_status == "ok"
                 else "video calls need UDP or a TURN relay over TCP, and neither got through")
        lines.append(f"Your network blocks UDP: {relay} — ask IT to allow UDP 3478 and 49152–65535, or use "
                     "another network.")
    for transport, status in (("UDP", reach.turn_udp_status), ("TCP", reach.turn_tcp_status)):
        if status == "auth_failed":
            lines.append(f"The clinic's TURN server refused the credentials (over {transport}): tell the clinic, "
                         "the relay that rescues calls on strict networks will not work.")
            break
    if not call_went_through and reach.tcp_status == "ok" and reach.tls_status == "error":
        lines.append("The secure connection to the server failed (TLS): a firewall or proxy may be inspecting "
                     "traffic — try another network.")
    return lines


def path_advice(av: AvResult) -> str | None:
    """Say so when the call only got through because TURN carried it over TCP."""
    if av.udp_blocked or av.ice_path == "relay-tcp":
        return ("This network blocks UDP: the call only works through the clinic's TURN server over TCP, which "
                "adds delay and stutters under loss — if you can, use another network.")
    return None


def system_advice(system: SystemResult, network_has_problems: bool, limits: SystemLimits) -> list[str]:
    """Advice from the computer's side: busy CPU, low battery, competing traffic, NIC errors, Wi-Fi."""
    lines: list[str] = []
    if system.cpu_pct is not None and system.cpu_pct >= limits.cpu_busy_pct:
        lines.append(f"Your computer is busy (CPU {system.cpu_pct:.0f} %): close other programs before the session.")
    if (system.battery_pct is not None and system.battery_plugged is False
            and system.battery_pct <= limits.battery_low_pct):
        lines.append(f"Battery at {system.battery_pct:.0f} % and not charging: plug in the charger — "
                     "power saving can slow down video.")
    if system.interface_kind != "loopback":
        rx, tx = system.rx_mbps or 0.0, system.tx_mbps or 0.0
        if max(rx, tx) >= limits.competing_traffic_mbps:
            lines.append(f"Other traffic on your connection during the check ({tx:.1f} Mbps up, {rx:.1f} Mbps "
                         "down): pause cloud backups, uploads, downloads and streaming.")
        if (system.nic_errors or 0) + (system.nic_drops or 0) > 0:
            lines.append(f"Your network adapter reported {(system.nic_errors or 0) + (system.nic_drops or 0)} "
                         "errors or drops during the check: try another cable or move closer to the router.")
    if network_has_problems and system.interface_kind == "wifi":
        lines.append("You are on Wi-Fi: sitting next to the router or using a network cable usually helps.")
    return lines
