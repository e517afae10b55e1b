"""Follow a session's events from the hub (SSE), and fold them into what the watch view shows.

The hub and every agent behind it are other people's machines: lines and events are bounded,
strings are cleaned of control characters, anything not in the contract (docs/session-hub.md)
is skipped, and a silent or broken stream is reconnected with `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from netcheck.errors import NetcheckError, UsageError
from netcheck.parse import strict_json
from netcheck.tokens import LEGS

EVENT_TYPES = frozenset({"summary", "warning_raised", "warning_cleared"})
LEVELS = ("good", "fair", "poor", "unknown")
MAX_LINE_BYTES = 64 * 1024
MAX_EVENT_BYTES = 64 * 1024
READ_TIMEOUT_S = 45.0
"""The hub sends a keep-alive every 15 s: three missed ones mean the stream is dead."""
CONNECT_TIMEOUT_S = 10.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
HISTORY_WINDOWS = 60
CALL_LEADS_S = 30.0
"""A call silent for this long (its module posts every 5 s) no longer leads its leg: the probe does again."""
MAX_LOGGED_WARNINGS = 200
MAX_DEPTH = 6
SESSION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
TOKEN = re.compile(r"[A-Za-z0-9._-]{1,1024}")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
Event = dict[str, Any]


class TokenRefused(UsageError):
    """The hub answered 401 or 403: retrying with the same token cannot help."""


class HubUnavailable(NetcheckError):
    """The server has no session hub (404) or refuses the request as malformed (other 4xx)."""


class StreamBroken(Exception):
    """The stream broke the SSE framing or its bounds; the follower reconnects."""


@dataclass(frozen=True)
class ConnectionStatus:
    """What the status line says about the stream."""

    state: Literal["connecting", "connected", "reconnecting"]
    detail: str = ""
    retry_in_s: float | None = None


@dataclass(frozen=True)
class SseMessage:
    event: str
    data: str


class LineSplitter:
    """Bytes in, complete lines out (LF or CRLF); a line longer than the bound breaks the stream."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial = b""

    def feed(self, chunk: bytes) -> Iterator[str]:
        """The lines completed by `chunk`, in order; the lines before an overlong one still come out."""
        parts = (self._partial + chunk).split(b"\n")
        self._partial = parts.pop()
        for part in parts:
            line = part.removesuffix(b"\r")
            if len(line) > self.max_line_bytes:
                break
            yield line.decode("utf-8", errors="replace")
        else:
            if len(self._partial) <= self.max_line_bytes + 1:  # + 1: its CR may still come
                return
        raise StreamBroken(f"a line longer than {self.max_line_bytes // 1024} KiB")


class SseParser:
    """The SSE field rules of the HTML standard; `last_id` survives reconnections, as it must."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self.last_id: str | None = None
        self.start_stream()

    def start_stream(self) -> None:
        """Forget a message half-received on a previous connection."""
        self._event = ""
        self._data: list[str] = []
        self._data_bytes = 0
        self._pending_id: str | None = None

    def feed_line(self, line: str) -> SseMessage | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the hub's keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data_bytes += len(value) + 1
            if self._data_bytes > self.max_event_bytes:
                raise StreamBroken(f"an event larger than {self.max_event_bytes // 1024} KiB")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._pending_id = value
        return None  # `retry` and unknown fields: ignored, the backoff is ours

    def _dispatch(self) -> SseMessage | None:
        if self._pending_id is not None:
            self.last_id = self._pending_id or None
        message = SseMessage(self._event, "\n".join(self._data)) if self._data else None
        self.start_stream()
        return message


def parse_event(message: SseMessage, session_id: str) -> Event | None:
    """The event of a message if it keeps to the contract, else None (skipped, never fatal)."""
    try:
        event = strict_json(message.data)  # NaN, Infinity and 1e999 would print as invalid JSON under --json
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("type") not in EVENT_TYPES:
        return None
    if message.event not in ("", "message", event["type"]) or event.get("leg") not in LEGS:
        return None
    if event.setdefault("session_id", session_id) != session_id or not isinstance(event.get("at"), str):
        return None
    if event["type"] == "summary":
        if not isinstance(event.get("window"), dict):
            return None
    else:
        event.setdefault("advice", "")
        if not all(isinstance(event.get(key), str) for key in ("cue", "level", "message", "advice")):
            return None
    return _clean(event, 0)


def _clean(value: Any, depth: int) -> Any:
    """Control characters out of every string (no terminal escapes from a peer); bounded nesting."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, str):
        return CONTROL_CHARS.sub("", value)[:500]
    if isinstance(value, dict):
        return {CONTROL_CHARS.sub("", str(key)): _clean(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item, depth + 1) for item in value]
    return value


def next_backoff_s(previous_s: float | None) -> float:
    """0.5 s, then doubling to 10 s."""
    return BACKOFF_FIRST_S if previous_s is None else min(BACKOFF_MAX_S, previous_s * 2)


def events_url(server_url: str, session_id: str) -> str:
    return f"{server_url.rstrip('/')}/v1/sessions/{session_id}/events"


def check_watch_args(session_id: str, token: str) -> None:
    if not SESSION_ID.fullmatch(session_id):
        raise UsageError("--session must be 1..128 characters from A-Z a-z 0-9 . _ -")
    if not TOKEN.fullmatch(token):
        raise UsageError("the token is malformed: copy it whole, as `netcheck token create` printed it")


async def follow_events(
    server_url: str,
    session_id: str,
    token: str,
    on_event: Callable[[Event], None],
    stop: asyncio.Event,
    on_status: Callable[[ConnectionStatus], None] = lambda status: None,
    read_timeout_s: float = READ_TIMEOUT_S,
) -> None:
    """Deliver the session's events until `stop` is set; reconnect on its own after any drop.

    Raises TokenRefused (401, 403) and HubUnavailable (404, other 4xx): retrying cannot help.
    """
    check_watch_args(session_id, token)
    follower = asyncio.ensure_future(_follow(events_url(server_url, session_id), session_id, token, on_event,
                                             on_status, read_timeout_s))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({follower, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (follower, stopper):
            task.cancel()
        await asyncio.gather(follower, stopper, return_exceptions=True)
    if not follower.cancelled():
        follower.result()


async def _follow(url: str, session_id: str, token: str, on_event: Callable[[Event], None],
                  on_status: Callable[[ConnectionStatus], None], read_timeout_s: float) -> None:
    parser = SseParser()
    backoff_s: float | None = None
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_read=read_timeout_s)
    reason = ""
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while True:
            on_status(ConnectionStatus("reconnecting", reason) if reason else ConnectionStatus("connecting"))
            headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream", "Cache-Control": "no-cache"}
            # "0" on the first connection too: the hub then replays what it holds, so a therapist who
            # starts watching mid-session sees the warnings already raised, not only later ones
            headers["Last-Event-ID"] = parser.last_id or "0"
            try:
                async with http.get(url, headers=headers) as response:
                    await _check_response(response)
                    on_status(ConnectionStatus("connected"))
                    backoff_s = None
                    parser.start_stream()
                    splitter = LineSplitter()
                    async for chunk in response.content.iter_any():
                        for line in splitter.feed(chunk):
                            message = parser.feed_line(line)
                            event = parse_event(message, session_id) if message else None
                            if event is not None:
                                on_event(event)
                reason = "the server closed the stream"
            except StreamBroken as error:
                reason = str(error)
            except aiohttp.ServerTimeoutError:
                reason = f"no data for {read_timeout_s:g} s"
            except aiohttp.ClientConnectorError:
                reason = "cannot connect to the server"
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:  # not OSError: on_event's own fail
                reason = f"connection lost ({type(error).__name__})"
            backoff_s = next_backoff_s(backoff_s)
            on_status(ConnectionStatus("reconnecting", reason, backoff_s))
            await asyncio.sleep(backoff_s)


async def _check_response(response: aiohttp.ClientResponse) -> None:
    if response.status == 401:
        reason = await _error_reason(response, code=True)
        reason = reason.removeprefix("token refused: ")  # a hub older than the `reason` field says it in its sentence
        raise TokenRefused("token refused: expired or not for this session" + (f" (hub: {reason})" if reason else ""))
    if response.status == 403:
        raise TokenRefused("a client token cannot watch; ask for a therapist token")
    if response.status == 404:
        raise HubUnavailable(f"no session hub at {response.url.origin()} (404): is NETCHECK_SECRET set on the server?")
    if 400 <= response.status < 500 and response.status not in (408, 429):
        reason = await _error_reason(response)
        raise HubUnavailable(f"the hub refused the request (HTTP {response.status})" + (f": {reason}" if reason else ""))
    if response.status != 200:
        raise StreamBroken(f"the server answered HTTP {response.status}")
    if response.content_type != "text/event-stream":
        raise StreamBroken(f"the server answered {response.content_type or 'no content type'}, not an event stream")


async def _error_reason(response: aiohttp.ClientResponse, code: bool = False) -> str:
    """The hub's `{"error": ...}` (with `code`: its `reason` code when it sends one, docs/http-api.md), short
    and clean, or "" (a hostile server may send anything)."""
    try:
        body = strict_json(await response.content.read(4096))
    except (ValueError, aiohttp.ClientError, asyncio.TimeoutError):
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if code and isinstance(body, dict) and isinstance(body.get("reason"), str):
        error = body["reason"]
    return CONTROL_CHARS.sub("", error)[:100] if isinstance(error, str) else ""


@dataclass(frozen=True)
class WindowPoint:
    """One summary, reduced to what the history sparkline needs."""

    level: str
    cue_levels: Mapping[str, str]
    rtt_p95_ms: float | None
    loss_pct: float | None


@dataclass
class WatchState:
    """Everything the view shows, folded from events in arrival order. Pure, apart from the clock.

    A leg may be measured twice: by the probe (the path to the clinic) and on the call itself (events the
    server marked `"source": "call"`, issue 25). While the call's windows come, the call leads the leg;
    the probe's latest window stays beside it in `probe_summaries`."""

    clock: Callable[[], float] = time.monotonic
    summaries: dict[str, Event] = field(default_factory=dict)
    """The latest summary per leg of the source that leads it (the call's while it posts, else the probe's)."""
    probe_summaries: dict[str, Event] = field(default_factory=dict)
    """The latest probe summary per leg: "the path to the clinic" beside a call that leads."""
    call_received_s: dict[str, float] = field(default_factory=dict)
    summary_received_s: dict[str, float] = field(default_factory=dict)
    """When (clock) each leg's latest summary arrived: a leg whose agent went quiet shows its age."""
    history: dict[str, deque[WindowPoint]] = field(
        default_factory=lambda: {leg: deque(maxlen=HISTORY_WINDOWS) for leg in LEGS})
    active: dict[tuple[str, ...], Event] = field(default_factory=dict)
    """Raised and not yet cleared warnings, by (leg, cue) for the probe's and (leg, cue, "call") for the
    call's: two warnings on one cue, each cleared on its own."""
    warnings: deque[Event] = field(default_factory=lambda: deque(maxlen=MAX_LOGGED_WARNINGS))
    """Raised and cleared events, oldest first."""
    events: int = 0
    last_event_s: float | None = None

    def apply(self, event: Mapping[str, Any]) -> None:
        leg, kind = event["leg"], event["type"]
        self.events += 1
        self.last_event_s = self.clock()
        if kind == "summary":
            if is_call(event):
                self.call_received_s[leg] = self.last_event_s
            else:
                self.probe_summaries[leg] = dict(event)
                if self.call_leads(leg):
                    return  # beside the call, not in its history
            self.summaries[leg] = dict(event)
            self.summary_received_s[leg] = self.last_event_s
            self.history[leg].append(window_point(event["window"]))
            return
        self.warnings.append(dict(event))
        key = (leg, event["cue"], "call") if is_call(event) else (leg, event["cue"])
        if kind == "warning_raised":
            self.active[key] = dict(event)
        else:
            self.active.pop(key, None)

    def call_leads(self, leg: str) -> bool:
        """Whether the call's own windows lead the leg now (one came within CALL_LEADS_S)."""
        received_s = self.call_received_s.get(leg)
        return received_s is not None and self.clock() - received_s <= CALL_LEADS_S

    def last_event_age_s(self) -> float | None:
        return None if self.last_event_s is None else max(0.0, self.clock() - self.last_event_s)

    def summary_age_s(self, leg: str) -> float | None:
        received_s = self.summary_received_s.get(leg)
        return None if received_s is None else max(0.0, self.clock() - received_s)


def is_call(event: Mapping[str, Any]) -> bool:
    """Measured on the call itself: the server, never the measuring browser, set this (issue 25)."""
    return event.get("source") == "call"


def window_point(window: Mapping[str, Any]) -> WindowPoint:
    cues = window.get("cues") if isinstance(window.get("cues"), dict) else {}
    cue_levels = {str(cue): _level(verdict.get("level") if isinstance(verdict, dict) else None)
                  for cue, verdict in cues.items()}
    level = _level(window.get("level"))
    if level == "unknown" and cue_levels:
        level = max(cue_levels.values(), key=lambda name: ("unknown", "good", "fair", "poor").index(name))
    figures = window.get("figures") if isinstance(window.get("figures"), dict) else {}
    return WindowPoint(level, cue_levels, _figure(figures.get("rtt_p95_ms")), _figure(figures.get("loss_one_way_pct")))


def _level(value: Any) -> str:
    return value if value in LEVELS else "unknown"


def _figure(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
