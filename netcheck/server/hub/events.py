"""What the session hub accepts from an agent, and the SSE frames it sends watchers. Pure.

Posted bodies come from anyone holding a token, so everything is bounded: the number of
events, each string, the `window` object's depth and serialised size. The hub, not the body,
decides `id`, `leg` and `session_id` (docs/session-hub.md).

Nothing a therapist reads is taken from a body: a warning brings its cue, metric and value, each
checked, and the hub writes its sentences (session/events.py, `with_warning_words`); a posted `message` or `advice` is
dropped. Every `at` is RFC 3339 with an offset, within a day of the server's clock, and kept in
UTC (netcheck/instants.py): it is part of the store's key and the report's order.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from netcheck.errors import NetcheckError
from netcheck.instants import MAX_CLOCK_SKEW_S, InstantError, checked_instant
from netcheck.parse import strict_json
from netcheck.session.events import WarningFieldError, check_warning_fields

EVENT_TYPES = ("summary", "warning_raised", "warning_cleared")
LEVELS = ("good", "fair", "poor", "unknown")
MAX_EVENTS_PER_POST = 20
MAX_STRING_CHARS = 500
MAX_WINDOW_JSON_BYTES = 4096
MAX_WINDOW_DEPTH = 8
"""The contract's window is 3 deep (window.cues.<cue>.level); 8 leaves room and stops nesting attacks."""


class EventError(NetcheckError):
    """A posted body the hub refuses (HTTP 400 `bad_body`): `field` names which event and key, the
    message says what is wrong, `problem` is a stable code for programs (`not_json`, `bad_shape`,
    `unknown_type`, `bad_type`, `unknown_level`, `unknown_cue`, `unknown_metric`, `out_of_range`,
    `too_large`, `too_deep`, and the instants' codes: `not_a_string`, `not_a_date`, `no_time_zone`,
    `too_far_future`, `too_far_past`)."""

    def __init__(self, field: str, message: str, problem: str = "bad_shape") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.problem = problem


def parse_events(body: bytes, max_events: int = MAX_EVENTS_PER_POST, now_s: float | None = None,
                 max_skew_s: float = MAX_CLOCK_SKEW_S) -> list[dict[str, Any]]:
    """`{"events": [...]}` → agent events with only the contract's keys, strings cut, types checked,
    `at` within `max_skew_s` of `now_s` (the server's clock) and in UTC; no `message` or `advice`."""
    try:
        document = strict_json(body)
    except ValueError as error:
        raise EventError("", f"body is not JSON: {error}"[:200], "not_json") from None
    events = document.get("events") if isinstance(document, dict) else None
    if not isinstance(events, list) or not 1 <= len(events) <= max_events:
        raise EventError("", f'body must be {{"events": [...]}} with 1..{max_events} events')
    clock_s = time.time() if now_s is None else now_s
    return [_event(raw, f"events[{index}]", clock_s, max_skew_s) for index, raw in enumerate(events)]


def stamp(event: dict[str, Any], event_id: int, session_id: str, leg: str) -> dict[str, Any]:
    """The event as watchers see it: the hub's id, session and leg first, then the agent's fields."""
    fields = {key: value for key, value in event.items() if key not in ("type", "id", "session_id", "leg")}
    return {"type": event["type"], "id": event_id, "session_id": session_id, "leg": leg, **fields}


def sse_frame(event: dict[str, Any]) -> bytes:
    """One SSE message. ASCII JSON: no raw newline can split `data:`, no lone surrogate can fail to encode."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {data}\n\n".encode("ascii")


KEEPALIVE_FRAME = b": keep-alive\n\n"


def _event(raw: Any, where: str, now_s: float, max_skew_s: float) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise EventError(where, "must be an object")
    event_type = raw.get("type")
    if event_type not in EVENT_TYPES:
        shown = _cut(event_type) if isinstance(event_type, str) else event_type
        raise EventError(f"{where}.type", f"unknown event type {shown!r} (known: {', '.join(EVENT_TYPES)})",
                         "unknown_type")
    event: dict[str, Any] = {"type": event_type}
    if event_type == "summary":
        event["window"] = _window(raw.get("window"), f"{where}.window")
    else:
        level = raw.get("level")
        if not isinstance(level, str) or level not in LEVELS:
            raise EventError(f"{where}.level", f"must be one of {', '.join(LEVELS)}", "unknown_level")
        event["level"] = level
        try:
            cue, event["metric"], event["value"] = check_warning_fields(raw.get("cue"), raw.get("metric"),
                                                                         raw.get("value"))
        except WarningFieldError as error:
            raise EventError(f"{where}.{error.key}", str(error), error.reason) from None
        event["cue"] = cue.value
    try:
        event["at"] = checked_instant(raw.get("at"), now_s, max_skew_s)
    except InstantError as error:
        raise EventError(f"{where}.at", str(error), error.reason) from None
    return event


def _window(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError(where, "must be an object", "bad_type")
    window: dict[str, Any] = _bounded(value, 1, where)
    if len(json.dumps(window, separators=(",", ":"), ensure_ascii=True)) > MAX_WINDOW_JSON_BYTES:
        raise EventError(where, f"more than {MAX_WINDOW_JSON_BYTES} bytes of JSON", "too_large")
    return window


def _bounded(value: Any, depth: int, where: str) -> Any:
    """A copy with every string (keys too) cut to MAX_STRING_CHARS; refuses deeper than MAX_WINDOW_DEPTH."""
    if isinstance(value, (dict, list)) and depth > MAX_WINDOW_DEPTH:
        raise EventError(where, f"nested more than {MAX_WINDOW_DEPTH} deep", "too_deep")
    if isinstance(value, dict):
        return {_cut(key): _bounded(item, depth + 1, where) for key, item in value.items()}
    if isinstance(value, list):
        return [_bounded(item, depth + 1, where) for item in value]
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, float) and not math.isfinite(value):  # 1e999 parses as inf
        raise EventError(where, "number out of range", "out_of_range")
    return value  # numbers, booleans, null


def _cut(text: str) -> str:
    return text[:MAX_STRING_CHARS]
