"""After a session: the warnings in time order and the minutes each cue spent at each level, per leg.

For the therapist's notes ("the client's voice broke up from 14:05 to 14:07; timing was fine
throughout"). Pure: session events in (as `netcheck watch` and the agent store them), a report out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from netcheck.model import Cue

LEVELS = ("good", "fair", "poor", "unknown")


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
    """leg → cue → level → minutes, from the windows' summaries."""
    windows: dict[str, int] = field(default_factory=dict)
    """leg → how many windows were summarised."""
    checks: list[PreSessionCheck] = field(default_factory=list)
    """The session's pre-session checks, oldest first."""


def build_report(session_id: str, events: Iterable[Mapping[str, Any]],
                 checks: Iterable[Mapping[str, Any]] = ()) -> SessionReport:
    """`events` as the session's legs stored them; `checks` the stored check reports attached to it."""
    ordered = sorted(events, key=lambda event: (str(event.get("at", "")), str(event.get("type", ""))))
    report = SessionReport(session_id)
    report.checks = sorted((_check(check) for check in checks if check.get("session_id") == session_id),
                           key=lambda check: check.started_at)
    open_spans: dict[tuple[str, str], Mapping[str, Any]] = {}
    for event in ordered:
        at, leg, kind = str(event["at"]), str(event["leg"]), event["type"]
        report.first_at = report.first_at or at
        report.last_at = at
        if kind == "summary":
            _count_window(report, leg, event.get("window") or {})
        elif kind == "warning_raised":
            open_spans.setdefault((leg, str(event["cue"])), event)
        elif kind == "warning_cleared" and (raised := open_spans.pop((leg, str(event["cue"])), None)):
            report.warnings.append(_span(raised, at))
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
        "checks": [{**check.__dict__, "device_findings": list(check.device_findings)} for check in report.checks],
    }


def _check(report: Mapping[str, Any]) -> PreSessionCheck:
    findings = tuple(str(finding.get("key")) for finding in report.get("devices") or ()
                     if isinstance(finding, Mapping) and finding.get("key"))
    return PreSessionCheck(str(report["check_id"]), str(report["started_at"]), str(report.get("client") or "cli"),
                           str(report["recommendation"]), str(report.get("summary", "")),
                           report.get("code"), findings)


def _count_window(report: SessionReport, leg: str, window: Mapping[str, Any]) -> None:
    window_s = float(window.get("window_s") or 0.0)
    report.windows[leg] = report.windows.get(leg, 0) + 1
    by_cue = report.minutes_by_level.setdefault(leg, {cue.value: dict.fromkeys(LEVELS, 0.0) for cue in Cue})
    for cue, verdict in (window.get("cues") or {}).items():
        level = verdict.get("level") if isinstance(verdict, Mapping) else None
        if cue in by_cue and level in LEVELS:
            by_cue[cue][level] = round(by_cue[cue][level] + window_s / 60.0, 4)


def _span(raised: Mapping[str, Any], cleared_at: str | None) -> WarningSpan:
    duration_s = None
    if cleared_at is not None:
        duration_s = (datetime.fromisoformat(cleared_at) - datetime.fromisoformat(str(raised["at"]))).total_seconds()
    return WarningSpan(str(raised["leg"]), str(raised["cue"]), str(raised["at"]), cleared_at,
                       str(raised.get("message", "")), str(raised.get("advice", "")), duration_s)
