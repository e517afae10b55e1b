"""The typed, frozen data that flows from probes to quality to sinks (DESIGN §1)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from netcheck import __version__


class Status(str, Enum):
    """How a probe ended. Failure is data: a failed probe still returns a result."""

    OK = "ok"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    BLOCKED = "blocked"
    ERROR = "error"


class Level(str, Enum):
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"
    UNKNOWN = "unknown"


class Recommendation(str, Enum):
    VIDEO = "video"
    AUDIO_ONLY = "audio_only"
    PHONE = "phone"
    UNKNOWN = "unknown"


class Cue(str, Enum):
    """The nonverbal cues a therapy session relies on, in the order they are shown."""

    FACIAL_EXPRESSION = "facial_expression"
    VOCAL_TONE = "vocal_tone"
    CONVERSATIONAL_TIMING = "conversational_timing"
    LIP_SYNC = "lip_sync"


class ProbeResult(Protocol):
    """Every probe result is a frozen dataclass with a `status`."""

    status: Status


def result_fields(result: ProbeResult) -> dict[str, Any]:
    """A probe result as a flat dict of JSON-ready values (the `--json` and storage form)."""
    fields = dataclasses.asdict(result)  # type: ignore[call-overload]
    return {key: (value.value if isinstance(value, Enum) else value) for key, value in fields.items()}


@dataclass(frozen=True)
class Measurement:
    """One probe run: which probe, when, how long, and what it returned."""

    probe: str
    started_at: str
    """ISO 8601 UTC."""
    duration_s: float
    result: ProbeResult


@dataclass(frozen=True)
class MetricVerdict:
    """One metric judged against its threshold."""

    metric: str
    label: str
    """What a person calls the metric, e.g. "delay (RTT p95)"."""
    cue: Cue
    level: Level
    value: float | None
    unit: str
    good: str
    """The threshold for `good`, written for people (e.g. "≤ 100 ms")."""
    fair: str
    source: str
    """The probe field the value came from, or why it is missing."""
    direction: str | None = None
    """"upstream" (you → clinic) or "downstream" (clinic → you) for a one-way figure that the worse
    direction decided; None for round-trip figures, or when the direction is not known."""


@dataclass(frozen=True)
class CueVerdict:
    cue: Cue
    level: Level
    metrics: tuple[MetricVerdict, ...]
    deciding: MetricVerdict | None
    """The worst measured metric; None when nothing was measured."""
    note: str
    """Why the level is what it is, in words; says so when the cue was not (fully) measured."""


@dataclass(frozen=True)
class Assessment:
    """What the measurements mean for a therapy session."""

    recommendation: Recommendation
    level: Level
    summary: str
    cues: dict[Cue, CueVerdict]
    advice: tuple[str, ...]
    video_setting: str | None = None
    """The highest video quality the measured bandwidth carries (720p, 540p, 360p, audio only)."""


def cues_to_dict(assessment: Assessment, detail: bool = True) -> dict[str, dict[str, Any]]:
    """Each cue's level and the figure that decided it; with `detail`, its note and every metric.

    The one serialised form of the cues: the check's JSON and store (detail), the agent's windows
    and the hub's summary events (without: they travel every few seconds) all use it.
    """
    cues: dict[str, dict[str, Any]] = {}
    for cue, verdict in assessment.cues.items():
        deciding = verdict.deciding
        entry: dict[str, Any] = {
            "level": verdict.level.value,
            "deciding_metric": deciding.metric if deciding else None,
            "value": deciding.value if deciding else None,
            "unit": deciding.unit if deciding else None,
            "direction": deciding.direction if deciding else None,
        }
        if detail:
            entry["note"] = verdict.note
            entry["metrics"] = {
                metric.metric: {"level": metric.level.value, "value": metric.value, "unit": metric.unit,
                                "good": metric.good, "fair": metric.fair, "label": metric.label,
                                "source": metric.source, "direction": metric.direction}
                for metric in verdict.metrics
            }
        cues[cue.value] = entry
    return cues


def assessment_to_dict(assessment: Assessment, detail: bool = True) -> dict[str, Any]:
    """An assessment as JSON-ready data: the verdict, the cues (see `cues_to_dict`), the advice."""
    return {
        "recommendation": assessment.recommendation.value,
        "level": assessment.level.value,
        "summary": assessment.summary,
        "cues": cues_to_dict(assessment, detail),
        "advice": list(assessment.advice),
        "video_setting": assessment.video_setting,
    }


@dataclass(frozen=True)
class CheckReport:
    """One pre-session check: what each probe measured and what it means (the CLI's, or a browser's
    as the server built it from the page's figures and its own records)."""

    check_id: str
    started_at: str
    """ISO 8601 UTC."""
    duration_s: float
    server: str
    measurements: dict[str, Measurement]
    assessment: Assessment


def report_to_dict(report: CheckReport) -> dict[str, Any]:
    """The one serialised form of a check: `netcheck check --json`, the browser check's answer (which
    adds its own keys) and what the local store keeps."""
    return {
        **assessment_to_dict(report.assessment),
        "measurements": {name: result_fields(m.result) for name, m in report.measurements.items()},
        "probe_runs": {name: {"started_at": m.started_at, "duration_s": m.duration_s}
                       for name, m in report.measurements.items()},
        "started_at": report.started_at,
        "duration_s": report.duration_s,
        "check_id": report.check_id,
        "server": report.server,
        "netcheck_version": __version__,
    }
