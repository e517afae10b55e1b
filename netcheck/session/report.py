"""After a session: the warnings in time order and the minutes each cue spent at each level, per leg.

For the therapist's notes ("the client's voice broke up from 14:05 to 14:07; timing was fine
throughout"). Pure: session events in (as `netcheck watch` and the agent store them), a report out.

It never fails on what a store holds: rows an older version kept unchecked (a time with no zone,
zones mixed, text that is no date, a number where a string belongs, JSON that does not parse)
are read leniently or skipped, and `skipped_rows` says how many. A warning's words are written
here from its cue, metric and value (quality/warnings.py), never the stored `message`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from netcheck.instants import has_zone, stored_instant
from netcheck.model import Cue
from netcheck.session.events import WarningFieldError, check_warning_fields, with_warning_words
from netcheck.tokens import LEGS

LEVELS = ("good", "fair", "poor", "unknown")
EVENT_TYPES = ("summary", "warning_raised", "warning_cleared")
MAX_WINDOW_S = 3600.0
"""A window longer than an hour is no agent's (they are 5–60 s): such a row is skipped."""


@dataclass(frozen=True)
class WarningSpan:
    leg: str
    cue: str
    raised_at: str
    cleared_at: str | None
    """None: still active when the session's events end."""
    message: str
    advice: str
    duration_s: float | None
    source: str = "probe"
    """"call" when measured on the session's own call (issue 25), else "probe": a warning of its own."""


@dataclass(frozen=True)
class PreSessionCheck:
    """A check attached to the session (a check link with the session's token): what the client saw before."""

    check_id: str
    started_at: str
    client: str
    """"browser" (the check page) or "cli" (`netcheck check`)."""
    recommendation: str
    summary: str
    code: str | None
    """The short code the client can read to the clinic (browser checks)."""
    device_findings: tuple[str, ...]
    """The devices that needed the client, as `camera.denied`, `microphone.silent`, …"""


@dataclass
class SessionReport:
    session_id: str
    first_at: str | None = None
    last_at: str | None = None
    warnings: list[WarningSpan] = field(default_factory=list)
    minutes_by_level: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """leg → cue → level → minutes, from the probe's windows (the agent's, the session tab's)."""
    minutes_by_level_on_call: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """The same from the call's own windows (`source: call`): kept apart, because both run at once and
    adding them would count each minute twice."""
    minutes_on_call: dict[str, float] = field(default_factory=dict)
    """leg → minutes measured on the call."""
    windows: dict[str, int] = field(default_factory=dict)
    """leg → how many windows were summarised."""
    checks: list[PreSessionCheck] = field(default_factory=list)
    """The session's pre-session checks, oldest first."""
    skipped_rows: int = 0
    """Stored events and checks that could not be read (no date, a wrong type, not JSON): left out."""


def build_report(session_id: str, events: Iterable[Any], checks: Iterable[Any] = ()) -> SessionReport:
    """`events` as the session's legs stored them; `checks` the stored check reports attached to it.
    Either may hold anything a store held (older versions', damaged): what cannot be read is counted."""
    report = SessionReport(session_id)
    readable: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for row in events:
        event = _readable_event(row)
        if event is None:
            report.skipped_rows += 1
        else:  # each event once (the store's key), the first source's copy (the node's store before the hub's)
            readable.setdefault((event["leg"], event["type"], event["at"], event.get("cue", ""), event["source"]),
                                event)
    session_checks = [check for check in checks if not isinstance(check, Mapping)
                      or check.get("session_id") == session_id]
    readable_checks = [check for check in map(_check, session_checks) if check is not None]
    report.skipped_rows += len(session_checks) - len(readable_checks)
    report.checks = sorted(readable_checks, key=lambda check: stored_instant(check.started_at) or "")
    ordered = sorted(readable.values(), key=lambda event: (event["at"], event["type"]))
    open_spans: dict[tuple[str, str], dict[str, Any]] = {}
    for event in ordered:
        leg, kind = event["leg"], event["type"]
        report.first_at = report.first_at or event["shown_at"]
        report.last_at = event["shown_at"]
        if kind == "summary":
            _count_window(report, leg, event["window"], event["source"])
        elif kind == "warning_raised":
            open_spans.setdefault((leg, event["cue"], event["source"]), event)
        elif kind == "warning_cleared" and (raised := open_spans.pop((leg, event["cue"], event["source"]), None)):
            report.warnings.append(_span(raised, event))
    report.warnings += [_span(raised, None) for raised in open_spans.values()]
    report.warnings.sort(key=lambda span: span.raised_at)
    return report


def report_to_dict(report: SessionReport) -> dict[str, Any]:
    return {
        "session_id": report.session_id,
        "first_at": report.first_at,
        "last_at": report.last_at,
        "windows": report.windows,
        "warnings": [span.__dict__ for span in report.warnings],
        "minutes_by_level": report.minutes_by_level,
        "minutes_by_level_on_call": report.minutes_by_level_on_call,
        "minutes_on_call": report.minutes_on_call,
        "checks": [{**check.__dict__, "device_findings": list(check.device_findings)} for check in report.checks],
        "skipped_rows": report.skipped_rows,
    }


def _readable_event(row: Any) -> dict[str, Any] | None:
    """A stored event as the report reads it, or None when it cannot be read.

    `at` is the UTC form (for order and keys); `shown_at` the stored text when it had a zone.
    """
    if not isinstance(row, Mapping) or row.get("type") not in EVENT_TYPES or row.get("leg") not in LEGS:
        return None
    at = stored_instant(row.get("at"))
    if at is None:
        return None
    shown_at = row["at"] if has_zone(row["at"]) else at  # as written when it had a zone, else in UTC
    event: dict[str, Any] = {"type": row["type"], "leg": row["leg"], "at": at, "shown_at": shown_at,
                             "source": "call" if row.get("source") == "call" else "probe"}
    if row["type"] == "summary":
        window = row.get("window")
        window_s = (window.get("window_s") or 0.0) if isinstance(window, Mapping) else None
        if isinstance(window_s, bool) or not isinstance(window_s, (int, float)) \
                or not (math.isfinite(window_s) and 0 <= window_s <= MAX_WINDOW_S):
            return None
        return {**event, "window": window}
    try:
        cue, metric, value = check_warning_fields(row.get("cue"), row.get("metric"), row.get("value"))
    except WarningFieldError:
        return None
    return with_warning_words({**event, "cue": cue.value, "metric": metric, "value": value}, row["leg"])


def _check(report: Any) -> PreSessionCheck | None:
    """A stored check as the report shows it; None when it cannot be read."""
    if not isinstance(report, Mapping):
        return None
    started_at = report.get("started_at") if has_zone(report.get("started_at")) \
        else stored_instant(report.get("started_at"))
    texts = [report.get(key) for key in ("check_id", "recommendation")] + [report.get("summary", "")]
    code, devices = report.get("code"), report.get("devices") or ()
    if started_at is None or not all(isinstance(text, str) for text in texts) \
            or not (code is None or isinstance(code, str)) or not isinstance(devices, (list, tuple)):
        return None
    findings = tuple(str(finding.get("key")) for finding in devices
                     if isinstance(finding, Mapping) and isinstance(finding.get("key"), str) and finding.get("key"))
    client = "browser" if report.get("client") == "browser" else "cli"
    return PreSessionCheck(texts[0], started_at, client, texts[1], texts[2], code, findings)


def _count_window(report: SessionReport, leg: str, window: Mapping[str, Any], source: str) -> None:
    window_s = float(window.get("window_s") or 0.0)  # checked by _readable_event
    report.windows[leg] = report.windows.get(leg, 0) + 1
    minutes = report.minutes_by_level
    if source == "call":
        report.minutes_on_call[leg] = round(report.minutes_on_call.get(leg, 0.0) + window_s / 60.0, 4)
        minutes = report.minutes_by_level_on_call
    by_cue = minutes.setdefault(leg, {cue.value: dict.fromkeys(LEVELS, 0.0) for cue in Cue})
    cues = window.get("cues")
    for cue, verdict in (cues.items() if isinstance(cues, Mapping) else ()):
        level = verdict.get("level") if isinstance(verdict, Mapping) else None
        if cue in by_cue and level in LEVELS:
            by_cue[cue][level] = round(by_cue[cue][level] + window_s / 60.0, 4)


def _span(raised: Mapping[str, Any], cleared: Mapping[str, Any] | None) -> WarningSpan:
    """Readable events (`_readable_event`): the raise and its clearing (None: still active)."""
    duration_s = None
    if cleared is not None:  # both in the UTC form: always subtractable
        duration_s = (datetime.fromisoformat(cleared["at"]) - datetime.fromisoformat(raised["at"])).total_seconds()
    return WarningSpan(raised["leg"], raised["cue"], raised["shown_at"], cleared["shown_at"] if cleared else None,
                       raised["message"], raised["advice"], duration_s, raised["source"])
