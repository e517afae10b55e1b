"""Bind a video room to a session on a node (`netcheck session bind-room`; issue 25's rtcstats door).

The node follows a Jitsi Meet conference only while its room is bound: `PUT /v1/sessions/{id}/rooms/{room}`
with the session's therapist token (server/legs/rooms.py). Standard library only: one request.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from netcheck.errors import MeasurementError, NetcheckError, UsageError

TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 16 * 1024


def bind_room(node_url: str, session_id: str, room: str, token: str, expires_s: float,
              names: dict[str, str]) -> dict[str, Any]:
    """The node's answer to binding `room` to the session for `expires_s` (role → display name in `names`)."""
    parts = urllib.parse.urlsplit(node_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--node {node_url[:140]!r}: use http(s)://HOST[:PORT]")
    url = (f"{node_url.rstrip('/')}/v1/sessions/{urllib.parse.quote(session_id, safe='')}"
           f"/rooms/{urllib.parse.quote(room, safe='')}")
    body = {"expires_s": expires_s, **{f"{role}_name": name for role, name in names.items()}}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return dict(json.loads(response.read(MAX_ANSWER_BYTES)))
    except urllib.error.HTTPError as error:
        try:
            answer = json.loads(error.read(MAX_ANSWER_BYTES))
            why = f"{answer.get('reason')}: {answer.get('error')}"
        except (ValueError, AttributeError):
            why = f"HTTP {error.code}"
        raise NetcheckError(f"the node refused the binding ({why})"[:300]) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise MeasurementError(f"node {node_url[:140]} unreachable: {error}"[:300]) from None
