"""The rtcstats door (issue 25): Jitsi Meet's own call statistics, judged as the session's call leg.

Jitsi Meet with `analytics.rtcstatsEnabled` and `analytics.rtcstatsEndpoint: "wss://NODE/v1/rtcstats"`
runs `@jitsi/rtcstats` (npm, protocol 3.1): each participant's browser opens a WebSocket to
`ENDPOINT/<conference name>?statsSessionId=…&isReconnect=…` with the subprotocol `3.1_STANDARD`, waits
for the server's `{"type": "sn", "body": {"value", "state": "initial"}}`, then sends `identity`
(Jitsi's config, `confName`, `displayName`, `endpointId`, …), `stats-entry` messages whose `data` is the
JSON text of `[method, pc id, payload, time, seq]` — `getstats` payloads delta-compressed — and
`keepalive` every 30 s. The door follows a conference only for a room bound to a session (rooms.py) and
from the clinic's listed origins; it undoes the deltas (browser/rtcstats_stats.py) into the snapshots
web/callstats.js posts and hands them to the call legs' one judge (`SessionCalls.judge`): the same
windows, hysteresis, hub events, store and points, `source=call`. A participant whose role the binding
does not name is not judged on a leg. Bounds and drop reasons: docs/design-notes.md, "The rtcstats door".
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from netcheck.browser.call_window import MAX_PEERS, STREAM_ID, parse_peers
from netcheck.browser.check_body import BodyError
from netcheck.browser.rtcstats_stats import EntryDropped, Reports, undo_delta, window_peers
from netcheck.parse import strict_json
from netcheck.server.legs.call import WINDOW_S, SessionCalls
from netcheck.server.legs.rooms import Binding, RoomBindings, room_key
from netcheck.server.legs.routes import node_address
from netcheck.server.rate import TokenBuckets
from netcheck.server.refusal import Refusal

DOOR_PATH = "/v1/rtcstats/{room}"
PROTOCOL = "3.1_STANDARD"
"""@jitsi/rtcstats' PROTOCOL_ITERATION with standard getStats; `3.1_LEGACY` (Chrome's old stats) is not spoken."""
MAX_MESSAGE_BYTES = 256 * 1024
"""Jitsi's identity carries its whole config (≈ 10–40 kB); a first getstats of an SFU call ≈ 100 kB."""
ENTRIES_PER_S = 20.0
ENTRY_BURST = 300.0
"""A call's start sends a few dozen entries at once (candidates, state changes, getUserMedia), then one
getstats per connection every poll; beyond, messages are dropped before they are parsed."""
MAX_DROPPED_IN_A_ROW = 200
"""A sender still flooding after this many dropped messages is disconnected (close 1008)."""
MAX_CONNECTIONS = 200
MAX_PER_SOURCE = 20
"""Participants behind one address (a clinic's office NAT) followed at once."""
IDLE_S = 75.0
"""The client's keepalive comes every 30 s; silent this long, the connection is closed."""
EARLY_MS = 500.0
"""A window is judged once the stats' own stamps are WINDOW_S past the last window, less a timer's slack."""
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
POLICY_CLOSE = 1008


@dataclass
class DoorCounters:
    """What the door did since the node started (the admin's view); windows judged are the call legs'."""

    refused: Counter[str] = field(default_factory=Counter)
    """Connections refused before the upgrade, by reason."""
    dropped: Counter[str] = field(default_factory=Counter)
    """Messages or entries dropped, by reason; never stored."""
    participant_entries: int = 0
    """getstats entries of participants whose role the binding does not name: undone, not judged."""
    windows: int = 0
    """Snapshots handed to the call legs' judge (the first of a leg is its baseline)."""


@dataclass
class Participant:
    """One WebSocket: one participant's browser in a bound room."""

    key: str
    binding: Binding
    source: str
    server: str
    role: str | None = None
    identified: bool = False
    connections: dict[str, Reports] = field(default_factory=dict)
    fresh: set[str] = field(default_factory=set)
    """Connections with a getstats since the last window (only those make the next one)."""
    last_window_ms: float | None = None
    dropped_in_a_row: int = 0


class RtcstatsDoor:
    """The door's endpoint; register with `routes(app)`."""

    def __init__(self, calls: SessionCalls, rooms: RoomBindings, origins: tuple[str, ...]) -> None:
        self.calls = calls
        self.rooms = rooms
        self.origins = origins
        self.counters = DoorCounters()
        self.open: dict[str, Participant] = {}
        self.per_source: Counter[str] = Counter()
        self.roles: dict[tuple[str, str], str] = {}
        """(session, role) → the participant key judged as that leg (the first to name itself so)."""
        self.entries = TokenBuckets(ENTRIES_PER_S, ENTRY_BURST, 2 * MAX_CONNECTIONS)
        self._next = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_get(DOOR_PATH, self.door)

    def _admit(self, request: web.Request) -> tuple[Binding, str]:
        """The room's binding and the caller's address, or the refusal (before the upgrade: a few bytes)."""
        if request.headers.get("Origin", "").lower() not in self.origins:
            self.counters.refused["foreign_origin"] += 1
            raise Refusal(403, "foreign_origin", "the door follows the calls of the clinic's listed video origins only")
        room = room_key(request.match_info["room"])
        binding = self.rooms.find(room) if room is not None else None
        if binding is None:
            self.counters.refused["unbound_room"] += 1
            raise Refusal(403, "unbound_room", "this room is not bound to a session (netcheck session bind-room)")
        source = request.remote or "unknown"
        if len(self.open) >= MAX_CONNECTIONS or self.per_source[source] >= MAX_PER_SOURCE:
            self.counters.refused["busy"] += 1
            raise Refusal(503, "busy", "the node follows as many call participants as it can", 60)
        return binding, source

    async def door(self, request: web.Request) -> web.StreamResponse:
        binding, source = self._admit(request)
        ws = web.WebSocketResponse(protocols=(PROTOCOL,), max_msg_size=MAX_MESSAGE_BYTES, receive_timeout=IDLE_S)
        await ws.prepare(request)
        self._next += 1
        participant = Participant(f"p{self._next}", binding, source, node_address(request))
        self.open[participant.key] = participant
        self.per_source[source] += 1
        try:
            await ws.send_json({"type": "sn", "body": {"value": 0, "state": "initial"}})
            while not ws.closed:
                close_code = await self._receive(ws, participant)
                if close_code is not None:
                    await ws.close(code=close_code)
        except (asyncio.TimeoutError, ConnectionError):
            await ws.close()
        finally:
            self._leave(participant)
        return ws

    def _leave(self, participant: Participant) -> None:
        del self.open[participant.key]
        self.per_source[participant.source] -= 1
        if self.per_source[participant.source] <= 0:
            del self.per_source[participant.source]
        if participant.role is not None:
            self.roles.pop((participant.binding.session_id, participant.role), None)

    async def _receive(self, ws: web.WebSocketResponse, participant: Participant) -> int | None:
        """One message: dropped before parsing when over the rate; a close code when the connection must end."""
        message = await ws.receive()
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return None
        if message.type == WSMsgType.ERROR:  # aiohttp: 1009 over MAX_MESSAGE_BYTES, read no further
            self.counters.dropped["too_large"] += 1
            return None
        if not self.entries.allow(participant.key, time.monotonic()):
            self.counters.dropped["rate"] += 1
            participant.dropped_in_a_row += 1
            return POLICY_CLOSE if participant.dropped_in_a_row >= MAX_DROPPED_IN_A_ROW else None
        participant.dropped_in_a_row = 0
        if message.type != WSMsgType.TEXT:
            self.counters.dropped["malformed_message"] += 1
            return None
        reason = await self._message(participant, message.data)
        if reason is not None:
            self.counters.dropped[reason] += 1
        return POLICY_CLOSE if reason == "binding_expired" else None

    async def _message(self, participant: Participant, text: str) -> str | None:
        """The drop reason of one message, or None when it was taken."""
        try:
            document = strict_json(text)
            if not isinstance(document, dict):
                return "malformed_message"
            kind = document.get("type")
            if not SESSION_ID.fullmatch(str(document.get("statsSessionId", ""))):
                return "malformed_message"
            if kind == "keepalive":
                return None
            if kind == "identity":
                return self._identity(participant, document.get("data"))
            if kind != "stats-entry" or not isinstance(document.get("data"), str):
                return "malformed_message"
            entry = strict_json(document["data"])
        except (ValueError, KeyError, TypeError):
            return "malformed_message"
        if not isinstance(entry, list) or len(entry) < 3 or not isinstance(entry[0], str):
            return "malformed_message"
        method, pc, payload = entry[0], entry[1], entry[2]
        if method == "close" and isinstance(pc, str):
            participant.connections.pop(pc, None)
            participant.fresh.discard(pc)
        if method != "getstats":
            return None
        if not isinstance(pc, str) or not STREAM_ID.fullmatch(pc):
            return "malformed_message"
        if pc not in participant.connections and len(participant.connections) >= MAX_PEERS:
            return "too_many_peers"
        try:
            participant.connections[pc], stamp_ms = undo_delta(participant.connections.get(pc, {}), payload)
        except EntryDropped as dropped:
            return dropped.reason
        participant.fresh.add(pc)
        return await self._window(participant, stamp_ms)

    def _identity(self, participant: Participant, data: Any) -> str | None:
        """The participant's role from its first identity that names it: the binding's, else none."""
        if not isinstance(data, list) or len(data) < 3 or not isinstance(data[2], dict):
            return "malformed_message"
        if participant.identified:
            return None
        names = [str(data[2][name])[:64] for name in ("statisticsDisplayName", "displayName")
                 if isinstance(data[2].get(name), str)]
        participant.identified = True
        role = participant.binding.role_of(names)
        leg = (participant.binding.session_id, role) if role is not None else None
        if leg is not None and leg not in self.roles:  # a second browser naming itself the same is a participant
            self.roles[leg] = participant.key
            participant.role = role
        return None

    async def _window(self, participant: Participant, stamp_ms: float) -> str | None:
        """Judge the fresh connections' snapshot once the stats' stamps are a window past the last one."""
        if participant.role is None:
            self.counters.participant_entries += 1
            return None
        binding = self.rooms.find(participant.binding.room)
        if binding is None or binding.session_id != participant.binding.session_id:
            return "binding_expired"
        last_ms = participant.last_window_ms
        if last_ms is not None and stamp_ms < last_ms + WINDOW_S * 1000.0 - EARLY_MS:
            return None
        peers = window_peers({pc: participant.connections[pc] for pc in participant.fresh})
        if not peers:
            return "no_streams"
        try:
            snapshot = parse_peers(peers)
        except BodyError:
            participant.fresh.clear()
            return "bad_entry"
        try:
            await self.calls.judge(binding.session_id, participant.role, snapshot, binding.expires_at_s,
                                   participant.server)
        except Refusal:
            return "busy"
        participant.last_window_ms = stamp_ms
        participant.fresh.clear()
        self.counters.windows += 1
        return None


def door_status(door: RtcstatsDoor) -> dict[str, Any]:
    """The door's counters as JSON (tests, the admin)."""
    counters = door.counters
    return {"open": len(door.open), "refused": dict(counters.refused), "dropped": dict(counters.dropped),
            "windows": counters.windows, "participant_entries": counters.participant_entries}
