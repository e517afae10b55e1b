"""What this node knows of a session, for its report page: the hub's held events and the node's store.

The hub holds a session's last `history_events` (500) events, in memory until a restart or in Redis
until the tokens expire; the node's store holds every event the hub accepted on this node (written
once a second by server/checks.py, within the config's `[store]` bounds) and the session's checks.
Neither alone is the whole session, so the report reads both and keeps each event once (the store's
own key: session, leg, type, time, cue). docs/in-session.md, "The therapist's panel and the report page".

The hub's events are read through its backend's watcher interface, bounded in time: the held
events come at once (memory) or in a few short reads (Redis), and the read stops at the first
quiet `HELD_READ_WAIT_S`, so a report request never waits for live events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
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
    except StreamBroken as error:
        return HeldEvents(events, str(error))
    finally:
        await subscription.close()
    return HeldEvents(events)


def event_key(event: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """The store's primary key of a session event (its session being given)."""
    return (str(event.get("leg")), str(event.get("type")), str(event.get("at")), str(event.get("cue") or ""))


def merge_events(*sources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Every event once, the first source's copy winning."""
    seen: dict[tuple[str, str, str, str], Mapping[str, Any]] = {}
    for source in sources:
        for event in source:
            seen.setdefault(event_key(event), event)
    return list(seen.values())
