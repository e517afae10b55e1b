"""Grafana dashboards and provisioning (issue 7): generated = committed, bands = the quality model,
valid dashboard JSON, and every query — panels, template variables, annotations, alert rules — run
against a real InfluxDB 1.6.7 filled by real agents and checks (tests/grafana_fill.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from netcheck.dashboards import generated_files
from netcheck.dashboards.grafana import DATASOURCE_UID, SCHEMA_VERSION
from netcheck.dashboards.provisioning import PROVISIONING_FILES, alert_rules, dashboard_provider, datasource
from netcheck.quality.metrics import METRICS
from tests.harness.servers import REPO, subprocess_env
from tests.harness.tsdb import InfluxDB1

DASHBOARD_DIR = REPO / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARD_DIR.glob("*.json"))
THRESHOLDS = {threshold.name: threshold for threshold in METRICS}
ALIAS = re.compile(r'AS "([^"]+)"')
MODEL_METRIC = re.compile(r"quality model \(([a-z0-9_]+)\)")


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in DASHBOARD_FILES]


def panel_targets() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for board in dashboards():
        for panel in board["panels"]:
            for target in panel["targets"]:
                yield board["uid"], panel["title"], target


# --- generated, committed, valid ----------------------------------------------------------


def test_committed_files_are_what_the_code_generates() -> None:
    """`netcheck dashboards build` and commit: a change to the quality model must reach the JSON."""
    generated = generated_files()
    committed = {str(path.relative_to(DASHBOARD_DIR)): path.read_text() for path in DASHBOARD_DIR.rglob("*")
                 if path.is_file()}
    assert committed.keys() == generated.keys()
    for name, content in generated.items():
        assert committed[name] == content, f"dashboards/{name} is stale: run `netcheck dashboards build`"


def test_at_least_three_dashboards_with_unique_uids_and_panel_ids() -> None:
    boards = dashboards()
    assert {board["uid"] for board in boards} == {"netcheck-overview", "netcheck-session", "netcheck-checks"}
    for board in boards:
        assert board["schemaVersion"] == SCHEMA_VERSION and board["title"] and board["panels"]
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), board["uid"]
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
            assert panel["type"] in {"timeseries", "table", "piechart", "bargauge", "stat"}
            assert panel["datasource"]["uid"] == DATASOURCE_UID and panel["targets"]
        text = json.dumps(board)
        assert "${DS_" not in text and "__inputs" not in text


def test_every_query_uses_the_fixed_datasource_and_aliases_its_columns() -> None:
    for board in dashboards():
        queries = [target for panel in board["panels"] for target in panel["targets"]]
        queries += [variable for variable in board["templating"]["list"]]
        queries += [note for note in board["annotations"]["list"] if "query" in note]
        for query in queries:
            assert query["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}
    for _, title, target in panel_targets():
        assert target["rawQuery"] is True and ALIAS.search(target["query"]), title


def test_every_threshold_step_is_the_quality_models_value() -> None:
    banded = 0
    for board in dashboards():
        for panel in board["panels"]:
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            match = MODEL_METRIC.search(panel["description"])
            if len(steps) == 1:
                assert match is None, f"{panel['title']} says it has bands but has none"
                continue
            assert match, f"{panel['title']}: bands without saying which metric they come from"
            threshold = THRESHOLDS[match.group(1)]
            values = [step["value"] for step in steps[1:]]
            if threshold.direction == "within":
                assert values == [threshold.fair[0], threshold.good[0], threshold.good[1], threshold.fair[1]]
            else:
                assert sorted(values) == sorted([threshold.good, threshold.fair])
            colours = [step["color"] for step in steps]
            worse_first = threshold.direction != "lower_is_better"
            assert colours[0] == ("red" if worse_first else "green")
            banded += 1
    assert banded >= 10


def test_provisioning_yaml_is_the_generated_data_and_points_at_the_datasource() -> None:
    loaded = {path: yaml.safe_load(text()) for path, text in PROVISIONING_FILES.items()}
    assert loaded["datasources/netcheck.yaml"] == datasource()
    assert loaded["dashboards/netcheck.yaml"] == dashboard_provider()
    assert loaded["alerting/netcheck.yaml"] == alert_rules()
    source = loaded["datasources/netcheck.yaml"]["datasources"][0]
    assert source["uid"] == DATASOURCE_UID and source["jsonData"]["version"] == "InfluxQL"
    rules = alert_rules()["groups"][0]["rules"]
    assert {rule["title"] for rule in rules} == {"Site-wide degradation", "Agents silent", "Outbox growing"}
    for rule in rules:
        queries = [item for item in rule["data"] if item["datasourceUid"] != "__expr__"]
        assert queries and all(item["datasourceUid"] == DATASOURCE_UID for item in queries)


# --- every query against a real InfluxDB ---------------------------------------------------


@pytest.fixture
def filled(grafana_data: tuple[InfluxDB1, Any]) -> InfluxDB1:
    return grafana_data[0]


def expand(query: str, values: dict[str, str]) -> str:
    """Grafana's macros and variables, as Grafana expands them for InfluxQL."""
    expanded = query.replace("$timeFilter", "time > now() - 1d").replace("$__interval", "10s")
    for name, value in sorted(values.items(), key=lambda item: -len(item[0])):
        expanded = expanded.replace(f"${name}", value)
    assert not re.search(r"\$[A-Za-z_]", expanded), expanded  # a `$/` regex anchor may stay
    return expanded


def variable_values(influx: InfluxDB1, board: dict[str, Any], everything: bool) -> dict[str, str]:
    """Run every variable query in order; pick "All" (`.*`) or the first value it returned."""
    values: dict[str, str] = {}
    for variable in board["templating"]["list"]:
        series = influx.query(expand(variable["query"], values))
        assert series, f"{board['uid']}: variable {variable['name']} returned nothing"
        found = [row[-1] for one in series for row in one["values"]]
        assert found and all(isinstance(value, str) and value for value in found)
        values[variable["name"]] = variable["allValue"] if everything and variable["includeAll"] else found[0]
    return values


def assert_returns_aliased_columns(influx: InfluxDB1, query: str, where: str, required: bool = True) -> bool:
    """The query runs (InfluxDB errors raise); what it returns has the aliased columns, not all null.

    Returns whether it returned anything; with `required`, returning nothing fails."""
    series = influx.query(query)
    if not series and not required:
        return False
    assert series, f"{where}: no series for {query}"
    expected = set(ALIAS.findall(query))
    for one in series:
        assert expected <= set(one["columns"]), f"{where}: columns {one['columns']} lack {expected}"
    assert any(value is not None for one in series for row in one["values"]
               for column, value in zip(one["columns"], row) if column in expected), f"{where}: all null"
    return True


@pytest.mark.slow
@pytest.mark.parametrize("everything", [True, False], ids=["all", "one-value"])
def test_every_panel_and_annotation_query_returns_its_columns(filled: InfluxDB1, everything: bool) -> None:
    """With "All" every query must return data; with one value per variable (the first listed) a
    site may have no checks, so there an empty answer is allowed but most queries still return."""
    checked = answered = 0
    for board in dashboards():
        values = variable_values(filled, board, everything)
        queries = [(f"{board['uid']} / {panel['title']} / {target['refId']}", target["query"])
                   for panel in board["panels"] for target in panel["targets"]]
        queries += [(f"{board['uid']} / {note['name']}", note["query"]) for note in board["annotations"]["list"]
                    if "query" in note]
        for where, query in queries:
            answered += assert_returns_aliased_columns(filled, expand(query, values), where, required=everything)
            checked += 1
        for note in board["annotations"]["list"]:
            if "query" in note:
                assert {note["textColumn"], note["tagsColumn"]} <= set(ALIAS.findall(note["query"]))
    assert checked >= 20 and answered >= (checked if everything else checked * 0.6)


@pytest.mark.slow
def test_every_alert_rule_query_executes(filled: InfluxDB1) -> None:
    for rule in alert_rules()["groups"][0]["rules"]:
        (query,) = [item["model"]["query"] for item in rule["data"] if item["datasourceUid"] == DATASOURCE_UID]
        assert_returns_aliased_columns(filled, expand(query, {}), rule["title"])


def test_export_writes_a_grafana_layout(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "cli.py"), "dashboards", "export", str(tmp_path / "g")],
                            capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert result.returncode == 0, result.stderr
    written = {str(Path(line).relative_to(tmp_path / "g")) for line in result.stdout.split()}
    assert written == {"dashboards/netcheck/overview.json", "dashboards/netcheck/session.json",
                       "dashboards/netcheck/checks.json", "provisioning/datasources/netcheck.yaml",
                       "provisioning/dashboards/netcheck.yaml", "provisioning/alerting/netcheck.yaml"}
    provider = yaml.safe_load((tmp_path / "g" / "provisioning" / "dashboards" / "netcheck.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/netcheck"
