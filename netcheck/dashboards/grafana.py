"""Grafana dashboard building blocks as plain data (classic dashboard model, schemaVersion 42).

grafanalib is unmaintained and grafana-foundation-sdk has no InfluxDB query builder for Python,
so panels are dicts and queries are raw InfluxQL strings. Conventions every query follows, so that
tests can check them without knowing the panel:
- every selected column has an explicit alias, `AS "name"`: the columns the panel expects;
- time ranges and buckets use Grafana's `$timeFilter` and `$__interval`; template variables are
  regex-matched tags (`"site" =~ /^$site$/`, "All" = `.*`) or quoted field values (`'$session'`).
Thresholds and units come from the quality model (`netcheck.quality.thresholds`), never typed here.
"""

from __future__ import annotations

from typing import Any

from netcheck.quality.metrics import METRICS, Metric

SCHEMA_VERSION = 42
DATASOURCE_UID = "netcheck-influxdb"
DATASOURCE = {"type": "influxdb", "uid": DATASOURCE_UID}
GREEN, YELLOW, RED = "green", "yellow", "red"
UNITS = {"ms": "ms", "%": "percent", "fps": "suffix: fps", "px": "suffix: px", "Mbps": "Mbits",
         "/min": "suffix: /min", "": "none"}
"""The quality model's units as Grafana unit ids."""
THRESHOLD_BY_METRIC = {threshold.name: threshold for threshold in METRICS}
QUALITY_MODEL_NOTE = "Bands from netcheck's quality model ({metric})"
"""Panels with bands say which metric they come from, in words and for the tests that compare them."""


def target(ref_id: str, query: str, alias: str | None = None, table: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {"refId": ref_id, "datasource": DATASOURCE, "rawQuery": True, "query": query,
                             "resultFormat": "table" if table else "time_series"}
    if alias:
        found["alias"] = alias
    return found


def threshold_steps(threshold: Metric) -> list[dict[str, Any]]:
    """Grafana steps (each colour from its value on) for good / fair / poor."""
    if threshold.direction == "higher_is_better":
        return [{"color": RED, "value": None}, {"color": YELLOW, "value": threshold.fair},
                {"color": GREEN, "value": threshold.good}]
    if threshold.direction == "lower_is_better":
        return [{"color": GREEN, "value": None}, {"color": YELLOW, "value": threshold.good},
                {"color": RED, "value": threshold.fair}]
    (good_low, good_high), (fair_low, fair_high) = threshold.good, threshold.fair  # type: ignore[misc]
    return [{"color": RED, "value": None}, {"color": YELLOW, "value": fair_low}, {"color": GREEN, "value": good_low},
            {"color": YELLOW, "value": good_high}, {"color": RED, "value": fair_high}]


def field_defaults(metric: str | None = None, unit: str | None = None) -> dict[str, Any]:
    """Unit and threshold bands of a quality-model metric (or just a unit)."""
    defaults: dict[str, Any] = {"custom": {}}
    threshold = THRESHOLD_BY_METRIC.get(metric or "")
    if threshold is not None:
        defaults["unit"] = UNITS[threshold.unit]
        defaults["thresholds"] = {"mode": "absolute", "steps": threshold_steps(threshold)}
        defaults["custom"]["thresholdsStyle"] = {"mode": "line+area"}
    else:
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": GREEN, "value": None}]}
    if unit:
        defaults["unit"] = unit
    return defaults


def panel_description(text: str, metric: str | None) -> str:
    threshold = THRESHOLD_BY_METRIC.get(metric or "")
    if threshold is None:
        return text
    note = QUALITY_MODEL_NOTE.format(metric=metric)
    return (f"{text} {note}: good {threshold.describe(threshold.good, threshold.good_is_strict)}, "
            f"fair {threshold.describe(threshold.fair)}; {threshold.source}.")


def panel(kind: str, title: str, targets: list[dict[str, Any]], grid: tuple[int, int, int, int],
          description: str = "", metric: str | None = None, unit: str | None = None,
          options: dict[str, Any] | None = None, transformations: list[dict[str, Any]] | None = None,
          ) -> dict[str, Any]:
    """One panel; `grid` is (x, y, width, height) on Grafana's 24-column grid. Ids are set per dashboard."""
    x, y, width, height = grid
    built: dict[str, Any] = {
        "type": kind, "title": title, "description": panel_description(description, metric),
        "datasource": DATASOURCE, "gridPos": {"x": x, "y": y, "w": width, "h": height}, "targets": targets,
        "fieldConfig": {"defaults": field_defaults(metric, unit), "overrides": []}, "options": options or {},
    }
    if transformations:
        built["transformations"] = transformations
    return built


def tag_variable(name: str, label: str, tag: str, measurement: str = "netcheck_assessment",
                 where: str = "") -> dict[str, Any]:
    """A multi-select tag variable with "All" = `.*` (a regex that also matches a missing tag)."""
    query = f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{tag}"' + (f" WHERE {where}" if where else "")
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE, "query": query,
            "definition": query, "refresh": 2, "includeAll": True, "allValue": ".*", "multi": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1}


def field_variable(name: str, label: str, query: str) -> dict[str, Any]:
    """A single-select variable over the values of a field (session ids are fields, not tags)."""
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE, "query": query,
            "definition": query, "refresh": 2, "includeAll": False, "multi": False, "sort": 2}


def annotation(name: str, query: str, color: str, text_column: str, tags_column: str) -> dict[str, Any]:
    return {"name": name, "datasource": DATASOURCE, "enable": True, "iconColor": color, "query": query,
            "textColumn": text_column, "tagsColumn": tags_column}


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]],
              variables: list[dict[str, Any]], annotations: list[dict[str, Any]] | None = None,
              time_from: str = "now-24h") -> dict[str, Any]:
    """A whole dashboard; panel ids are numbered here, 1, 2, 3 … in order, so they are unique."""
    numbered = [{"id": index, **built} for index, built in enumerate(panels, start=1)]
    builtin = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
               "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
               "type": "dashboard"}
    return {
        "uid": uid, "title": title, "description": description, "tags": ["netcheck"], "editable": True,
        "schemaVersion": SCHEMA_VERSION, "version": 1, "timezone": "browser", "graphTooltip": 1,
        "time": {"from": time_from, "to": "now"}, "refresh": "1m", "fiscalYearStartMonth": 0,
        "links": [{"title": "netcheck dashboards", "type": "dashboards", "tags": ["netcheck"], "asDropdown": True}],
        "templating": {"list": variables}, "annotations": {"list": [builtin, *(annotations or [])]},
        "panels": numbered,
    }
