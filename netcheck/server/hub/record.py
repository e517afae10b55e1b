"""What this node knows of a session, for its report page: the hub's held events and the node's store.

The hub holds a session's last `history_events` (500) events, in memory until a restart or in Redis
until the tokens expire; the node's store holds every event the hub accepted on this node (written
once a second by server/checks.py, within the config's `[store]` bounds) and the session's checks.
Neither alone is the whole session, so the report reads both; build_report keeps each event once (the
store's own key: leg, type, time in UTC, cue). docs/in-session.md, "The therapist's panel and the report page".

The hub's events are read through its backend's watcher interface, bounded in time: the held
events come at once (memory) or in a few short reads (Redis), and the read stops at the first
quiet `HELD_READ_WAIT_S`, so a report request never waits for live events.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from netcheck.server.hub.backend import HubBackend
from netcheck.server.refusal import Refusal
from netcheck.session.watch import LineSplitter, SseParser, StreamBroken, parse_event

HELD_READ_WAIT_S = 0.05
"""A quiet read this long ends the replay: the held events are already queued (memory) or one
XREAD away (Redis)."""
HELD_READ_BUDGET_S = 2.0
"""At most this long in all: 500 events are 5 Redis reads of 100."""

Event = dict[str, Any]


@dataclass(frozen=True)
class HeldEvents:
    events: list[Event]
    refused: str | None = None
    """Why the hub did not answer (too many watchers, Redis unreachable); None when it did."""
    skipped: int = 0
    """Held messages that were not events of the contract (an older node's, a damaged entry): left out."""


async def hub_held_events(backend: HubBackend, session_id: str,
                          transport: asyncio.BaseTransport | None) -> HeldEvents:
    """The session's events the hub still holds, oldest first, validated as `netcheck watch` validates them.

    `transport`: the asking request's; the in-memory hub drops a watcher whose connection is gone (or
    that has none) when the next one subscribes, which would cut this read short.
    """
    try:
        subscription = await backend.subscribe(session_id, 0, transport)
    except Refusal as refusal:
        return HeldEvents([], str(refusal))
    events: list[Event] = []
    skipped = 0
    splitter, parser = LineSplitter(), SseParser()
    deadline_s = time.monotonic() + HELD_READ_BUDGET_S
    try:
        while time.monotonic() < deadline_s:
            frames = await subscription.next_frames(HELD_READ_WAIT_S)
            if not frames:
                break
            for line in splitter.feed(b"".join(frames)):
                message = parser.feed_line(line)
                event = parse_event(message, session_id) if message else None
                if event is not None:
                    events.append(event)
                skipped += message is not None and event is None
    except StreamBroken as error:
        return HeldEvents(events, str(error), skipped)
    finally:
        await subscription.close()
    return HeldEvents(events, None, skipped)
