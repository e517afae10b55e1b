"""`netcheck probe …`: run one probe and show all its figures (udp, av, throughput, reach, system)."""

import sys
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from netcheck.cli.common import (
    JsonFlag, RelayOnlyFlag, StunOption, TurnOption, TurnUserOption, ice_settings, note_busy, print_json,
    server_url_from, stdout_console,
)
from netcheck.errors import UsageError
from netcheck.parse import parse_duration_s, parse_host_port

if TYPE_CHECKING:  # the probes, the model and Rich are imported where a probe runs
    from collections.abc import Callable

    from rich.console import Console

    from netcheck.model import ProbeResult
    from netcheck.probes.base import Probe

EXIT_COULD_NOT_MEASURE = 5

probe_app = typer.Typer(help="Run one probe and show all its figures.", no_args_is_help=True)


def finish_probe(result: "ProbeResult", json_output: bool, render: "Callable[[dict[str, Any], Console], None]",
                 what: str) -> int:
    """The end of every `probe` command: JSON or the rendered figures, a one-line reason on stderr when
    the probe could not measure, and the exit code (0, or 5 for could not measure)."""
    from netcheck.model import Status, result_fields

    fields = result_fields(result)
    if json_output:
        print_json(fields)
    else:
        render(fields, stdout_console())
    if result.status == Status.OK:
        return 0
    reason = getattr(result, "error", None)
    print(f"netcheck: {what} {result.status.value}" + (f": {reason}" if reason else ""), file=sys.stderr)
    return EXIT_COULD_NOT_MEASURE


@probe_app.command("udp")
def probe_udp(
    target: Annotated[str, typer.Argument(help="HOST:PORT of a netcheck UDP reflector.")],
    server: Annotated[Optional[str], typer.Option(help="The reflector's netcheck server URL, which hands out this client's key (else NETCHECK_SERVER or the config; none: untagged packets, which only an open reflector answers).")] = None,
    interval: Annotated[str, typer.Option(help="Time between packets, e.g. 20ms.")] = "20ms",
    duration: Annotated[str, typer.Option(help="How long to send, e.g. 3s.")] = "3s",
    size: Annotated[int, typer.Option(help="Packet size in bytes (UDP payload).")] = 160,
    json_output: JsonFlag = False,
) -> int:
    """UDP isochronous probe: RTT, jitter, loss per direction, bursts, reordering."""
    import asyncio

    from netcheck.config import load_config
    from netcheck.probes.udp import UdpProbe, UdpProbeSettings
    from netcheck.cli.render import render_fields
    from netcheck.net.server_info import find_reflector

    host, port = parse_host_port(target)
    config = load_config()
    server_url = server_url_from(server, config, required=False)
    reflector = asyncio.run(find_reflector(server_url, config.hmac_key, config.token)) if server_url else None
    settings = UdpProbeSettings(
        interval_ms=parse_duration_s(interval, "--interval") * 1000.0,
        duration_s=parse_duration_s(duration, "--duration"),
        size_bytes=size,
        hmac_key=config.hmac_key,
        client_key=reflector.client_key if reflector else None,
    )
    result = asyncio.run(UdpProbe(host, port, settings).run())
    return finish_probe(result, json_output, partial(render_fields, f"UDP probe to {target}"), "UDP probe")


@probe_app.command("av")
def probe_av(
    server: Annotated[Optional[str], typer.Option(help="The netcheck server URL (else config or NETCHECK_SERVER).")] = None,
    duration: Annotated[str, typer.Option(help="How long to measure after the first frame, e.g. 5s.")] = "5s",
    video: Annotated[str, typer.Option(help="Sent video, WIDTHxHEIGHT@FPS.")] = "640x360@30",
    audio_offset_ms: Annotated[float, typer.Option(help="Send each audio marker this many ms before its video marker (calibration, tests).")] = 0.0,
    stun: StunOption = None,
    turn: TurnOption = None,
    turn_user: TurnUserOption = None,
    relay_only: RelayOnlyFlag = False,
    json_output: JsonFlag = False,
) -> int:
    """A/V probe: a short WebRTC call both ways — fps, resolution, freezes, loss, jitter, lip sync."""
    import asyncio

    from netcheck import bounds
    from netcheck.av.session import check_audio_offset_ms, parse_video_format
    from netcheck.config import load_config
    from netcheck.probes.av import AvProbe, AvProbeSettings
    from netcheck.cli.render import render_av

    config = load_config()
    server_url = server_url_from(server, config)
    duration_s = parse_duration_s(duration, "--duration")
    bounds.AV_DURATION_S.check(duration_s, "--duration", repr(duration))
    settings = AvProbeSettings(duration_s, parse_video_format(video), check_audio_offset_ms(audio_offset_ms),
                               ice_settings(stun, turn, turn_user, relay_only, config),
                               gather_timeout_s=config.check.av_gather_timeout_s,
                               connect_timeout_s=config.check.av_connect_timeout_s, token=config.token,
                               on_busy=note_busy)
    return finish_probe(asyncio.run(AvProbe(server_url, settings).run()), json_output, render_av, "A/V probe")


@probe_app.command("throughput")
def probe_throughput(
    server: Annotated[Optional[str], typer.Option(help="The netcheck server URL (else config or NETCHECK_SERVER).")] = None,
    duration: Annotated[str, typer.Option(help="Both directions together, ramp-up included, e.g. 4s.")] = "4s",
    streams: Annotated[int, typer.Option(min=1, max=16, help="Parallel HTTP streams per direction.")] = 4,
    backend: Annotated[str, typer.Option(help="netcheck (the clinic's server) or speedtest (speedtest.net, best effort). Default: netcheck when a server is configured.")] = "auto",
    udp_target: Annotated[Optional[str], typer.Option(help="HOST:PORT of the UDP reflector for loaded RTT.")] = None,
    json_output: JsonFlag = False,
) -> int:
    """Download and upload speed, and how much the delay rises under that load (bufferbloat)."""
    import asyncio

    from netcheck import bounds
    from netcheck.config import load_config
    from netcheck.net.server_info import find_reflector
    from netcheck.probes.throughput import ThroughputProbe, ThroughputSettings
    from netcheck.cli.render import render_fields

    config = load_config()
    server_url = server_url_from(server, config, required=False)
    if backend not in ("auto", "netcheck", "speedtest"):
        raise UsageError(f"--backend {backend!r}: use netcheck or speedtest")
    if backend == "auto":
        backend = "netcheck" if server_url else "speedtest"
    duration_s = parse_duration_s(duration, "--duration")
    bounds.THROUGHPUT_DURATION_S.check(duration_s, "--duration", repr(duration))
    if backend == "speedtest":
        from netcheck.probes.speedtest_backend import SpeedtestProbe

        probe: "Probe" = SpeedtestProbe()
    else:
        if not server_url:
            raise UsageError("no server: pass --server URL, set NETCHECK_SERVER, or use --backend speedtest")

        # the reflector's key signs the loaded-RTT stream, also when --udp-target says where to send it
        reflector = asyncio.run(find_reflector(server_url, config.hmac_key, config.token))
        target = parse_host_port(udp_target, "--udp-target") if udp_target else (reflector.host, reflector.port)
        settings = ThroughputSettings(duration_s, streams, config.hmac_key, client_key=reflector.client_key,
                                      token=config.token, on_busy=note_busy)
        probe = ThroughputProbe(server_url, target, settings)
    return finish_probe(asyncio.run(probe.run()), json_output, partial(render_fields, "Throughput"),
                        "throughput probe")


@probe_app.command("reach")
def probe_reach(
    server: Annotated[Optional[str], typer.Option(help="The netcheck server URL (else config or NETCHECK_SERVER).")] = None,
    udp_target: Annotated[Optional[str], typer.Option(help="HOST:PORT of the UDP reflector, overriding what the server says.")] = None,
    stun: StunOption = None,
    turn: TurnOption = None,
    turn_user: TurnUserOption = None,
    json_output: JsonFlag = False,
) -> int:
    """Reachability: DNS, TCP and TLS times, UDP blocked or not, STUN RTT, TURN over UDP and TCP."""
    import asyncio

    from netcheck.config import load_config
    from netcheck.probes.reach import ReachProbe
    from netcheck.cli.render import render_fields

    config = load_config()
    server_url = server_url_from(server, config)
    target = parse_host_port(udp_target, "--udp-target") if udp_target else None
    ice = ice_settings(stun, turn, turn_user, False, config)
    result = asyncio.run(ReachProbe(server_url, target, stun, ice if turn else None, config.hmac_key,
                                    token=config.token).run())
    return finish_probe(result, json_output, partial(render_fields, f"Reachability of {server_url}"), "server")


@probe_app.command("system")
def probe_system(
    duration: Annotated[str, typer.Option(help="How long to watch the interface, e.g. 2s.")] = "2s",
    target: Annotated[str, typer.Option(help="Host whose route picks the interface (only a routing lookup; nothing is sent).")] = "192.0.2.1",
    json_output: JsonFlag = False,
) -> int:
    """CPU, memory, battery, interface kind, NIC errors and traffic during a window."""
    import asyncio

    from netcheck import bounds
    from netcheck.probes.system import SystemProbe
    from netcheck.cli.render import render_fields

    window_s = parse_duration_s(duration, "--duration")
    bounds.SYSTEM_WINDOW_S.check(window_s, "--duration", repr(duration))
    return finish_probe(asyncio.run(SystemProbe(target, window_s).run()), json_output,
                        partial(render_fields, "System"), "system probe")
