"""Grafana provisioning: the InfluxQL datasource, the dashboard provider, and alert rules.

Written as YAML by a small emitter (block style, every string JSON-quoted, which YAML reads as
the same string), so netcheck needs no YAML library. Alert queries follow the dashboards'
conventions (grafana.py): raw InfluxQL with `$timeFilter`, every column aliased.
"""

from __future__ import annotations

import json
from typing import Any

from netcheck.dashboards.grafana import DATASOURCE_UID

FOLDER = "netcheck"

DATASOURCE_NOTES = """\
# netcheck's InfluxQL datasource. Its uid is fixed: every dashboard and alert rule refers to it.
#
# InfluxDB 1.x: as below (database, user, password).
# InfluxDB 2.x: map the bucket to a database and retention policy once (DBRP), then use InfluxQL:
#   influx v1 dbrp create --db netcheck --rp autogen --bucket-id <bucket id> --default
#   influx v1 auth create --read-bucket <bucket id> --username grafana
#   and set url to the 2.x server, database to "netcheck", user/password to that v1 auth.
# InfluxDB 3.x (Core/Enterprise/Cloud Serverless): InfluxQL is native; set database to the
#   database (bucket) name and put a token in secureJsonData.httpHeaderValue1 as
#   "Token <token>" with httpHeaderName1: Authorization (or the password field, per version).
"""


def datasource(url: str = "http://localhost:8086", database: str = "netcheck", user: str = "grafana") -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [{
            "name": "netcheck InfluxDB",
            "uid": DATASOURCE_UID,
            "type": "influxdb",
            "access": "proxy",
            "url": url,
            "user": user,
            "jsonData": {"dbName": database, "httpMode": "POST", "version": "InfluxQL", "timeInterval": "5s"},
            "secureJsonData": {"password": "$NETCHECK_GRAFANA_INFLUX_PASSWORD"},
            "editable": False,
        }],
    }


def dashboard_provider(path: str = "/var/lib/grafana/dashboards/netcheck") -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [{
            "name": "netcheck", "orgId": 1, "folder": FOLDER, "type": "file", "disableDeletion": False,
            "allowUiUpdates": False, "updateIntervalSeconds": 60, "options": {"path": path},
        }],
    }


def _rule(uid: str, title: str, query: str, range_s: int, reducer: str, comparison: str, bound: float,
          for_: str, summary: str, no_data: str = "OK") -> dict[str, Any]:
    """Query A (InfluxQL) → B reduce → C threshold; fires when C holds for `for_`."""
    return {
        "uid": uid,
        "title": title,
        "condition": "C",
        "data": [
            {"refId": "A", "relativeTimeRange": {"from": range_s, "to": 0}, "datasourceUid": DATASOURCE_UID,
             "model": {"refId": "A", "rawQuery": True, "query": query, "resultFormat": "time_series"}},
            {"refId": "B", "datasourceUid": "__expr__",
             "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": reducer}},
            {"refId": "C", "datasourceUid": "__expr__",
             "model": {"refId": "C", "type": "threshold", "expression": "B",
                       "conditions": [{"evaluator": {"type": comparison, "params": [bound]}}]}},
        ],
        "noDataState": no_data,
        "execErrState": "Error",
        "for": for_,
        "annotations": {"summary": summary},
        "labels": {"service": "netcheck"},
    }


def alert_rules() -> dict[str, Any]:
    rules = [
        _rule("netcheck-site-degradation", "Site-wide degradation",
              'SELECT mean("poor") * 100 AS "poor_pct" FROM "netcheck_assessment" WHERE $timeFilter '
              "AND \"kind\" = 'session' GROUP BY \"site\"", 900, "last", "gt", 30.0, "10m",
              "More than 30 % of session windows at site {{ $labels.site }} were poor in the last 15 minutes: "
              "check the site's network (uplink, Wi-Fi, a backup running)."),
        _rule("netcheck-agents-silent", "Agents silent",
              'SELECT count("windows") AS "windows" FROM "netcheck_agent" WHERE $timeFilter', 600, "sum", "lt", 1.0,
              "10m", "No agent has delivered a window for 10 minutes. Expected outside session hours: give this "
              "rule a mute timing for them. During sessions it means agents stopped or cannot reach InfluxDB.",
              no_data="Alerting"),
        _rule("netcheck-outbox-growing", "Outbox growing",
              'SELECT max("outbox_pending") AS "outbox_pending" FROM "netcheck_agent" WHERE $timeFilter '
              'GROUP BY "agent"', 1800, "last", "gt", 1000.0, "15m",
              "Agent {{ $labels.agent }} holds more than 1,000 undelivered points: InfluxDB refuses its writes "
              "(see its log: wrong token, bucket or database) or is unreachable from it."),
    ]
    return {"apiVersion": 1, "groups": [{"orgId": 1, "name": "netcheck", "folder": FOLDER, "interval": "1m",
                                         "rules": rules}]}


def to_yaml(data: Any, header: str = "") -> str:
    """Block-style YAML: mappings and sequences indented by two, scalars as JSON (valid YAML)."""
    lines: list[str] = []
    _emit(data, 0, lines)
    return header + "\n".join(lines) + "\n"


def _emit(value: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                _emit(item, indent + 2, lines)
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested: list[str] = []
                _emit(item, indent + 2, nested)
                first = nested[0]
                lines.append(f"{pad}- {first[indent + 2:]}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")


def _scalar(value: Any) -> str:
    if value == {}:
        return "{}"
    if value == []:
        return "[]"
    return json.dumps(value, ensure_ascii=False)


PROVISIONING_FILES = {
    "datasources/netcheck.yaml": lambda: to_yaml(datasource(), DATASOURCE_NOTES),
    "dashboards/netcheck.yaml": lambda: to_yaml(dashboard_provider(),
                                                "# Grafana loads the dashboards in `path` into the folder netcheck.\n"),
    "alerting/netcheck.yaml": lambda: to_yaml(alert_rules(), "# Alert rules over netcheck's InfluxDB data.\n"),
}
"""Path under dashboards/provisioning/ → its text."""
