"""Into the session hub as a leg the server measures: a tab's windows (leg.py) and a call's (call.py).

Both go through the hub's own validation (`SessionHub.checked_events`: the server writes every
sentence) and its post rate, exactly as an agent's POST goes; what the hub refuses now (429, 503)
waits for the next window, what it refuses as broken (400) is not re-sent forever.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

from netcheck.server.hub.routes import SessionHub
from netcheck.server.refusal import Refusal
from netcheck.session.hub_client import HUB_KEYS_SET_BY_SERVER, MAX_EVENTS_PER_POST


async def publish_events(hub: SessionHub | None, session_id: str, role: str, until_s: float,
                         waiting: deque[dict[str, Any]], events: list[dict[str, Any]], what: str,
                         on_event: Callable[[str], None], source: str | None = None) -> None:
    """Publish `events` (and those `waiting` from earlier windows) as `role`'s leg; `what` names the
    measuring side in the server's log ("tab", "call"). `source`, when given, is set by the server on
    every event after the hub's checks (which drop any posted one): "call" for the call's own figures."""
    if hub is None:
        return
    waiting.extend({k: v for k, v in event.items() if k not in HUB_KEYS_SET_BY_SERVER} for event in events)
    while waiting:
        batch = [waiting.popleft() for _ in range(min(MAX_EVENTS_PER_POST, len(waiting)))]
        try:
            await hub.backend.admit_post(session_id, role)
            checked = hub.checked_events(json.dumps({"events": batch}).encode(), role)
            if source is not None:
                checked = [{**event, "source": source} for event in checked]
            await hub.backend.publish(session_id, role, checked, until_s)
        except Refusal as refusal:
            hub.counters.posts_refused += 1
            if refusal.status == 400:  # our own events broke the contract: re-sent, they would block every later one
                on_event(f"session {session_id}: the hub refused the {role}'s {what}'s events "
                         f"({refusal}); they stay in the node's store only")
                continue
            waiting.extendleft(reversed(batch))
            on_event(f"session {session_id}: the hub did not take the {role}'s {what}'s window "
                     f"({refusal}); it goes with the next one")
            return
        hub.counters.posts_accepted += 1
        hub.counters.events_published += len(batch)
