"""What the session hub accepts from an agent, and the SSE frames it sends watchers. Pure.

Posted bodies come from anyone holding a token, so everything is bounded: the number of
events, each string, the `window` object's depth and serialised size. The hub, not the body,
decides `id`, `leg` and `session_id` (docs/session-hub.md).
"""

from __future__ import annotations

import json
import math
from typing import Any

from netcheck.errors import NetcheckError
from netcheck.parse import strict_json

EVENT_TYPES = ("summary", "warning_raised", "warning_cleared")
LEVELS = ("good", "fair", "poor", "unknown")
MAX_EVENTS_PER_POST = 20
MAX_STRING_CHARS = 500
MAX_WINDOW_JSON_BYTES = 4096
MAX_WINDOW_DEPTH = 8
"""The contract's window is 3 deep (window.cues.<cue>.level); 8 leaves room and stops nesting attacks."""


class EventError(NetcheckError):
    """A posted body the hub refuses (HTTP 400); the message says which event and key."""


def parse_events(body: bytes, max_events: int = MAX_EVENTS_PER_POST) -> list[dict[str, Any]]:
    """`{"events": [...]}` → agent events with only the contract's keys, strings cut, types checked."""
    try:
        document = strict_json(body)
    except ValueError as error:
        raise EventError(f"body is not JSON: {error}"[:200]) from None
    events = document.get("events") if isinstance(document, dict) else None
    if not isinstance(events, list) or not 1 <= len(events) <= max_events:
        raise EventError(f'body must be {{"events": [...]}} with 1..{max_events} events')
    return [_event(raw, f"events[{index}]") for index, raw in enumerate(events)]


def stamp(event: dict[str, Any], event_id: int, session_id: str, leg: str) -> dict[str, Any]:
    """The event as watchers see it: the hub's id, session and leg first, then the agent's fields."""
    fields = {key: value for key, value in event.items() if key not in ("type", "id", "session_id", "leg")}
    return {"type": event["type"], "id": event_id, "session_id": session_id, "leg": leg, **fields}


def sse_frame(event: dict[str, Any]) -> bytes:
    """One SSE message. ASCII JSON: no raw newline can split `data:`, no lone surrogate can fail to encode."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {data}\n\n".encode("ascii")


KEEPALIVE_FRAME = b": keep-alive\n\n"


def _event(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise EventError(f"{where}: must be an object")
    event_type = raw.get("type")
    if event_type not in EVENT_TYPES:
        shown = _cut(event_type) if isinstance(event_type, str) else event_type
        raise EventError(f"{where}.type: unknown event type {shown!r} (known: {', '.join(EVENT_TYPES)})")
    event: dict[str, Any] = {"type": event_type, "at": _string(raw, "at", where)}
    if event_type == "summary":
        event["window"] = _window(raw.get("window"), f"{where}.window")
        return event
    event["cue"] = _string(raw, "cue", where)
    level = raw.get("level")
    if level not in LEVELS:
        raise EventError(f"{where}.level: must be one of {', '.join(LEVELS)}")
    event["level"] = level
    event["metric"] = _string(raw, "metric", where, default=None)
    event["value"] = _number(raw.get("value"), f"{where}.value")
    event["message"] = _string(raw, "message", where, default="")
    event["advice"] = _string(raw, "advice", where, default="")
    return event


_REQUIRED = object()


def _string(raw: dict[str, Any], key: str, where: str, default: Any = _REQUIRED) -> Any:
    value = raw.get(key)
    if value is None and default is not _REQUIRED:
        return default
    if not isinstance(value, str):
        raise EventError(f"{where}.{key}: must be a string")
    return _cut(value)


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventError(f"{where}: must be a number or null")
    try:
        number = float(value)
    except OverflowError:
        raise EventError(f"{where}: number out of range") from None
    if not math.isfinite(number):
        raise EventError(f"{where}: number out of range")
    return number


def _window(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError(f"{where}: must be an object")
    window: dict[str, Any] = _bounded(value, 1, where)
    if len(json.dumps(window, separators=(",", ":"), ensure_ascii=True)) > MAX_WINDOW_JSON_BYTES:
        raise EventError(f"{where}: more than {MAX_WINDOW_JSON_BYTES} bytes of JSON")
    return window


def _bounded(value: Any, depth: int, where: str) -> Any:
    """A copy with every string (keys too) cut to MAX_STRING_CHARS; refuses deeper than MAX_WINDOW_DEPTH."""
    if isinstance(value, (dict, list)) and depth > MAX_WINDOW_DEPTH:
        raise EventError(f"{where}: nested more than {MAX_WINDOW_DEPTH} deep")
    if isinstance(value, dict):
        return {_cut(key): _bounded(item, depth + 1, where) for key, item in value.items()}
    if isinstance(value, list):
        return [_bounded(item, depth + 1, where) for item in value]
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, float) and not math.isfinite(value):  # 1e999 parses as inf
        raise EventError(f"{where}: number out of range")
    return value  # numbers, booleans, null


def _cut(text: str) -> str:
    return text[:MAX_STRING_CHARS]
