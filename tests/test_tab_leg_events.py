"""A tab's leg publishes its window's events into the hub the way an agent's POST goes in: checked,
and each warning with the sentence the server writes (issue 23). The tab's warnings once went in
without it (the route added the words, the leg did not), and `netcheck watch` and the panel never
showed them; only the namespace test of a lossy tab caught it."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from netcheck.model import Cue, Level
from netcheck.server.hub.routes import SessionHub
from netcheck.server.legs.leg import TabLeg
from netcheck.session.alerts import WarningEvent
from netcheck.session.events import warning_event

SECRET = b"a secret of the node, long enough"


@dataclass
class FakeSinks:
    """FAKE: only what `_publish` reads of a leg's sinks (the real hub, a list for the node's notes)."""

    hub: SessionHub
    notes: list[str] = field(default_factory=list)

    def on_event(self, message: str) -> None:
        self.notes.append(message)


@dataclass
class FakeLeg:
    """FAKE: the fields of a TabLeg that `TabLeg._publish` uses, without a peer connection."""

    sinks: FakeSinks
    session_id: str = "s1"
    role: str = "client"
    until_s: float = field(default_factory=lambda: time.time() + 3600)
    waiting: deque[dict[str, Any]] = field(default_factory=deque)


def published_frames(hub: SessionHub, session_id: str) -> list[dict[str, Any]]:
    session = hub.backend.sessions[session_id]  # type: ignore[attr-defined]  # MemoryBackend
    return [json.loads(frame.decode().split("data: ", 1)[1].split("\n", 1)[0]) for _, frame in session.history]


def test_a_tabs_warning_reaches_the_hub_with_the_servers_sentence() -> None:
    hub = SessionHub(SECRET)
    leg = FakeLeg(FakeSinks(hub))
    at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    warning = WarningEvent("warning_raised", Cue.VOCAL_TONE, Level.POOR, "loss_one_way_pct", 7.9,
                           "words the leg wrote", "advice the leg wrote")
    asyncio.run(TabLeg._publish(leg, [warning_event("s1", "client", at, warning)]))  # type: ignore[arg-type]
    [event] = published_frames(hub, "s1")
    assert (event["type"], event["cue"], event["metric"], event["value"]) == ("warning_raised", "vocal_tone",
                                                                            "loss_one_way_pct", 7.9)
    assert event["message"].startswith("The client's voice is breaking up (8 %"), event
    assert event["advice"], event
    assert not leg.waiting and not leg.sinks.notes


def test_a_batch_the_hub_refuses_as_broken_is_not_sent_again_forever() -> None:
    hub = SessionHub(SECRET)
    leg = FakeLeg(FakeSinks(hub))
    broken = {"type": "warning_raised", "at": "yesterday", "cue": "vocal_tone", "level": "poor"}
    asyncio.run(TabLeg._publish(leg, [broken]))  # type: ignore[arg-type]
    assert not leg.waiting, "a 400 batch kept would block every later window"
    assert len(leg.sinks.notes) == 1 and "refused" in leg.sinks.notes[0]
