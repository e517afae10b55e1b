"""`netcheck check`: the pre-session check, against the clinic's server or a server of its own.

`--local` is composed here, not in netcheck/check.py: the check measures a server at a URL, and
only the CLI may both start a server and run a check (the map in docs/design-notes.md).
"""

import sys
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from netcheck.cli.agent import Role
from netcheck.cli.common import (
    JsonFlag, RelayOnlyFlag, StunOption, TurnOption, TurnUserOption, ice_settings, note_busy, open_store, print_json,
    server_url_from, stderr_console, stdout_console,
)
from netcheck.errors import UsageError
from netcheck.parse import parse_host_port

if TYPE_CHECKING:
    from netcheck.model import CheckReport
    from netcheck.probes.av import AvProbeSettings
    from netcheck.probes.throughput import ThroughputSettings
    from netcheck.probes.udp import UdpProbeSettings
    from netcheck.quality import Metric

EXIT_BY_RECOMMENDATION = {"video": 0, "audio_only": 3, "phone": 4, "unknown": 5}


def warn(message: str) -> None:
    print(f"netcheck: warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    print(f"netcheck: note: {message}", file=sys.stderr)


def check(
    server: Annotated[Optional[str], typer.Option(help="The clinic's netcheck server URL (else config or NETCHECK_SERVER).")] = None,
    json_output: JsonFlag = False,
    quick: Annotated[bool, typer.Option("--quick", help="A verdict in under 3 s: 1 s UDP and A/V streams, no throughput test.")] = False,
    local: Annotated[bool, typer.Option("--local", help="Self-test: start a server on loopback and check against it.")] = False,
    udp_target: Annotated[Optional[str], typer.Option(help="HOST:PORT of the UDP reflector, overriding what the server says.")] = None,
    no_av: Annotated[bool, typer.Option("--no-av", help="Skip the A/V probe (face and lip sync stay unknown).")] = False,
    stun: StunOption = None,
    turn: TurnOption = None,
    turn_user: TurnUserOption = None,
    relay_only: RelayOnlyFlag = False,
    role: Annotated[Role, typer.Option(help="Who checks (a tag on the stored metrics).")] = Role.client,
) -> int:
    """Pre-session check: will video work, and if not, what to do."""
    import asyncio

    from netcheck.av.session import parse_video_format
    from netcheck.check import expected_duration_s, run_check
    from netcheck.cli.render import render_check, with_progress
    from netcheck.config import load_config
    from netcheck.model import report_to_dict
    from netcheck.probes.av import AvProbeSettings
    from netcheck.probes.throughput import ThroughputSettings
    from netcheck.probes.udp import UdpProbeSettings
    from netcheck.store.check_record import deliver_briefly, save_check

    config = load_config()
    if local and (server or udp_target):
        raise UsageError("--local starts its own server; do not combine it with --server or --udp-target")
    server_url = server_url_from(server, config, required=False)
    target = parse_host_port(udp_target, "--udp-target") if udp_target else None
    if not local and not server_url:
        raise UsageError("no server: pass --server URL, set NETCHECK_SERVER or `server` in the config, or use --local")
    defaults = config.check
    settings = UdpProbeSettings(
        interval_ms=defaults.udp_interval_ms,
        duration_s=defaults.quick_udp_duration_s if quick else defaults.udp_duration_s,
        size_bytes=defaults.udp_size_bytes,
        hmac_key=config.hmac_key,
        wait_max_s=defaults.udp_wait_max_s,
    )
    settings.validate()
    ice = ice_settings(stun, turn, turn_user, relay_only, config)
    av_settings = None if no_av else AvProbeSettings(
        duration_s=defaults.quick_av_duration_s if quick else defaults.av_duration_s,
        video=parse_video_format(defaults.av_video), ice=ice, gather_timeout_s=defaults.av_gather_timeout_s,
        connect_timeout_s=defaults.av_connect_timeout_s)
    throughput_settings = None if quick else ThroughputSettings(defaults.throughput_duration_s, 4, config.hmac_key,
                                                                udp_wait_max_s=defaults.udp_wait_max_s)
    job = run_local_check(settings, config.thresholds, av_settings, throughput_settings) if local else run_check(
        server_url or "", settings, target, config.thresholds, av_settings, throughput_settings,
        token=config.token, on_busy=note_busy)

    async def measure() -> Any:
        if json_output:
            return await job
        return await with_progress(job, expected_duration_s(settings, av_settings, throughput_settings),
                                   "Checking your connection", stderr_console())

    check_report = asyncio.run(measure())
    report = report_to_dict(check_report)
    saved = save_check(config, check_report, report, local, role.value, open_store, warn)
    if json_output:
        print_json(report)
    else:
        render_check(report, stdout_console())
    if saved and config.influx is not None:
        deliver_briefly(config, open_store, note)
    return EXIT_BY_RECOMMENDATION[report["recommendation"]]


async def run_local_check(
    udp_settings: "UdpProbeSettings",
    thresholds: "tuple[Metric, ...]",
    av_settings: "AvProbeSettings | None" = None,
    throughput_settings: "ThroughputSettings | None" = None,
) -> "CheckReport":
    """A self-test for a fresh install: start a server on loopback in-process and check against it.

    Media stays on loopback too: ICE host candidates are restricted to 127.0.0.1. (The server, aiohttp
    and aiortc are imported here: only `check --local` needs them.)
    """
    from netcheck.av.peer import restrict_host_candidates
    from netcheck.check import run_check
    from netcheck.server.app import start_server

    if av_settings is not None:
        restrict_host_candidates(["127.0.0.1"])
    server = await start_server("127.0.0.1", 0, 0, hmac_key=udp_settings.hmac_key)
    try:
        return await run_check(server.url, udp_settings, thresholds=thresholds, av_settings=av_settings,
                               throughput_settings=throughput_settings)
    finally:
        await server.close()
