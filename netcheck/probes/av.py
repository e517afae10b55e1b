"""A/V probe: a real WebRTC call (aiortc) with the server's media peer, measured both ways.

The client sends marked synthetic audio and video; the server sends its own back. Each receiver
records frame arrivals, frame indices and audio burst onsets; the server reports its side over
HTTP at the end. See docs/av-probe.md for the method and the pipeline-offset calibration.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from netcheck.av.markers import VideoFormat
from netcheck.av import peer
from netcheck.av.figures import received_fields, sent_fields
from netcheck.av.peer import IceSettings, turn_transport
from netcheck.net.httpio import (
    BUSY_WAIT_BUDGET_S, BodyTooLarge, ServerBusy, bearer, busy_message, read_bounded, retry_after_s,
)
from netcheck import bounds
from netcheck.model import Status
from netcheck.results import AvDirection, AvResult, marked_server_busy

CONNECT_TIMEOUT_S = 10.0
"""From offer to first received video frame, ICE and DTLS included."""
HTTP_TIMEOUT_S = 5.0
GATHER_TIMEOUT_S = 5.0
"""Collecting local, STUN and TURN candidates; aioice retries an unanswered TURN request for ~40 s."""
MAX_ANSWER_BYTES = 256 * 1024


@dataclass(frozen=True)
class AvProbeSettings:
    duration_s: float = 5.0
    video: VideoFormat = VideoFormat(640, 360, 30)
    audio_offset_ms: float = 0.0
    ice: IceSettings = IceSettings()
    gather_timeout_s: float = GATHER_TIMEOUT_S
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    """The waits above, as settings (`[check] av_*_timeout_s`): tests of blocked paths compress them."""
    token: str | None = field(default=None, repr=False)
    """A check link's token, for a server that measures only with one."""
    on_busy: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    """Told in one sentence when the server is busy and the probe waits to retry."""

    def validate(self) -> None:
        bounds.AV_DURATION_S.check(self.duration_s, "duration", f"{self.duration_s:g} s")
        bounds.AV_TIMEOUT_S.check(self.gather_timeout_s, "gather timeout", f"{self.gather_timeout_s:g} s")
        bounds.AV_TIMEOUT_S.check(self.connect_timeout_s, "connect timeout", f"{self.connect_timeout_s:g} s")
        self.ice.validate()


def failed_result(status: Status, error: str, elapsed_s: float | None = None) -> AvResult:
    return AvResult(status=status, time_to_first_frame_ms=None, av_skew_ms=None, upstream=None, downstream=None,
                    ice_path=None, udp_blocked=None, duration_s=elapsed_s, error=error)


def result_from_fields(fields: dict) -> AvResult:
    """An AvResult back from its JSON form (`probe av --json`), e.g. from a probe run in a subprocess.

    Raises ValueError (or KeyError, TypeError) when the fields are not an A/V result.
    """
    def direction(value: dict | None) -> AvDirection | None:
        return None if value is None else AvDirection(**value)

    return AvResult(**{**fields, "status": Status(fields["status"]), "upstream": direction(fields.get("upstream")),
                       "downstream": direction(fields.get("downstream")),
                       "not_measured_here": tuple(fields.get("not_measured_here") or ())})


class AvProbe:
    """A short WebRTC call with a netcheck server's media peer."""

    name = "av"

    def __init__(self, server_url: str, settings: AvProbeSettings = AvProbeSettings()) -> None:
        settings.validate()
        self.server_url = server_url
        self.settings = settings

    async def run(self) -> AvResult:
        """One call; if it cannot connect and a UDP TURN server is configured, one more over TURN/TCP.

        A firewall that blocks UDP stops WebRTC's usual paths; whether TURN over TCP then carries
        the call is what the client and the clinic need to know.
        """
        first = await self._call_when_admitted(self.settings)
        ice = self.settings.ice
        if (first.status not in (Status.BLOCKED, Status.TIMEOUT) or first.server_busy or not ice.turn_url
                or turn_transport(ice.turn_url) != "udp"):
            return first
        over_tcp = await self._call_when_admitted(replace(self.settings, ice=ice.with_turn_transport("tcp")))
        if over_tcp.status == Status.OK:
            return replace(over_tcp, udp_blocked=True)
        return replace(first, error=f"{first.error}; TURN over TCP failed too: {over_tcp.error}")

    async def _call_when_admitted(self, settings: AvProbeSettings) -> AvResult:
        """One call; while the server answers busy (429), wait as it says and try again, for at most
        BUSY_WAIT_BUDGET_S in all."""
        deadline_s = time.monotonic() + BUSY_WAIT_BUDGET_S
        while True:
            try:
                return await self._call(settings)
            except ServerBusy as busy:
                if time.monotonic() + busy.retry_after_s > deadline_s:  # the server's doing, not the path's
                    return replace(failed_result(Status.TIMEOUT, f"the clinic's test server stayed busy for "
                                                 f"{BUSY_WAIT_BUDGET_S:g} s: try again later"), server_busy=True)
                if settings.on_busy is not None:
                    settings.on_busy(busy_message(busy.retry_after_s))
                await asyncio.sleep(busy.retry_after_s)

    async def _call(self, settings: AvProbeSettings) -> AvResult:
        # aiohttp, aiortc and PyAV (tracks) only when a call is made: `check` imports this module for its settings
        import aiohttp
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from netcheck.av.analysis import TrackRecorder
        from netcheck.av.peer import restrict_host_candidates, rtc_configuration
        from netcheck.av.tracks import MarkedAudioTrack, MarkedVideoTrack, MediaClock

        restrict_host_candidates()
        start_s = time.monotonic()
        pc = RTCPeerConnection(rtc_configuration(settings.ice))
        recorder = TrackRecorder()
        clock = MediaClock()
        pc.on("track", recorder.follow)
        pc.addTrack(MarkedAudioTrack(clock, settings.video, settings.audio_offset_ms))
        pc.addTrack(MarkedVideoTrack(clock, settings.video))
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        try:
            async with aiohttp.ClientSession(timeout=timeout, headers=bearer(settings.token)) as http:
                try:  # gathering waits for TURN allocations, which a firewall can leave unanswered
                    await asyncio.wait_for(pc.setLocalDescription(await pc.createOffer()), settings.gather_timeout_s)
                except asyncio.TimeoutError:
                    return failed_result(Status.BLOCKED, f"ICE gathering took over {settings.gather_timeout_s:g} s "
                                         "(STUN/TURN server unreachable?)", time.monotonic() - start_s)
                if "a=candidate:" not in pc.localDescription.sdp:
                    return failed_result(Status.BLOCKED, "no ICE candidate to offer (TURN allocation refused "
                                         "or failed?)", time.monotonic() - start_s)
                answer = await self._post_json(http, "/v1/av/offer", {
                    "type": "offer", "sdp": pc.localDescription.sdp, "audio_offset_ms": settings.audio_offset_ms,
                    "video": f"{settings.video.width}x{settings.video.height}@{settings.video.fps}",
                })
                if isinstance(answer, AvResult):
                    return answer
                session_id = str(answer.get("session_id"))
                ended: object = None
                try:
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=str(answer.get("sdp")), type="answer"))
                    if not await self._first_frame(pc, recorder, start_s, settings.connect_timeout_s):
                        result = failed_result(Status.BLOCKED if pc.iceConnectionState == "failed" else Status.TIMEOUT,
                                               f"no media within {settings.connect_timeout_s:g} s "
                                               f"(ICE {pc.iceConnectionState})",
                                               time.monotonic() - start_s)
                    else:
                        first_frame_s = recorder.recording.video_arrivals_s[0]
                        await asyncio.sleep(settings.duration_s)
                        result = await self._summarise(http, pc, recorder, clock, settings, session_id, start_s,
                                                       first_frame_s)
                        session_id = ""  # the report ended it
                finally:
                    if session_id:  # a call that failed half-way: free its place on the server now, not in a minute
                        ended = await self._post_json(http, f"/v1/av/sessions/{session_id}/report", {})
                # a call that could not start while the node was short of CPU is the node's doing, not a firewall's
                return marked_server_busy(result, _short_of_cpu(ended) if session_id else None)
        except ValueError as error:  # aiortc rejects the answer's SDP
            return failed_result(Status.ERROR, f"bad answer from server: {error}")
        finally:
            await recorder.stop()
            await pc.close()

    async def _post_json(self, http, path: str, body: dict) -> dict | AvResult:
        """POST to the server; a failure becomes a result, not an exception."""
        import aiohttp

        url = f"{self.server_url}{path}"
        try:
            async with http.post(url, json=body) as response:
                if response.status == 429:
                    raise ServerBusy(retry_after_s(response.headers))
                data = await read_bounded(response, MAX_ANSWER_BYTES)
                if response.status != 200:
                    reason = _error_text(data) or f"HTTP {response.status}"
                    return failed_result(Status.ERROR, f"server refused {path}: {reason}")
                return json.loads(data)
        except asyncio.TimeoutError:
            return failed_result(Status.TIMEOUT, f"server did not answer {path} within {HTTP_TIMEOUT_S:g} s")
        except aiohttp.ClientConnectorError as error:
            reason = (error.os_error.strerror or str(error.os_error)).lower()
            return failed_result(Status.UNREACHABLE, f"server {self.server_url} unreachable: {reason}")
        except aiohttp.ClientError as error:
            return failed_result(Status.UNREACHABLE, f"server unreachable: {type(error).__name__}")
        except BodyTooLarge:
            return failed_result(Status.ERROR, f"server's answer to {path} is larger than {MAX_ANSWER_BYTES} bytes")
        except ValueError:
            return failed_result(Status.ERROR, f"server answered {path} with something that is not JSON")

    async def _first_frame(self, pc, recorder, start_s: float, timeout_s: float) -> bool:
        remaining_s = timeout_s - (time.monotonic() - start_s)
        failed = asyncio.Event()

        @pc.on("iceconnectionstatechange")
        def _on_state() -> None:
            if pc.iceConnectionState == "failed":
                failed.set()

        waits = [asyncio.ensure_future(recorder.first_video.wait()), asyncio.ensure_future(failed.wait())]
        done, pending = await asyncio.wait(waits, timeout=max(0.0, remaining_s), return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return recorder.first_video.is_set()

    async def _summarise(self, http, pc, recorder, clock, settings: AvProbeSettings, session_id: str,
                         start_s: float, first_frame_s: float) -> AvResult:
        window_end_s = time.monotonic()
        downstream_received = received_fields(recorder.recording, await peer.inbound_figures(pc), settings.video,
                                              window_end_s)
        upstream_sent = sent_fields(await peer.outbound_figures(pc, clock.start_s))
        path = peer.selected_candidate_type(pc)  # before the report: the server then ends the session
        report = await self._post_json(http, f"/v1/av/sessions/{session_id}/report", {})
        if isinstance(report, AvResult):
            return report
        try:
            upstream = AvDirection(**{**report["received"], **upstream_sent})
            downstream = AvDirection(**{**downstream_received, **report["sent"]})
        except (KeyError, TypeError):
            return failed_result(Status.ERROR, "server report is not in the expected form")
        skews = [skew for skew in (upstream.av_skew_ms, downstream.av_skew_ms) if skew is not None]
        if path is None and settings.ice.relay_only:
            path = "relay"  # the policy allows nothing else
        if path == "relay":
            path = f"relay-{peer.turn_transport(settings.ice.turn_url)}"
        return AvResult(
            status=Status.OK,
            time_to_first_frame_ms=round((first_frame_s - start_s) * 1000.0, 1),
            av_skew_ms=max(skews, key=abs) if skews else None,
            upstream=upstream,
            downstream=downstream,
            ice_path=path,
            udp_blocked=False if path and path != "relay-tcp" else None,
            duration_s=round(window_end_s - first_frame_s, 3),
            error=None,
            server_cpu_pct=_cpu_pct(report.get("server_cpu_max_pct")),
            server_busy=_short_of_cpu(report),
        )


def _cpu_pct(value: object) -> float | None:
    """The server's CPU figure, if it is a plausible one (the server may be older, or hostile)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        return None
    return float(value)


def _short_of_cpu(report: object) -> bool | None:
    """The server's mark: was the node short of CPU during the call? None from an older server."""
    value = report.get("server_short_of_cpu") if isinstance(report, dict) else None
    return value if isinstance(value, bool) else None


def _error_text(data: bytes) -> str | None:
    try:
        message = json.loads(data).get("error")
    except (ValueError, AttributeError):
        return None
    return str(message)[:200] if message else None
