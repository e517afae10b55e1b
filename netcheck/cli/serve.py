"""`netcheck serve`: the clinic-side server (UDP reflector, HTTP API, pages, session hub).

The options are checked here, before anything binds, each refusal naming its flag; the server
itself (netcheck/server/) is imported only when it starts.
"""

import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from netcheck.cli.common import RelayOnlyFlag, StunOption, TurnOption, TurnUserOption, ice_settings, stop_on_signals
from netcheck.errors import NetcheckError, UsageError

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable

    from netcheck.config import Config
    from netcheck.server.app import RunningServer
    from netcheck.server.hub.redis_backend import RedisBackend


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
    call_origin: Annotated[Optional[list[str]], typer.Option("--call-origin", metavar="ORIGIN", help="The clinic's video page (repeatable), e.g. https://video.example-clinic.org: it may load /web/callstats.js and post its call's statistics (CORS for these origins only).")] = None,
    browser_turn: Annotated[Optional[list[str]], typer.Option("--browser-turn", metavar="URL", help="A TURN server for the browser check's pages (repeatable), e.g. turn:HOST:3478?transport=tcp or turns:HOST:5349?transport=tcp: /v1/info hands each page 10-minute credentials signed with its static-auth-secret (NETCHECK_TURN_SECRET or turn_secret_file, never a flag).")] = None,
) -> int:
    """The clinic-side server: UDP reflector and HTTP API. Prints the bound ports, runs until stopped."""
    import asyncio
    from functools import partial

    from netcheck.config import load_config
    from netcheck.parse import parse_call_origins, parse_hub_url
    from netcheck.server.app import start_server
    from netcheck.server.checks import CheckSettings
    from netcheck.server.turn_credentials import browser_turn as browser_turn_settings

    for name, port in (("--http-port", http_port), ("--udp-port", udp_port)):
        if not 0 <= port <= 65535:
            raise UsageError(f"{name} {port} outside 0..65535")
    if rate_limit_pps <= 0:
        raise UsageError("--rate-limit-pps must be positive")
    tls = tls_from(tls_cert, tls_key)
    config = load_config()
    ice = ice_settings(stun, turn, turn_user, relay_only, config)
    hub_url = parse_hub_url(hub) if hub else config.hub_url
    pages_turn = browser_turn_settings(browser_turn or (), config.turn_secret)
    call_origins = parse_call_origins(call_origin or ())
    check_secret_and_proxy(config, trust_proxy, hub_url, require_token)
    if tls is None and not is_loopback(bind):
        print(f"netcheck: warning: serving plain HTTP on {bind}: the UDP keys{' and tokens' if config.secret else ''} "
              "it hands out cross the network readable; use --tls-cert/--tls-key beyond a trusted LAN",
              file=sys.stderr, flush=True)

    def delivery_event(message: str) -> None:
        print(f"netcheck: {message}", file=sys.stderr, flush=True)

    checks = CheckSettings(config.store_path, config.thresholds, config.site, config.influx, config.store,
                           config.serve, delivery_event)  # browser checks: the same store and outbox
    start = partial(start_server, bind, http_port, udp_port, config.hmac_key, rate_limit_pps, ice, config.secret,
                    tls=tls, require_token=require_token, open_reflector=open_reflector, checks=checks,
                    hub_url=hub_url, hub_password=config.hub_password, trust_proxy=trust_proxy,
                    browser_turn=pages_turn, frame_ancestors=config.serve.frame_ancestors, call_origins=call_origins)
    asyncio.run(run_until_stopped(bind, start, tls is not None, hub_url))
    return 0


def is_loopback(bind: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return bind == "localhost"


def tls_from(tls_cert: Optional[str], tls_key: Optional[str]) -> "ssl.SSLContext | None":
    """The HTTPS context of --tls-cert and --tls-key (None without them); a usage error naming them."""
    import ssl

    from netcheck.server.app import tls_context

    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if not (tls_cert and tls_key):
        return None
    try:
        return tls_context(tls_cert, tls_key)
    except (OSError, ssl.SSLError) as error:
        raise UsageError(f"cannot use --tls-cert/--tls-key: {getattr(error, 'strerror', None) or error}") from None


def check_secret_and_proxy(config: "Config", trust_proxy: Optional[str], hub_url: Optional[str],
                           require_token: bool) -> None:
    """What --trust-proxy, --hub and --require-token need, before anything binds."""
    import ipaddress

    if trust_proxy is not None:
        try:
            ipaddress.ip_network(trust_proxy, strict=False)
        except ValueError:
            raise UsageError(f"--trust-proxy {trust_proxy!r}: not an IP address or network") from None
    if hub_url and not config.secret:
        raise UsageError("--hub needs NETCHECK_SECRET (or secret_file): the session hub checks tokens with it")
    if require_token and not config.secret:
        raise UsageError("--require-token needs NETCHECK_SECRET (or secret_file) to verify the tokens")


async def run_until_stopped(bind: str, start: "Callable[[], Awaitable[RunningServer]]", https: bool,
                            hub_url: Optional[str]) -> None:
    """Start the server, print its bound ports (one line each), and serve until SIGTERM or SIGINT."""
    import asyncio

    try:
        server = await start()
    except OSError as error:
        raise NetcheckError(f"cannot listen on {bind}: {error.strerror or error}") from None
    from netcheck.server.app import settle_collector

    settle_collector()
    host = f"[{bind}]" if ":" in bind else bind
    print(f"{'https' if https else 'http'} {host}:{server.http_port}", flush=True)
    print(f"udp {host}:{server.udp_port}", flush=True)
    if hub_url and server.hub is not None:
        await report_hub_store(hub_url, server.hub.backend)
    stop = asyncio.Event()
    stop_on_signals(stop)
    try:
        await stop.wait()
    finally:
        await server.close()


async def report_hub_store(hub_url: str, backend: "RedisBackend") -> None:
    """One line on stderr: which Redis holds the hub, and whether it answers (serving goes on either way)."""
    from redis.exceptions import RedisError

    try:
        await backend.ping()
        print(f"netcheck: session hub in {hub_url}", file=sys.stderr, flush=True)
    except RedisError as error:
        print(f"netcheck: warning: session hub store {hub_url} does not answer ({error}); posts get 503 "
              "until it does", file=sys.stderr, flush=True)
