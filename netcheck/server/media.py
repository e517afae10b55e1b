"""The server's media peer: answers A/V offers, sends its own marked tracks, records what it receives.

Each session is one aiortc peer connection, bounded in number and lifetime. The client fetches
the server's view (upstream reception, downstream sending) from the report endpoint, which also
ends the session.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from netcheck.av.figures import received_fields, sent_fields
from netcheck.av.peer import IceSettings, inbound_figures, offer_left_open, outbound_figures
from netcheck.errors import UsageError
from netcheck.parse import strict_json
from netcheck.server.access import MeasuringAccess
from netcheck.server.admission import Busy, FairShare, Slot
from netcheck.server.headroom import CpuHeadroom
from netcheck.server.refusal import Refusal, busy, read_body, sdp_not_accepted
from netcheck.server.voice_channel import LABEL as VOICE_LABEL
from netcheck.server.voice_channel import VoiceChannelLog

if TYPE_CHECKING:  # aiortc and PyAV: imported when a call is offered (handle_offer)
    from aiortc import RTCPeerConnection

    from netcheck.av.analysis import TrackRecorder
    from netcheck.av.tracks import MarkedVideoTrack, MediaClock

MAX_SESSIONS = 4
"""Each session encodes and decodes video; two cores carry about four."""
MAX_SESSION_S = 60.0
CPU_BUSY_RETRY_S = 5
"""A busy CPU usually has room again once a running call has ended: a few seconds."""


@dataclass
class MediaSession:
    session_id: str
    pc: RTCPeerConnection
    recorder: TrackRecorder
    clock: MediaClock
    video: MarkedVideoTrack
    created_s: float = field(default_factory=time.monotonic)
    expiry: asyncio.TimerHandle | None = None
    slot: Slot | None = None
    """Its place in the A/V fair share, released when the session ends."""
    client: str = ""
    """Who started it (admission.client_of): only they may end it with a browser check."""
    voice: VoiceChannelLog | None = None
    """The voice-path data channel's log, once the page opened one (one per session)."""


@dataclass(frozen=True)
class FinishedSession:
    """A session ended by a browser check, and what the server recorded of it."""

    view: dict[str, Any]
    """As the report endpoint answers: `received`, `sent`, `server_cpu_max_pct`, `server_short_of_cpu`."""
    voice: VoiceChannelLog | None
    age_s: float
    """From the offer to the end."""


class MediaPeerHub:
    """All media sessions of one server."""

    def __init__(self, ice: IceSettings, max_sessions: int = MAX_SESSIONS, max_session_s: float = MAX_SESSION_S,
                 access: MeasuringAccess | None = None, share: FairShare | None = None,
                 cpu: CpuHeadroom | None = None) -> None:
        self.ice = ice
        self.max_sessions = max_sessions
        self.max_session_s = max_session_s
        self.access = access or MeasuringAccess(None)
        self.share = share or FairShare("A/V sessions", per_client=max_sessions, total=max_sessions,
                                        expected_hold_s=10.0)
        self.cpu = cpu
        self.sessions: dict[str, MediaSession] = {}

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/av/offer", self.handle_offer)
        app.router.add_post("/v1/av/sessions/{session_id}/report", self.handle_report)
        app.on_shutdown.append(lambda _app: self.close_all())

    async def handle_offer(self, request: web.Request) -> web.Response:
        # aiortc and PyAV (tracks) once a call is offered: `serve` and `check --local` start without them
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from netcheck.av.analysis import TrackRecorder
        from netcheck.av.peer import restrict_host_candidates, rtc_configuration
        from netcheck.av.session import parse_offer_request
        from netcheck.av.tracks import MarkedAudioTrack, MarkedVideoTrack, MediaClock

        caller = self.access.caller(request)  # before reading the body: a refused caller costs nothing
        raw = await read_body(request)
        try:
            sdp, video, audio_offset_ms = parse_offer_request(strict_json(raw))
        except (ValueError, UsageError) as error:
            raise Refusal(400, "bad_offer", f"bad offer: {error}"[:300]) from None
        # a bad offer is told so even by a busy node (its bounded body costs well under a millisecond to
        # read): "busy, try again" would have its client retry what can never succeed (design-notes.md)
        if self.cpu is not None and self.cpu.busy:  # the node's own CPU, never the machine's (headroom.py)
            self.share.refused += 1  # the node's metrics count it with the share's refusals
            raise busy(CPU_BUSY_RETRY_S, self.cpu.load.reason(self.cpu.limits))
        slot = self.share.acquire(caller.client)
        if isinstance(slot, Busy):
            raise busy(slot.retry_after_s, slot.reason)

        restrict_host_candidates()
        pc = RTCPeerConnection(rtc_configuration(self.ice))
        clock = MediaClock()
        recorder = TrackRecorder()
        session = MediaSession(secrets.token_hex(16), pc, recorder, clock, video, slot=slot, client=caller.client)
        pc.on("track", recorder.follow)
        pc.on("datachannel", lambda channel: _answer_voice(session, channel))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_left_open(sdp), type="offer"))
            pc.addTrack(MarkedAudioTrack(clock, video, audio_offset_ms))
            pc.addTrack(MarkedVideoTrack(clock, video))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as error:  # aiortc raises ValueError, KeyError, … on malformed SDP
            await _close(session)
            raise sdp_not_accepted(error) from None
        self.sessions[session.session_id] = session
        session.expiry = asyncio.get_running_loop().call_later(
            self.max_session_s, lambda: asyncio.ensure_future(self.end(session.session_id)))
        return web.json_response({"type": "answer", "sdp": pc.localDescription.sdp,
                                  "session_id": session.session_id})

    async def handle_report(self, request: web.Request) -> web.Response:
        """The server's view of the session, then the session ends."""
        self.access.caller(request)
        session = self.sessions.get(request.match_info["session_id"])
        if session is None:
            raise Refusal(404, "not_found", "no such session (ended or expired)")
        try:
            report = await server_view(session, self.cpu)
        finally:
            await self.end(session.session_id)
        return web.json_response(report)

    async def finish(self, session_id: str, client: str) -> FinishedSession | None:
        """End `client`'s session `session_id` and return the server's view of it and its voice log;
        None when there is no such session of theirs (ended, expired, or someone else's)."""
        session = self.sessions.get(session_id)
        if session is None or session.client != client:
            return None
        try:
            view = await server_view(session, self.cpu)
        finally:
            await self.end(session_id)
        return FinishedSession(view, session.voice, time.monotonic() - session.created_s)

    async def end(self, session_id: str) -> None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            await _close(session)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.end(session_id) for session_id in list(self.sessions)))


async def server_view(session: MediaSession, cpu: CpuHeadroom | None = None) -> dict[str, Any]:
    """What the server saw of a session: the upstream it received, the downstream it sent, and whether
    the node was short of CPU meanwhile (its figures may then carry the node's delay, not the path's)."""
    window_end_s = time.monotonic()
    spell = cpu.during(session.created_s) if cpu is not None else None
    return {
        "received": received_fields(session.recorder.recording, await inbound_figures(session.pc),
                                    session.video, window_end_s),
        "sent": sent_fields(await outbound_figures(session.pc, session.clock.start_s)),
        "server_cpu_max_pct": round(spell.cpu_max_pct, 1) if spell else 0.0,
        "server_short_of_cpu": spell.short_of_cpu if spell else False,
    }


def _answer_voice(session: MediaSession, channel: Any) -> None:
    """Echo the voice-path probe on the page's "netcheck-voice" channel; other channels are left
    unanswered, and a second voice channel in the same session too (one log per call)."""
    if channel.label != VOICE_LABEL or session.voice is not None:
        return
    log = session.voice = VoiceChannelLog()

    def on_message(data: object) -> None:
        if not isinstance(data, bytes):
            log.ignored += 1
            return
        reply = log.answer(data, time.monotonic() * 1000.0)
        if reply is not None and channel.readyState == "open":
            channel.send(reply)

    channel.on("message", on_message)


async def _close(session: MediaSession) -> None:
    if session.expiry is not None:
        session.expiry.cancel()
    if session.slot is not None:
        session.slot.release()
    await session.recorder.stop()
    await session.pc.close()
