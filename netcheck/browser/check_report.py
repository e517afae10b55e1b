"""A browser check's results: the page's measurements and the server's own view → probe results,
the assessment and the check's JSON (docs/browser-check.md). Pure: the server's HTTP layer
(server/checks.py) gathers the inputs and stores the output.

The server trusts its own records over the page's wherever it has them: the upstream of the call
is what its media peer received, the voice stream's server times and upstream count come from its
own log of the data channel (a reply the server never sent is dropped), and throughput comes from
its own byte counts of the two test ids. The results are the probes' own dataclasses, built by the
probes' own statistics (`probes.udp.summarise_echoes`, `probes.throughput.counted_rate_mbps`),
so a browser check and a CLI check are judged, stored and charted alike.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from netcheck.browser.check_body import BROWSER_GAP_METRICS
from netcheck.model import Assessment, CheckReport, Measurement, Recommendation, Status, report_to_dict
from netcheck.probes.av import failed_result as av_failed
from netcheck.probes.throughput import counted_rate_mbps
from netcheck.probes.udp import EchoTiming, failed_result as udp_failed, summarise_echoes
from netcheck.quality import METRICS, Metric, assess
from netcheck.results import AvDirection, AvResult, ThroughputResult, UdpResult, marked_server_busy

CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY23456789"
"""A–Z and 2–9 without look-alikes (B/8, I/L/1, O/0, S/5, Z/2 keep only one of each): read aloud on
the phone without spelling."""
CODE_LENGTH = 6

DEVICE_ADVICE: dict[tuple[str, str], str] = {
    ("browser", "insecure_context"): "This page was opened without https, so the browser hid the camera and "
                                     "microphone: ask the clinic for its https check link.",
    ("camera", "denied"): "The browser was not allowed to use the camera: allow it in the address bar's "
                          "camera icon (or the system's privacy settings) and run the check again.",
    ("camera", "busy"): "Another program is using the camera: close it (video apps, other browser tabs) and "
                        "run the check again.",
    ("camera", "missing"): "No camera was found: connect one, or join the session with audio only.",
    ("camera", "black"): "The camera shows only black: open its shutter or lens cover, or choose another camera.",
    ("camera", "frozen"): "The camera picture does not move: unplug and reconnect it, or restart the browser.",
    ("camera", "error"): "The camera could not be started: restart the browser, or try another browser.",
    ("microphone", "denied"): "The browser was not allowed to use the microphone: allow it in the address "
                              "bar's microphone icon (or the system's privacy settings) and run the check again.",
    ("microphone", "busy"): "Another program is using the microphone: close it and run the check again.",
    ("microphone", "missing"): "No microphone was found: connect a headset, or join by phone.",
    ("microphone", "silent"): "The microphone picked up no sound: check that it is not muted (a switch on "
                              "the headset, or the system's input volume) and that the right one is chosen.",
    ("microphone", "clipping"): "The microphone is too loud and distorts: lower the system's input volume "
                                "or move it further away.",
    ("microphone", "error"): "The microphone could not be started: restart the browser, or try another browser.",
    ("microphone", "not_measured"): "This browser did not start its sound, so the microphone's level was not "
                                    "checked: test it in your video app before the session, or run the check "
                                    "in another browser.",
    ("speakers", "not_heard"): "The test sound was not heard: turn the volume up, unmute, or choose the "
                               "right speakers or headset.",
}
"""The server's advice for each device finding, one table (the page has its own texts by key)."""


@dataclass(frozen=True)
class ServerView:
    """What the server itself recorded of the page's check."""

    call: Mapping[str, Any] | None
    """The media peer's report of the call (`received`, `sent`, `server_cpu_max_pct`, `server_short_of_cpu`), or None."""
    voice_arrivals: Mapping[int, tuple[float, float]] | None
    """seq → (server_recv_ms, server_send_ms) of the first arrival on the voice channel; None: no channel."""
    upload: tuple[list[tuple[float, int]], int] | None = None
    """The upload test's samples [(s, bytes so far)] and total bytes, where the server has them."""
    download: tuple[list[tuple[float, int]], int] | None = None
    short_of_cpu: bool | None = None
    """Whether the node was short of CPU (its own, server/headroom.py) from the call's start to the post:
    the page's voice stream, call and speed test then carry the node's delay; None: not known."""


def voice_result(voice: Mapping[str, Any] | None, arrivals: Mapping[int, tuple[float, float]] | None) -> UdpResult | None:
    """The voice stream as the UDP probe reports a stream; None when the page sent nothing."""
    if voice is None or not voice["sent_ms"]:
        return None
    sent_ms: list[float] = voice["sent_ms"]
    sent = len(sent_ms)
    if arrivals is None:
        return udp_failed(Status.TIMEOUT, sent, "the server received nothing on the voice channel")
    echoes = []
    for seq, client_recv_ms, _, _ in voice["replies"]:
        arrival = arrivals.get(seq)
        if seq >= sent or arrival is None or client_recv_ms < sent_ms[seq]:
            continue  # not a reply the server sent to a request the page sent: left out
        server_recv_ms, server_send_ms = arrival
        echoes.append(EchoTiming(seq=seq, rtt_ms=client_recv_ms - sent_ms[seq] - (server_send_ms - server_recv_ms),
                                 up_delay_ms=server_recv_ms - sent_ms[seq], down_delay_ms=client_recv_ms - server_send_ms,
                                 server_rx_count=0))
    if not echoes:
        return udp_failed(Status.TIMEOUT, sent)
    own_count = sum(1 for seq in arrivals if seq < sent)  # the server's count, not the page's claim
    return summarise_echoes(sent, echoes, own_count)


CAMERA_SENDING = ("ok", "black", "frozen")
"""Camera findings with which a video track still went up (a black or still picture is still sent)."""


def ice_path(path: Mapping[str, Any] | None) -> str | None:
    """host | srflx | prflx | relay-udp | relay-tcp, as the A/V probe names the path (TLS is over TCP)."""
    if path is None or path["candidate_type"] is None:
        return None
    if path["candidate_type"] != "relay":
        return str(path["candidate_type"])
    relay = path["relay_protocol"] or path["protocol"] or "udp"
    return f"relay-{'udp' if relay == 'udp' else 'tcp'}"


UPSTREAM_VIDEO_FIELDS = ("video_fps", "video_width", "video_height", "video_freezes", "video_frozen_ms",
                         "video_loss_pct", "av_skew_ms")


def av_result(call: Mapping[str, Any] | None, downstream: Mapping[str, Any] | None,
              path: Mapping[str, Any] | None, camera_sent: bool = True, not_measured: tuple[str, ...] = ()) -> AvResult:
    """The call: the server's reception is the upstream, the page's the downstream; the sending sides
    fill what a receiver cannot tell (the server's RTCP round trip, its sending bitrate as a fallback).

    The upstream is the browser's camera, which adapts its resolution to the path (so its received
    height is judged); without a camera (refused, missing, busy) nothing was sent up, and the
    upstream video is not measured rather than "0 fps, frozen"."""
    if call is None:
        return av_failed(Status.ERROR, "the call was not set up (the page could not connect to the server's media peer)")
    if downstream is None:
        return av_failed(Status.ERROR, "the call did not complete in the browser")
    received, sent = dict(call["received"]), call["sent"]
    if not camera_sent:
        received.update({name: None for name in UPSTREAM_VIDEO_FIELDS})
    upstream = AvDirection(**received, video_bitrate_kbps=None, audio_bitrate_kbps=None,
                           rtt_ms=sent.get("rtt_ms") if sent.get("rtt_ms") is not None else downstream["rtt_ms"],
                           resolution_adapts=camera_sent)
    down_fields = {name: downstream[name] for name in AvDirection.__dataclass_fields__ if name in downstream}
    for name in ("video_bitrate_kbps", "audio_bitrate_kbps", "rtt_ms"):
        if down_fields.get(name) is None:
            down_fields[name] = sent.get(name)
    down = AvDirection(**down_fields)
    skews = [skew for skew in (upstream.av_skew_ms, down.av_skew_ms) if skew is not None]
    route = ice_path(path)
    cpu = call.get("server_cpu_max_pct")
    return AvResult(
        status=Status.OK, time_to_first_frame_ms=None, av_skew_ms=max(skews, key=abs) if skews else None,
        upstream=upstream, downstream=down, ice_path=route,
        udp_blocked=False if route and route != "relay-tcp" else None,
        duration_s=downstream["duration_s"], error=None,
        server_cpu_pct=float(cpu) if isinstance(cpu, (int, float)) else None,
        server_busy=call.get("server_short_of_cpu") if isinstance(call.get("server_short_of_cpu"), bool) else None,
        not_measured_here=tuple(sorted({BROWSER_GAP_METRICS[gap] for gap in not_measured})),
    )


def throughput_result(throughput: Mapping[str, Any] | None, view: ServerView) -> ThroughputResult | None:
    """Rates from the server's own counts of the test ids where it has them, else the page's."""
    if throughput is None:
        return None
    rates: dict[str, float | None] = {}
    totals: dict[str, int | None] = {}
    for direction, record in (("download", view.download), ("upload", view.upload)):
        own = counted_rate_mbps(record[0]) if record is not None else None
        rates[direction] = own if own is not None else throughput[f"{direction}_mbps"]
        totals[direction] = record[1] if record is not None else None
    idle = throughput["idle_rtt_ms"]
    loaded = [rtt for rtt in (throughput["loaded_rtt_down_ms"], throughput["loaded_rtt_up_ms"]) if rtt is not None]
    measured = rates["download"] is not None or rates["upload"] is not None
    return ThroughputResult(
        status=Status.OK if measured else Status.ERROR, download_mbps=rates["download"], upload_mbps=rates["upload"],
        idle_rtt_ms=idle, loaded_rtt_down_ms=throughput["loaded_rtt_down_ms"],
        loaded_rtt_up_ms=throughput["loaded_rtt_up_ms"],
        bufferbloat_ms=round(max(0.0, max(loaded) - idle), 2) if loaded and idle is not None else None,
        bytes_down=totals["download"], bytes_up=totals["upload"], backend="netcheck",
        error=None if measured else "the page measured no throughput",
    )


def device_findings(devices: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each device's finding with its key (the page's text table explains it) and the server's advice."""
    findings: list[dict[str, Any]] = []
    if not devices["secure_context"]:
        findings.append(_finding("browser", "insecure_context"))
    findings.append(_finding("camera", devices["camera"], width=devices["camera_width"], height=devices["camera_height"]))
    findings.append(_finding("microphone", devices["microphone"], level_db=devices["microphone_level_db"]))
    findings.append(_finding("speakers", devices["speakers"], output_device_choice=devices["output_device_choice"]))
    return findings


def _finding(device: str, finding: str, **figures: Any) -> dict[str, Any]:
    return {"device": device, "finding": finding, "key": f"{device}.{finding}",
            "advice": DEVICE_ADVICE.get((device, finding)), **figures}


def check_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


@dataclass(frozen=True)
class BrowserCheck:
    measurements: dict[str, Measurement]
    assessment: Assessment
    report: dict[str, Any]
    """The `netcheck check --json` shape plus client, devices, code, session_id."""


def build_check(body: Mapping[str, Any], view: ServerView, check_id: str, started_at: str, duration_s: float,
                server: str, session_id: str | None, thresholds: tuple[Metric, ...] = METRICS) -> BrowserCheck:
    camera_sent = body["devices"]["camera"] in CAMERA_SENDING
    can_call = "webrtc" not in body["unsupported"]
    # a browser without WebRTC never tried the call: it is not measured, not a call that failed (a firewall)
    results: dict[str, Any] = {"av": av_result(view.call, body["downstream"], body["path"], camera_sent,
                                               tuple(body["not_measured"]))} if can_call else {}
    if (udp := voice_result(body["voice"], view.voice_arrivals)) is not None:
        results["udp"] = udp
    if (throughput := throughput_result(body["throughput"], view)) is not None:
        results["throughput"] = throughput
    results = {name: marked_server_busy(result, view.short_of_cpu) for name, result in results.items()}
    measurements = {name: Measurement(name, started_at, duration_s, result) for name, result in results.items()}
    assessment = assess(results, thresholds)
    findings = device_findings(body["devices"])
    advice = tuple(finding["advice"] for finding in findings if finding["advice"])
    assessment = replace(assessment, advice=assessment.advice + advice)
    assessment, held_back_by = devices_hold_back(assessment, body["devices"]) if can_call else (
        browser_holds_back(assessment), "browser")
    report = {
        **report_to_dict(CheckReport(check_id, started_at, duration_s, server, measurements, assessment)),
        "client": "browser", "devices": findings, "code": check_code(), "session_id": session_id,
        "held_back_by": held_back_by,
        "audio_offset_ms": body["audio_offset_ms"],
    }
    return BrowserCheck(measurements, assessment, report)


MICROPHONE_SENDING = ("ok", "clipping", "not_measured")
"""Microphone findings with which the therapist still hears the client (clipping: distorted, advised), or may:
`not_measured` (opened, its level unread because the browser's sound never started) is not held against the
client; its advice asks for a test in the video app."""


BROWSER_CANNOT_CALL = ("This browser cannot make video calls: open the clinic's link in Safari, Chrome, Firefox "
                       "or Edge for your session, and run the check there.")


def browser_holds_back(assessment: Assessment) -> Assessment:
    """A browser without WebRTC (an email or chat app's own browser, WebKitGTK): no call and no voice path
    could be measured, so no recommendation; the first sentence and the first advice say why and where
    to go, the figures it could measure (speed) stay."""
    measured = assessment.summary if assessment.recommendation != Recommendation.UNKNOWN else ""
    return replace(assessment, recommendation=Recommendation.UNKNOWN,
                   summary=f"{BROWSER_CANNOT_CALL} {measured}".strip(),
                   advice=(BROWSER_CANNOT_CALL, *assessment.advice))


def devices_hold_back(assessment: Assessment, devices: Mapping[str, Any]) -> tuple[Assessment, str | None]:
    """The recommendation the client's own devices allow, and the device that lowered it (or None).

    The connection may carry video while no picture leaves the browser (camera refused, busy, missing,
    black or frozen): the therapist would not see the face, so the answer is audio only until the
    camera works. No sound from the microphone: the therapist would not hear the client either, so
    the phone. The summary says that the connection is not the reason.
    """
    recommendation = assessment.recommendation
    if devices["microphone"] not in MICROPHONE_SENDING and recommendation in (Recommendation.VIDEO,
                                                                              Recommendation.AUDIO_ONLY):
        return replace(assessment, recommendation=Recommendation.PHONE,
                       summary="Use the phone until the microphone works: no sound came from it, so your "
                               "therapist would not hear you."), "microphone"
    if devices["camera"] != "ok" and recommendation == Recommendation.VIDEO:
        return replace(assessment, recommendation=Recommendation.AUDIO_ONLY,
                       summary="Use audio only until the camera works: the connection itself would carry video, "
                               "but no picture came from the camera."), "camera"
    return assessment, None
