"""What the command modules share: option types, consoles, JSON output, the server URL, ICE settings.

Imported by every command module while `netcheck --help` parses, so it imports nothing heavier
than Typer at module level (no asyncio, json or Rich).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from netcheck.errors import UsageError
from netcheck.parse import parse_server_url

if TYPE_CHECKING:  # types only: these modules are imported where the commands run
    import asyncio

    from rich.console import Console

    from netcheck.av.peer import IceSettings
    from netcheck.config import Config
    from netcheck.store.local import LocalStore

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of tables.")]
StunOption = Annotated[Optional[str], typer.Option("--stun", help="STUN server, stun:HOST:PORT.")]
TurnOption = Annotated[Optional[str], typer.Option("--turn", help="TURN server, turn:HOST:PORT[?transport=tcp] or turns:HOST:PORT.")]
TurnUserOption = Annotated[Optional[str], typer.Option(
    "--turn-user", help="TURN user name (its password: NETCHECK_TURN_PASSWORD or turn_password_file, never a flag).")]
RelayOnlyFlag = Annotated[bool, typer.Option("--relay-only", help="Use only TURN-relayed ICE candidates.")]


def ice_settings(stun: str | None, turn: str | None, turn_user: str | None, relay_only: bool,
                 config: Config) -> IceSettings:
    """STUN/TURN from the flags; the TURN password from the environment or a 0600 file (config)."""
    from netcheck.av.peer import IceSettings

    ice = IceSettings(stun, turn, turn_user, config.turn_password, relay_only)
    ice.validate()
    return ice


def note_busy(message: str) -> None:
    """While the clinic's server is busy and a probe waits: one line on stderr, then it retries."""
    import sys

    print(f"netcheck: {message}", file=sys.stderr, flush=True)


def stdout_console() -> Console:
    from rich.console import Console

    return Console()


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def print_json(data: Any) -> None:
    import json

    print(json.dumps(data, indent=2, ensure_ascii=False))


def server_url_from(server: str | None, config: Config, required: bool = True) -> str | None:
    """--server, else NETCHECK_SERVER or the config's `server` (config.server already holds both)."""
    url = parse_server_url(server) if server else config.server
    if required and not url:
        raise UsageError("no server: pass --server URL, set NETCHECK_SERVER or `server` in the config")
    return url


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set `stop` (the command finishes what it is doing and exits 0); a second
    signal exits at once with 130. Where the OS has no such handlers (Windows), Ctrl-C still ends it."""
    import asyncio
    import os
    import signal

    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        if stop.is_set():
            os._exit(130)  # the user insists; what was finished is already stored
        stop.set()

    for signal_number in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signal_number, request_stop)
        except (NotImplementedError, RuntimeError):
            pass


def open_store(config: Config) -> LocalStore:
    """The local store as configured; says so on stderr when a corrupted file had to be moved aside."""
    import sys

    from netcheck.store.local import LocalStore

    store = LocalStore(config.store_path, limits=config.store)
    if store.moved_aside is not None:
        print(f"netcheck: warning: the local store was not a readable database; kept as {store.moved_aside}, "
              "a fresh one was made", file=sys.stderr)
    return store
