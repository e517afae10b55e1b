"""`netcheck agent` and `netcheck store`: the background agent, and the local store for admins.

Thin, like cli.py: parse, build settings from config and flags, call the library, print.
"""

import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from netcheck.cli.common import JsonFlag, open_store, print_json, server_url_from, stop_on_signals
from netcheck.errors import UsageError
from netcheck.parse import parse_duration_s, parse_host_port

if TYPE_CHECKING:  # the agent and the store are imported when the command runs, not at `netcheck --help`
    from collections.abc import Callable

    from netcheck.config import Config
    from netcheck.session.agent import AgentCounters, AgentSettings, WindowReport
    from netcheck.store.outbox import OutboxStats

store_app = typer.Typer(help="The local store: what was measured, what is waiting for InfluxDB.",
                        no_args_is_help=True)


class Role(str, Enum):
    client = "client"
    therapist = "therapist"


class ExportFormat(str, Enum):
    lp = "lp"
    json = "json"


def agent(
    server: Annotated[Optional[str], typer.Option(help="The clinic's netcheck server URL (else config or NETCHECK_SERVER).")] = None,
    session: Annotated[Optional[str], typer.Option(help="Opaque session id (no names), stored as a field.")] = None,
    role: Annotated[Role, typer.Option(help="Whose leg this agent measures.")] = Role.client,
    window: Annotated[Optional[str], typer.Option(help="Window length, e.g. 5s (config agent.window_s).")] = None,
    duration: Annotated[Optional[str], typer.Option(help="Stop after this long, e.g. 50m (default: until stopped).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Run one window, deliver, exit.")] = False,
    udp_target: Annotated[Optional[str], typer.Option(help="HOST:PORT of the UDP reflector, overriding what the server says.")] = None,
    av_every: Annotated[Optional[str], typer.Option(help="Run the small A/V probe this often, e.g. 5m; 0 = never (config agent.av_every_s).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object per window on stdout.")] = False,
) -> int:
    """Background agent: light probing in windows during a session; stored locally, delivered to InfluxDB."""
    import asyncio

    from netcheck import bounds
    from netcheck.config import load_config
    from netcheck.session.agent import AgentSettings

    config = load_config()
    server_url = server_url_from(server, config) or ""
    defaults = config.agent
    window_s = parse_duration_s(window, "--window") if window else defaults.window_s
    bounds.AGENT_WINDOW_S.check(window_s, "--window", repr(window))
    duration_s = parse_duration_s(duration, "--duration") if duration else None
    if duration_s is not None and duration_s < window_s:
        raise UsageError("--duration is shorter than one window")
    av_every_s = parse_duration_s(av_every, "--av-every") if av_every else defaults.av_every_s
    if session is not None and not (0 < len(session) <= 128 and session.isprintable()):
        raise UsageError("--session must be 1..128 printable characters (an opaque id, no names)")
    token = config.token  # NETCHECK_TOKEN or token_file: measuring, and with --session the hub
    settings = AgentSettings(
        server_url=server_url, role=role.value, session_id=session, site=config.site, window_s=window_s,
        udp_rate_pps=defaults.udp_rate_pps, udp_size_bytes=defaults.udp_size_bytes,
        udp_target=parse_host_port(udp_target, "--udp-target") if udp_target else None,
        hmac_key=config.hmac_key, av_every_s=av_every_s, av_duration_s=defaults.av_duration_s,
        av_video=defaults.av_video, av_audio_offset_ms=defaults.av_audio_offset_ms, duration_s=duration_s,
        once=once, thresholds=config.thresholds, token=token,
    )
    settings.udp_settings()  # validates rate, size and window together

    counters, outbox = asyncio.run(run_agent(config, settings, window_printer(json_output), agent_event))
    agent_event(f"stopped after {counters.windows} window(s), {counters.skipped_windows} skipped; "
                f"outbox {outbox.outbox_pending} pending, {outbox.delivered} delivered, {outbox.dropped} dropped")
    return 0


def agent_event(message: str) -> None:
    """What the agent says as it runs: one line on stderr."""
    print(f"netcheck agent: {message}", file=sys.stderr, flush=True)


def window_printer(json_output: bool) -> "Callable[[WindowReport], None]":
    """Each window as one JSON line on stdout, or its warnings and any change of verdict on stderr."""
    import json

    from netcheck.session.agent import window_to_dict

    last_recommendation: list[str] = []

    def window_done(report: "WindowReport") -> None:
        if json_output:
            print(json.dumps(window_to_dict(report), ensure_ascii=False), flush=True)
            return
        for warning in report.warnings:
            if warning.kind == "warning_raised":
                agent_event(f"warning: {warning.message} {warning.advice}")
            else:
                agent_event(f"cleared: {warning.message}")
        recommendation = report.assessment.recommendation.value
        if last_recommendation[-1:] != [recommendation]:
            agent_event(f"{recommendation}: {report.assessment.summary}")
            last_recommendation.append(recommendation)

    return window_done


async def run_agent(config: "Config", settings: "AgentSettings", window_done: "Callable[[WindowReport], None]",
                    event: "Callable[[str], None]") -> "tuple[AgentCounters, OutboxStats]":
    """Windows until stopped (SIGTERM, SIGINT) or done, delivering as it goes; then what it did."""
    import asyncio

    from netcheck.session.agent import Agent
    from netcheck.session.hub_client import HubPoster
    from netcheck.store.delivery import Deliverer
    from netcheck.store.influx import make_writer

    stop = asyncio.Event()
    stop_on_signals(stop)
    with open_store(config) as store:
        deliverer = None
        if config.influx is not None:
            deliverer = Deliverer(store, make_writer(config.influx), config.influx.batch_size, event,
                                  retry_max_s=config.influx.retry_max_s)
            event(f"delivering to {deliverer.writer.target}")
        else:
            event("no InfluxDB configured (NETCHECK_INFLUX_URL); points stay in the local store")
        token, session = settings.token, settings.session_id
        hub = HubPoster(settings.server_url, session, token, event) if token and session else None
        try:
            counters = await Agent(settings, store, deliverer, window_done, event, hub).run(stop)
        finally:
            if deliverer is not None:
                deliverer.close()
        return counters, store.outbox_stats()


@store_app.command("stats")
def store_stats(json_output: JsonFlag = False) -> int:
    """What the local store holds per table, its bounds, what left it (by age, by count); the outbox."""
    from dataclasses import asdict

    from netcheck.config import load_config

    config = load_config()
    with open_store(config) as store:
        stats: dict[str, Any] = asdict(store.outbox_stats())
        tables = {name: asdict(table) for name, table in store.table_stats().items()}
    if json_output:
        print_json({**stats, "tables": tables})
        return 0
    for key, value in stats.items():
        print(f"{key:16} {value}")
    print()
    print(f"{'table':16}{'rows':>12}{'at most':>12}{'kept for':>12}{'dropped by age':>16}{'by count':>10}")
    for name, table in tables.items():
        at_most = f"{table['max_rows']:,}" if table["max_rows"] is not None else "with check"
        kept_for = f"{table['retention_days']:g} days" if table["retention_days"] is not None else "with check"
        print(f"{name:16}{table['kept']:>12,}{at_most:>12}{kept_for:>12}{table['dropped_by_age']:>16,}"
              f"{table['dropped_by_count']:>10,}")
    print("Delivered points are kept that long; undelivered ones wait, whatever their age.")
    return 0


@store_app.command("export")
def store_export(
    since: Annotated[str, typer.Option(help="How far back, e.g. 1h, 30m, 7d.")] = "1h",
    format: Annotated[ExportFormat, typer.Option("--format", help="lp: InfluxDB line protocol; json: one JSON object per line.")] = ExportFormat.lp,
) -> int:
    """Every stored point since a time, delivered or not, for an admin to load elsewhere."""
    import json
    import time

    from netcheck.config import load_config
    from netcheck.store.influx import to_line

    since_s = parse_duration_s(since, "--since")
    config = load_config()
    since_ms = int((time.time() - since_s) * 1000)
    with open_store(config) as store:
        for stored in store.points_since(since_ms):
            point = stored.point
            if format == ExportFormat.lp:
                line = to_line(point)
                if line is not None:
                    sys.stdout.write(line + "\n")
            else:
                sys.stdout.write(json.dumps({"measurement": point.measurement, "tags": point.tags,
                                             "fields": point.fields, "time_ms": point.time_ms,
                                             "delivered": stored.state == 1}, ensure_ascii=False) + "\n")
    return 0

