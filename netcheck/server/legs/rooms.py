"""Video rooms bound to sessions (issue 25's rtcstats door): a conference is followed only for a bound room.

The clinic binds the room its video app holds a session in (Jitsi Meet's conference name) to the netcheck
session, with the session's therapist token and an expiry no later than that token's:
`PUT /v1/sessions/{id}/rooms/{room}` `{"expires_s", "therapist_name"?, "client_name"?}` (`netcheck session
bind-room`), `DELETE` the same path to unbind. The names say which participant is who: the display name the
video app sends in its rtcstats identity (Jitsi: `enableDisplayNameInStats`) compared exactly, ignoring case
and surrounding spaces; anyone else is a participant whose call is not judged on a leg (docs/design-notes.md,
"The rtcstats door"). In memory: a node that restarts forgets its rooms and the clinic binds them again.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from netcheck.browser.check_body import BodyError, Number, Obj, Pattern
from netcheck.parse import strict_json
from netcheck.server.hub.routes import SessionHub, hub_disabled, session_claims
from netcheck.server.refusal import Refusal, bad_body, read_body

ROOM = re.compile(r"[^\s/\\?#\x00-\x1f\x7f]{1,128}")
"""A conference name as the video app puts it in the door's URL (Jitsi: the room, lower case)."""
MAX_ROOMS = 1000
"""Rooms bound on one node at once; expired ones make room first."""
MIN_BIND_S = 60.0
MAX_BODY_BYTES = 1024
NAME = Pattern(re.compile(r"^[^\x00-\x1f\x7f]{1,64}$"), "1 to 64 characters")
BIND_BODY = Obj({"expires_s": Number(MIN_BIND_S, 7 * 86400.0, nullable=False), "therapist_name": NAME,
                 "client_name": NAME}, nullable=False, required=("expires_s",))
ROOMS_PATH = "/v1/sessions/{session_id}/rooms/{room}"


@dataclass(frozen=True)
class Binding:
    """One room's session until `expires_at_s` (Unix seconds), with the names that tell its two people apart."""

    room: str
    session_id: str
    expires_at_s: float
    names: dict[str, str]
    """role → the display name (casefolded) that is that role's."""

    def role_of(self, display_names: list[str]) -> str | None:
        """The role whose bound name one of the participant's names is; None when none is (a participant)."""
        wanted = {name.strip().casefold() for name in display_names}
        roles = [role for role, name in self.names.items() if name in wanted]
        return roles[0] if len(roles) == 1 else None


def room_key(raw: str) -> str | None:
    """The room as bindings key it (case folded), or None when it is not a room name."""
    return raw.casefold() if ROOM.fullmatch(raw) else None


class RoomBindings:
    """The bound rooms and their API; register with `routes(app)`."""

    def __init__(self, hub: SessionHub | None) -> None:
        self.hub = hub
        self.rooms: dict[str, Binding] = {}

    def routes(self, app: web.Application) -> None:
        app.router.add_put(ROOMS_PATH, self.bind)
        app.router.add_delete(ROOMS_PATH, self.unbind)

    def find(self, room: str, now_s: float | None = None) -> Binding | None:
        """The room's binding if it is bound and has not expired."""
        binding = self.rooms.get(room)
        now_s = time.time() if now_s is None else now_s
        return binding if binding is not None and binding.expires_at_s > now_s else None

    def _claims_and_room(self, request: web.Request) -> tuple[str, str, float]:
        """(session, room, the token's last second): only the session's therapist token binds its rooms."""
        if self.hub is None:
            raise hub_disabled()
        claims = session_claims(self.hub.secret, request)
        if claims.role != "therapist":
            raise Refusal(403, "role", "only the session's therapist token binds a room to it")
        room = room_key(request.match_info["room"])
        if room is None:
            raise Refusal(400, "bad_query", "a room is 1 to 128 characters without spaces or / ? #")
        return claims.session_id, room, claims.accepted_until_s

    async def bind(self, request: web.Request) -> web.Response:
        session_id, room, until_s = self._claims_and_room(request)
        try:
            body = strict_json(await read_body(request, MAX_BODY_BYTES))
        except ValueError as error:
            raise bad_body(BodyError("", f"not JSON ({error})"[:200])) from None
        try:
            fields: dict[str, Any] = BIND_BODY.check(body, "") or {}
        except BodyError as error:
            raise bad_body(error) from None
        now_s = time.time()
        held = self.find(room, now_s)
        if held is not None and held.session_id != session_id:
            raise Refusal(409, "room_taken", "the room is bound to another session until its binding expires")
        names = {role: str(fields[f"{role}_name"]).strip().casefold()
                 for role in ("therapist", "client") if fields.get(f"{role}_name")}
        if len(set(names.values())) < len(names):
            raise bad_body(BodyError("client_name", "must differ from therapist_name"))
        for expired in [key for key, other in self.rooms.items() if other.expires_at_s <= now_s]:
            del self.rooms[expired]
        if room not in self.rooms and len(self.rooms) >= MAX_ROOMS:
            raise Refusal(503, "busy", f"this node has {MAX_ROOMS} rooms bound already", 60)
        binding = Binding(room, session_id, min(now_s + float(fields["expires_s"]), until_s), names)
        self.rooms[room] = binding
        return web.json_response({"room": room, "session_id": session_id, "expires_in_s": round(binding.expires_at_s - now_s),
                                  "roles_named": sorted(names)}, headers={"Cache-Control": "no-store"})

    async def unbind(self, request: web.Request) -> web.Response:
        session_id, room, _ = self._claims_and_room(request)
        binding = self.rooms.get(room)
        if binding is None or binding.session_id != session_id:
            raise Refusal(404, "not_found", "no such room bound to this session")
        del self.rooms[room]
        return web.json_response({"room": room, "unbound": True}, headers={"Cache-Control": "no-store"})
