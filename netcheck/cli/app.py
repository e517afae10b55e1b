"""The `netcheck` command: parse, call the library, render, map errors to exit codes.

Start-up is part of the interface: `netcheck --help` parses before anything else happens.
- Heavy modules (asyncio, aiohttp, psutil, Rich tables, the library) are imported inside the
  commands that use them; at module level only Typer and the small parsing helpers.
- The command modules (this one and cli_agent, cli_watch, cli_session, cli_dashboards) do not use
  `from __future__ import annotations`: with string annotations Typer evaluates every option's
  `Annotated[...]` again at each start, which tripled the time it takes to build the commands.
BENCHMARKS.md ("Start-up of `netcheck --help`") has the figures.
"""

import sys
from functools import partial
from typing import Annotated, Any, Optional

import typer

from netcheck import __version__
from netcheck.errors import NetcheckError, UsageError
from netcheck.cli.agent import Role, agent, store_app
from netcheck.cli.dashboards import dashboards_app
from netcheck.cli.watch import watch
from netcheck.cli.session import session_app, token_app
from netcheck.cli.common import (
    JsonFlag, RelayOnlyFlag, StunOption, TurnOption, TurnUserOption, ice_settings, note_busy, print_json,
    open_store, server_url_from, stderr_console, stdout_console, stop_on_signals,
)
from netcheck.parse import parse_duration_s, parse_host_port

EXIT_BY_RECOMMENDATION = {"video": 0, "audio_only": 3, "phone": 4, "unknown": 5}
EXIT_COULD_NOT_MEASURE = 5


def is_loopback(bind: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return bind == "localhost"


def finish_probe(result: Any, json_output: bool, render: Any, what: str) -> int:
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

app = typer.Typer(
    help="Can this connection carry the nonverbal cues of a video therapy session?",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
probe_app = typer.Typer(help="Run one probe and show all its figures.", no_args_is_help=True)
config_app = typer.Typer(help="Show or create the config file.", no_args_is_help=True)
app.add_typer(probe_app, name="probe")
app.add_typer(config_app, name="config")
app.add_typer(store_app, name="store")
app.add_typer(token_app, name="token")
app.add_typer(session_app, name="session")
app.add_typer(dashboards_app, name="dashboards")
app.command()(agent)
app.command()(watch)

def warn(message: str) -> None:
    print(f"netcheck: warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    print(f"netcheck: note: {message}", file=sys.stderr)


def _version(value: bool) -> None:
    if value:
        print(f"netcheck {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Can this connection carry the nonverbal cues of a video therapy session?"""


@app.command()
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
    from netcheck.check import expected_duration_s, report_to_dict, run_check, run_local_check
    from netcheck.store.check_record import deliver_briefly, save_check
    from netcheck.config import load_config
    from netcheck.probes.av import AvProbeSettings
    from netcheck.probes.throughput import ThroughputSettings
    from netcheck.probes.udp import UdpProbeSettings
    from netcheck.cli.render import render_check, with_progress

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
    )
    settings.validate()
    ice = ice_settings(stun, turn, turn_user, relay_only, config)
    av_settings = None if no_av else AvProbeSettings(
        duration_s=defaults.quick_av_duration_s if quick else defaults.av_duration_s,
        video=parse_video_format(defaults.av_video), ice=ice)
    throughput_settings = None if quick else ThroughputSettings(defaults.throughput_duration_s, 4, config.hmac_key)
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
                               ice_settings(stun, turn, turn_user, relay_only, config), token=config.token,
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

        probe: Any = SpeedtestProbe()
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


@app.command()
def serve(
    bind: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 or :: for all).")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="HTTP API port; 0 = any free port.")] = 8470,
    udp_port: Annotated[int, typer.Option(help="UDP reflector port; 0 = any free port.")] = 8471,
    rate_limit_pps: Annotated[float, typer.Option(help="Reflector packets per second allowed per source address.")] = 1000.0,
    stun: StunOption = None,
    turn: TurnOption = None,
    turn_user: TurnUserOption = None,
    relay_only: RelayOnlyFlag = False,
    tls_cert: Annotated[Optional[str], typer.Option(help="PEM certificate chain: serve the HTTP API over HTTPS.")] = None,
    tls_key: Annotated[Optional[str], typer.Option(help="PEM private key of --tls-cert.")] = None,
    require_token: Annotated[bool, typer.Option("--require-token", help="Measure only for clients with a valid token (check links): UDP keys, A/V, throughput, checks. Needs NETCHECK_SECRET.")] = False,
    open_reflector: Annotated[bool, typer.Option("--open-reflector", help="Also answer untagged UDP probe packets (a LAN or a test bench; never on an address the internet reaches).")] = False,
    trust_proxy: Annotated[Optional[str], typer.Option("--trust-proxy", help="The load balancer's address (or network): for its requests only, the client's address is taken from X-Forwarded-For (UDP keys, fair shares).")] = None,
    hub: Annotated[Optional[str], typer.Option("--hub", help="Keep the session hub in Redis, shared by several nodes: redis://HOST:PORT/N (else NETCHECK_HUB_URL or hub_url; none: in memory). Password: NETCHECK_HUB_PASSWORD or hub_password_file, never in the URL.")] = None,
    browser_turn: Annotated[Optional[list[str]], typer.Option("--browser-turn", metavar="URL", help="A TURN server for the browser check's pages (repeatable), e.g. turn:HOST:3478?transport=tcp or turns:HOST:5349?transport=tcp: /v1/info hands each page 10-minute credentials signed with its static-auth-secret (NETCHECK_TURN_SECRET or turn_secret_file, never a flag).")] = None,
) -> int:
    """The clinic-side server: UDP reflector and HTTP API. Prints the bound ports, runs until stopped."""
    import asyncio
    import ipaddress
    import ssl

    from netcheck.config import load_config
    from netcheck.parse import parse_hub_url
    from netcheck.server.app import start_server, tls_context
    from netcheck.server.checks import CheckSettings
    from netcheck.server.turn_credentials import browser_turn as browser_turn_settings

    for name, port in (("--http-port", http_port), ("--udp-port", udp_port)):
        if not 0 <= port <= 65535:
            raise UsageError(f"{name} {port} outside 0..65535")
    if rate_limit_pps <= 0:
        raise UsageError("--rate-limit-pps must be positive")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    tls = None
    if tls_cert and tls_key:
        try:
            tls = tls_context(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as error:
            raise UsageError(f"cannot use --tls-cert/--tls-key: {getattr(error, 'strerror', None) or error}") from None
    config = load_config()
    hmac_key = config.hmac_key
    ice = ice_settings(stun, turn, turn_user, relay_only, config)
    hub_url = parse_hub_url(hub) if hub else config.hub_url
    pages_turn = browser_turn_settings(browser_turn or (), config.turn_secret)
    if trust_proxy is not None:
        try:
            ipaddress.ip_network(trust_proxy, strict=False)
        except ValueError:
            raise UsageError(f"--trust-proxy {trust_proxy!r}: not an IP address or network") from None
    if hub_url and not config.secret:
        raise UsageError("--hub needs NETCHECK_SECRET (or secret_file): the session hub checks tokens with it")
    if require_token and not config.secret:
        raise UsageError("--require-token needs NETCHECK_SECRET (or secret_file) to verify the tokens")
    if tls is None and not is_loopback(bind):
        print(f"netcheck: warning: serving plain HTTP on {bind}: the UDP keys{' and tokens' if config.secret else ''} "
              "it hands out cross the network readable; use --tls-cert/--tls-key beyond a trusted LAN",
              file=sys.stderr, flush=True)

    def delivery_event(message: str) -> None:
        print(f"netcheck: {message}", file=sys.stderr, flush=True)

    checks = CheckSettings(config.store_path, config.thresholds, config.site, config.influx, config.store.max_points,
                           config.store.retention_days, delivery_event)  # browser checks: the same store and outbox

    async def run_until_stopped() -> None:
        try:
            server = await start_server(bind, http_port, udp_port, hmac_key, rate_limit_pps, ice, config.secret,
                                        tls=tls, require_token=require_token, open_reflector=open_reflector,
                                        checks=checks, hub_url=hub_url, hub_password=config.hub_password,
                                        trust_proxy=trust_proxy, browser_turn=pages_turn)
        except OSError as error:
            raise NetcheckError(f"cannot listen on {bind}: {error.strerror or error}") from None
        host = f"[{bind}]" if ":" in bind else bind
        print(f"{'https' if tls else 'http'} {host}:{server.http_port}", flush=True)
        print(f"udp {host}:{server.udp_port}", flush=True)
        if hub_url and server.hub is not None:
            await _report_hub_store(hub_url, server.hub.backend)
        stop = asyncio.Event()
        stop_on_signals(stop)
        try:
            await stop.wait()
        finally:
            await server.close()

    asyncio.run(run_until_stopped())
    return 0


async def _report_hub_store(hub_url: str, backend: Any) -> None:
    """One line on stderr: which Redis holds the hub, and whether it answers (serving goes on either way)."""
    from redis.exceptions import RedisError

    try:
        await backend.ping()
        print(f"netcheck: session hub in {hub_url}", file=sys.stderr, flush=True)
    except RedisError as error:
        print(f"netcheck: warning: session hub store {hub_url} does not answer ({error}); posts get 503 "
              "until it does", file=sys.stderr, flush=True)


@app.command()
def history(
    json_output: JsonFlag = False,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="How many checks, newest first.")] = 20,
) -> int:
    """Past checks from the local store."""
    from netcheck.config import load_config
    from netcheck.cli.render import render_history

    with open_store(load_config()) as store:
        reports = store.list_checks(limit)
    if json_output:
        print_json([{key: report[key] for key in ("check_id", "started_at", "duration_s", "server",
                                                    "recommendation", "level", "summary", "advice")}
                     for report in reports])
    else:
        render_history(reports, stdout_console())
    return 0


@config_app.command("path")
def config_path_command() -> int:
    """Where the config file is (it may not exist yet)."""
    from netcheck.config import config_path
    import os

    print(config_path(os.environ))
    return 0


@config_app.command("show")
def config_show() -> int:
    """The effective config after file, environment and defaults, validated. Secrets are not shown."""
    from netcheck.config import load_config

    config = load_config()
    print_json({
        "config_path": str(config.config_path),
        "config_file_exists": config.config_path.exists(),
        "store_path": str(config.store_path),
        "server": config.server,
        "site": config.site,
        "hmac_key": "set" if config.hmac_key else None,
        "secret": "set" if config.secret else None,
        "check": config.check.__dict__,
        "thresholds": {t.name: {"good": t.good, "fair": t.fair} for t in config.thresholds},
        "agent": config.agent.__dict__,
        "store": config.store.__dict__,
        "influx": config.influx.describe() if config.influx else None,
    })
    return 0


@config_app.command("init")
def config_init() -> int:
    """Write a commented config file to edit."""
    from netcheck.config import config_path, write_template
    import os

    path = config_path(os.environ)
    write_template(path)
    print(path)
    return 0


def _is_exit(error: Exception) -> bool:
    """Typer's (or click's) Exit; Typer ≥ 0.24 vendors click, so match by shape, not by class."""
    return type(error).__name__ == "Exit" and isinstance(getattr(error, "exit_code", None), int)


def _is_usage_error(error: Exception) -> bool:
    """A click-style usage error (unknown flag, bad value): exit code 2 and a format_message()."""
    return getattr(error, "exit_code", None) == 2 and callable(getattr(error, "format_message", None))


def main(argv: list[str] | None = None) -> None:
    """Entry point: every outcome is an exit code and, on failure, one line on stderr."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv if argv is not None else sys.argv[1:], prog_name="netcheck",
                              standalone_mode=False)
    except NetcheckError as error:
        print(f"netcheck: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("netcheck: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if _is_exit(error):
            sys.exit(error.exit_code)  # type: ignore[attr-defined]
        if _is_usage_error(error):
            print(f"netcheck: {error.format_message()} (see netcheck --help)", file=sys.stderr)  # type: ignore[attr-defined]
            sys.exit(2)
        print(f"netcheck: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
