"""The dashboard test data set (tests/grafana_fill.py) really holds what the dashboards must show:
every cue at fair and at poor, warnings, agent self-metrics, checks with throughput, two sites,
two sessions, both roles; all of it from real netcheck runs into a real InfluxDB 1.6.7."""

from __future__ import annotations


import pytest

from tests.harness.grafana_fill import CUES, FillReport
from tests.harness.tsdb import InfluxDB1

CHECK_MEASUREMENTS = ("netcheck_udp", "netcheck_av", "netcheck_reach", "netcheck_system", "netcheck_assessment",
                      "netcheck_throughput")


def count(influx: InfluxDB1, influxql: str) -> int:
    """The single COUNT() value of a query (0 when it matched nothing)."""
    series = influx.query(influxql)
    return int(series[0]["values"][0][1]) if series else 0


@pytest.mark.slow
def test_fill_influx_gives_every_cue_fair_and_poor_windows_and_everything_the_dashboards_need(
        grafana_data: tuple[InfluxDB1, FillReport]) -> None:
    influx, report = grafana_data
    print(report)
    for cue in CUES:
        assert {"fair", "poor"} <= report.cue_levels[cue], (cue, report.cue_levels[cue])
    for cue in ("vocal_tone", "conversational_timing"):
        assert "good" in report.cue_levels[cue], (cue, report.cue_levels[cue])
    assert count(influx, "SELECT COUNT(active) FROM netcheck_warning WHERE active = 1") >= 1
    for name, agent_id in report.agents.items():
        assert count(influx, f"SELECT COUNT(windows) FROM netcheck_agent WHERE \"agent\" = '{agent_id}'") > 0, name
    assert report.checks == 2
    assert count(influx, "SELECT COUNT(level) FROM netcheck_assessment WHERE \"kind\" = 'check'") == 2
    for measurement in CHECK_MEASUREMENTS:
        series = influx.query(f"SELECT * FROM {measurement} WHERE \"kind\" = 'check'")
        assert series and series[0]["values"], f"no kind=check point in {measurement}"
    assert count(influx, "SELECT COUNT(download_mbps) FROM netcheck_throughput") >= 1
    assert len(report.sites) >= 2 and len(report.sessions) == 2
    assert {"client", "therapist"} <= set(report.roles)
