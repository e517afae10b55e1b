"""The three dashboards (docs/dashboards.md says what each answers): Overview, Session, Pre-session checks.

Queries are InfluxQL over the schema of docs/agent.md; see grafana.py for the conventions.
"""

from __future__ import annotations

from typing import Any

from netcheck.dashboards.grafana import (
    annotation, dashboard, field_variable, panel, tag_variable, target,
)

SITE = '"site" =~ /^$site$/'
AGENT = '"agent" =~ /^$agent$/'
ROLE = '"role" =~ /^$role$/'
CLIENT = '"client" =~ /^$client$/'
SESSION = "\"session_id\" = '$session'"
CUES = ("facial_expression", "vocal_tone", "conversational_timing", "lip_sync")
RECOMMENDATIONS = (("video", 0), ("audio_only", 1), ("phone", 2))
BY_LEG = 'GROUP BY time($__interval), "role" fill(none)'


def overview() -> dict[str, Any]:
    """Across the clinic: how many checks and sessions, what they recommended, which cue fails, who struggles."""
    assessments = f'FROM "netcheck_assessment" WHERE $timeFilter AND {SITE}'
    mix = [target(chr(ord("A") + index), f'SELECT count("recommendation_code") AS "{name}" {assessments} '
                                         f'AND "recommendation_code" = {code}') for index, (name, code) in enumerate(RECOMMENDATIONS)]
    poor_share = ", ".join(f'mean("{cue}_poor") * 100 AS "{cue}"' for cue in CUES)
    panels = [
        panel("timeseries", "Checks and sessions", [
            target("A", f'SELECT count("recommendation_code") AS "checks" {assessments} AND "kind" = \'check\' '
                        "GROUP BY time($__interval) fill(none)", alias="checks"),
            target("B", f'SELECT count(distinct("session_id")) AS "sessions" {assessments} AND "kind" = \'session\' '
                        "GROUP BY time($__interval) fill(none)", alias="sessions"),
        ], (0, 0, 12, 8), "Pre-session checks run, and sessions with an agent, per interval.", unit="short",
            options={"legend": {"displayMode": "list", "placement": "bottom"}}),
        panel("piechart", "Recommendations", mix, (12, 0, 6, 8),
              "What checks and session windows recommended: video, audio only, phone.", unit="short",
              options={"reduceOptions": {"calcs": ["sum"]}, "legend": {"displayMode": "table", "placement": "right"}}),
        panel("bargauge", "Poor windows per cue", [
            target("A", f"SELECT {poor_share} {assessments} AND \"kind\" = 'session'"),
        ], (18, 0, 6, 8), "Share of session windows in which each cue was poor.", unit="percent",
            options={"reduceOptions": {"calcs": ["mean"]}, "orientation": "horizontal"}),
        panel("timeseries", "Poor windows per cue over time", [
            target("A", f"SELECT {poor_share} {assessments} AND \"kind\" = 'session' "
                        "GROUP BY time($__interval) fill(none)", alias="$col"),
        ], (0, 8, 12, 8), "Which cue fails, and when (time of day, day of week).", unit="percent"),
        panel("table", "Agents and sites that struggle", [
            target("A", f'SELECT mean("level_code") AS "mean_level_code", sum("poor") AS "poor_windows", '
                        f'count("level_code") AS "windows" {assessments} GROUP BY "site", "agent"', table=True),
        ], (12, 8, 12, 8), "Mean level (0 good, 1 fair, 2 poor) and poor windows per agent; worst first.",
            options={"sortBy": [{"displayName": "mean_level_code", "desc": True}]}),
        panel("timeseries", "Outbox depth (points waiting for InfluxDB)", [
            target("A", f'SELECT max("outbox_pending") AS "outbox_pending" FROM "netcheck_agent" WHERE $timeFilter '
                        f'AND {SITE} GROUP BY time($__interval), "agent" fill(none)', alias="$tag_agent"),
        ], (0, 16, 12, 8), "Agent health: points stored locally and not yet delivered.", unit="short"),
        panel("table", "Agent health", [
            target("A", 'SELECT last("outbox_pending") AS "outbox_pending", last("write_errors") AS "write_errors", '
                        'last("dropped_total") AS "dropped_total", last("skipped_windows") AS "skipped_windows", '
                        'last("cpu_pct") AS "cpu_pct", last("rss_mb") AS "rss_mb" FROM "netcheck_agent" '
                        f'WHERE $timeFilter AND {SITE} GROUP BY "agent"', table=True),
        ], (12, 16, 12, 8), "Last self-metrics per agent: delivery backlog and errors, skipped windows, cost."),
    ]
    return dashboard("netcheck-overview", "netcheck — Overview",
                     "Every check and session across the clinic.", panels, [tag_variable("site", "Site", "site")])


def session() -> dict[str, Any]:
    """One session, both legs over time, with threshold bands and the warnings as annotations."""
    def leg_panel(title: str, measurement: str, field: str | tuple[str, ...], metric: str | None,
                  grid: tuple[int, int, int, int], description: str, unit: str | None = None) -> dict[str, Any]:
        """One series per leg, or per leg and direction when `field` names one field per direction."""
        fields = (field,) if isinstance(field, str) else field
        selected = ", ".join(f'mean("{name}") AS "{name}"' for name in fields)
        query = f'SELECT {selected} FROM "{measurement}" WHERE $timeFilter AND {SESSION} {BY_LEG}'
        alias = "$tag_role" if len(fields) == 1 else "$tag_role $col"
        return panel("timeseries", title, [target("A", query, alias=alias)], grid, description, metric, unit)

    panels = [
        leg_panel("Delay (RTT p95)", "netcheck_udp", "rtt_p95_ms", "rtt_p95_ms", (0, 0, 12, 8),
                  "Each leg's round trip to the clinic's server."),
        leg_panel("Jitter, one way", "netcheck_udp", ("jitter_up_ms", "jitter_down_ms"), "jitter_one_way_ms",
                  (12, 0, 12, 8), "Mean one-way IPDV of each leg, up (to the server) and down; the worse is judged."),
        leg_panel("Packet loss, one way", "netcheck_udp", ("loss_up_pct", "loss_down_pct"), "loss_one_way_pct",
                  (0, 8, 12, 8), "Each leg's loss up (to the server) and down; the worse is judged."),
        leg_panel("Received frame rate", "netcheck_av", "down_video_fps", "video_fps", (12, 8, 12, 8),
                  "Frames per second each leg received in the agent's A/V probe."),
        leg_panel("Received video height", "netcheck_av", "down_video_height", None, (0, 16, 12, 8),
                  "The agent's A/V probe sends a small fixed-size picture: reported, not judged (it says nothing "
                  "about the path)."),
        leg_panel("A/V skew (+ = audio leads)", "netcheck_av", "av_skew_ms", "av_skew_ms", (12, 16, 12, 8),
                  "Lip sync of each leg's A/V probe."),
        leg_panel("Received video packet loss", "netcheck_av", "down_video_loss_pct", "video_loss_pct", (0, 24, 12, 8),
                  "Video packets each leg's A/V probe lost before repair: past 5 % the picture stalls."),
        leg_panel("Interface traffic, received", "netcheck_system", "rx_mbps", None, (12, 24, 12, 8),
                  "All traffic on each leg's network interface (the call included): bandwidth in use.", unit="Mbits"),
        panel("table", "Warnings", [
            target("A", 'SELECT "event" AS "event", "level" AS "level", "message" AS "message", "advice" AS "advice" '
                        f'FROM "netcheck_warning" WHERE $timeFilter AND {SESSION} GROUP BY "role", "cue"', table=True),
        ], (0, 32, 24, 8), "Warnings raised and cleared in this session, per leg and cue."),
    ]
    warnings = annotation(
        "Warnings", f'SELECT "message" AS "message", "cue" AS "cue" FROM "netcheck_warning" WHERE $timeFilter '
                    f"AND {SESSION} AND \"active\" = 1", "red", "message", "cue")
    sessions = field_variable("session", "Session", 'SELECT DISTINCT("session_id") AS "session_id" FROM '
                              "\"netcheck_assessment\" WHERE $timeFilter AND \"kind\" = 'session' AND " + SITE)
    return dashboard("netcheck-session", "netcheck — Session", "Both legs of one session over time.", panels,
                     [tag_variable("site", "Site", "site", where="\"kind\" = 'session'"), sessions], [warnings],
                     time_from="now-6h")


def checks() -> dict[str, Any]:
    """Pre-session checks: each check's verdict, cue levels and deciding figures; by site, role, agent, and
    client (`cli` or `browser`: the same schema, told apart by this tag)."""
    where = f"WHERE $timeFilter AND \"kind\" = 'check' AND {SITE} AND {ROLE} AND {CLIENT} AND {AGENT}"
    levels = ", ".join(f'"{cue}_level" AS "{cue}"' for cue in CUES)

    def figure_panel(title: str, measurement: str, fields: tuple[str, ...], metric: str,
                     grid: tuple[int, int, int, int], description: str) -> dict[str, Any]:
        selected = ", ".join(f'"{field}" AS "{field}"' for field in fields)
        return panel("timeseries", title, [target("A", f'SELECT {selected} FROM "{measurement}" {where}', alias="$col")],
                     grid, description, metric,
                     options={"legend": {"displayMode": "list", "placement": "bottom"}})

    panels = [
        panel("table", "Checks: verdict and cue levels", [
            target("A", f'SELECT "recommendation" AS "recommendation", "video_setting" AS "video_setting", {levels}, '
                        f'"check_id" AS "check_id" FROM "netcheck_assessment" {where} GROUP BY "site", "role", "client", "agent"',
                   table=True),
        ], (0, 0, 24, 9), "One row per check, newest last; `client` says whether it ran in the browser or the CLI."),
        figure_panel("Delay (RTT p95)", "netcheck_udp", ("rtt_p95_ms",), "rtt_p95_ms", (0, 9, 8, 8),
                     "Each check's UDP voice stream."),
        figure_panel("Packet loss, one way", "netcheck_udp", ("loss_up_pct", "loss_down_pct"), "loss_one_way_pct",
                     (8, 9, 8, 8), "Each check's UDP stream, up and down; the worse is judged."),
        figure_panel("Jitter, one way", "netcheck_udp", ("jitter_up_ms", "jitter_down_ms"), "jitter_one_way_ms",
                     (16, 9, 8, 8), "Each check's UDP stream, up and down; the worse is judged."),
        figure_panel("Received frame rate", "netcheck_av", ("down_video_fps", "up_video_fps"), "video_fps",
                     (0, 17, 8, 8), "The check's 720p call, both directions."),
        figure_panel("A/V skew", "netcheck_av", ("av_skew_ms",), "av_skew_ms", (8, 17, 8, 8),
                     "The check's call; + = audio leads."),
        figure_panel("Bandwidth", "netcheck_throughput", ("download_mbps", "upload_mbps"), "bandwidth_mbps",
                     (16, 17, 8, 8), "Full checks only (quick checks skip the speed test)."),
    ]
    checks_only = "\"kind\" = 'check'"
    variables = [tag_variable("site", "Site", "site", where=checks_only),
                 tag_variable("role", "Role", "role", where=f"{checks_only} AND {SITE}"),
                 tag_variable("client", "Client", "client", where=f"{checks_only} AND {SITE} AND {ROLE}"),
                 tag_variable("agent", "Agent", "agent", where=f"{checks_only} AND {SITE} AND {ROLE} AND {CLIENT}")]
    return dashboard("netcheck-checks", "netcheck — Pre-session checks",
                     "Each pre-session check: verdict, cue levels and the figures that decided them.", panels,
                     variables, time_from="now-7d")


DASHBOARDS = {"overview": overview, "session": session, "checks": checks}
"""File stem → builder; `netcheck dashboards build` writes dashboards/<stem>.json."""
