"""The metric schema (DESIGN §6): which measurement, tags and fields each result becomes.

A `Point` is what the outbox keeps and the InfluxDB writer sends. This module decides names and
types; it knows nothing of line protocol (store/influx.py) or of SQLite (store/outbox.py).

Rules, as Telegraf keeps them: tags are few and low-cardinality (`role`, `site`, `agent`,
`server`, `kind`, `status`, `client`); every field has one type forever, and units are in field names;
`session_id` and `check_id` are fields, never tags; missing values are left out, never zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Union

from netcheck.model import Assessment, Level, Measurement, ProbeResult, Recommendation

FieldValue = Union[float, int, bool, str]

MEASUREMENT_BY_PROBE = {
    "udp": "netcheck_udp",
    "av": "netcheck_av",
    "throughput": "netcheck_throughput",
    "reach": "netcheck_reach",
    "system": "netcheck_system",
    "call": "netcheck_call",
}
ASSESSMENT_MEASUREMENT = "netcheck_assessment"
AGENT_MEASUREMENT = "netcheck_agent"
NODE_MEASUREMENT = "netcheck_server"
WARNING_MEASUREMENT = "netcheck_warning"
MAX_STRING_FIELD_CHARS = 256
"""Error texts can be long; a point stays small."""

LEVEL_CODES = {Level.GOOD: 0, Level.FAIR: 1, Level.POOR: 2}
"""Numeric levels for Grafana (higher is worse); `unknown` has no code and is left out."""
RECOMMENDATION_CODES = {Recommendation.VIDEO: 0, Recommendation.AUDIO_ONLY: 1, Recommendation.PHONE: 2}


@dataclass(frozen=True)
class Point:
    """One InfluxDB point: measurement, tags, fields, and a timestamp in milliseconds."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ms: int


@dataclass(frozen=True)
class Origin:
    """Who measured: the tags every point carries, and the ids kept as fields."""

    agent: str
    """A random id of this installation (no personal data)."""
    kind: str
    """`check` (pre-session check) or `session` (agent window)."""
    role: str | None = None
    site: str | None = None
    server: str | None = None
    """The server's host[:port], not its full URL."""
    session_id: str | None = None
    check_id: str | None = None
    client: str | None = None
    """`cli` or `browser` for a check (DESIGN §10: one schema, told apart by this tag); None for agent windows."""
    source: str | None = None
    """`call` for the session's own call (issue 25); None for a probe's figures, whose series stay as they were."""

    def tags(self) -> dict[str, str]:
        tags = {"agent": self.agent, "kind": self.kind, "role": self.role, "site": self.site,
                "server": self.server, "client": self.client, "source": self.source}
        return {key: value for key, value in tags.items() if value}

    def id_fields(self) -> dict[str, FieldValue]:
        ids = {"session_id": self.session_id, "check_id": self.check_id}
        return {key: value for key, value in ids.items() if value}


def report_points(measurements: Mapping[str, Measurement], assessment: Assessment, origin: Origin,
                  time_ms: int) -> list[Point]:
    """A check's or a window's points: one per probe run, and the assessment, all at its start time."""
    points = [result_point(name, measurement.result, origin, time_ms) for name, measurement in measurements.items()]
    return [*points, assessment_point(assessment, origin, time_ms)]


def result_point(probe: str, result: ProbeResult, origin: Origin, time_ms: int) -> Point:
    """A probe result as one point: `status` becomes a tag, nested results (A/V directions) get a prefix."""
    fields = flatten_result(result)
    status = fields.pop("status", None)
    tags = origin.tags()
    if isinstance(status, str):
        tags["status"] = status
    return Point(MEASUREMENT_BY_PROBE[probe], tags, {**fields, **origin.id_fields()}, time_ms)


def assessment_point(assessment: Assessment, origin: Origin, time_ms: int) -> Point:
    """The verdict: recommendation and per-cue levels as strings and as numeric codes."""
    fields: dict[str, FieldValue] = {
        "recommendation": assessment.recommendation.value,
        "level": assessment.level.value,
    }
    if assessment.recommendation in RECOMMENDATION_CODES:
        fields["recommendation_code"] = RECOMMENDATION_CODES[assessment.recommendation]
    if assessment.level in LEVEL_CODES:
        fields["level_code"] = LEVEL_CODES[assessment.level]
        fields["poor"] = int(assessment.level == Level.POOR)
    if assessment.video_setting:
        fields["video_setting"] = assessment.video_setting
    for cue, verdict in assessment.cues.items():
        fields[f"{cue.value}_level"] = verdict.level.value
        if verdict.level in LEVEL_CODES:
            fields[f"{cue.value}_level_code"] = LEVEL_CODES[verdict.level]
            fields[f"{cue.value}_poor"] = int(verdict.level == Level.POOR)
        if verdict.deciding is not None:
            fields[f"{cue.value}_deciding_metric"] = verdict.deciding.metric
    return Point(ASSESSMENT_MEASUREMENT, origin.tags(), {**fields, **origin.id_fields()}, time_ms)


def warning_point(kind: str, cue: str, level: Level, metric: str | None, value: float | None, message: str,
                  advice: str, origin: Origin, time_ms: int) -> Point:
    """An in-call warning raised (`active` 1) or cleared (0); `cue` is a tag (four values) for annotations."""
    fields: dict[str, FieldValue] = {"active": int(kind == "warning_raised"), "event": kind, "level": level.value,
                                     "message": message[:MAX_STRING_FIELD_CHARS]}
    if level in LEVEL_CODES:
        fields["level_code"] = LEVEL_CODES[level]
    if metric:
        fields["metric"] = metric
    if value is not None:
        fields["value"] = float(value)
    if advice:
        fields["advice"] = advice[:MAX_STRING_FIELD_CHARS]
    return Point(WARNING_MEASUREMENT, {**origin.tags(), "cue": cue}, {**fields, **origin.id_fields()}, time_ms)


def flatten_result(result: Any, prefix: str = "") -> dict[str, FieldValue]:
    """A result dataclass as flat typed fields.

    A field's type comes from its annotation, not from the value at hand, so that `fps` is a
    float even when it happens to be 30: InfluxDB rejects a field that changes type.
    """
    fields: dict[str, FieldValue] = {}
    for spec in dataclasses.fields(result):
        value = getattr(result, spec.name)
        name = f"{prefix}{spec.name}"
        if value is None or value == ():
            continue
        if isinstance(value, tuple):  # names (AvResult.not_measured_here): one comma-separated string field
            value = ",".join(str(item) for item in value)
        if dataclasses.is_dataclass(value):
            fields.update(flatten_result(value, f"{_nested_prefix(spec.name)}_"))
            continue
        fields[name] = _typed(value, str(spec.type), name)
    return fields


def _nested_prefix(name: str) -> str:
    """`upstream` → `up`, `downstream` → `down`: shorter names for the A/V directions."""
    return {"upstream": "up", "downstream": "down"}.get(name, name)


def _typed(value: Any, annotation: str, name: str) -> FieldValue:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if "float" in annotation:
            return float(value)
        if "int" in annotation:
            return int(value)
        raise TypeError(f"field {name}: annotate it as int or float, not {annotation}")
    if isinstance(value, str):
        return value[:MAX_STRING_FIELD_CHARS]
    raise TypeError(f"field {name}: {type(value).__name__} cannot be stored")
