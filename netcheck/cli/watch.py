"""`netcheck watch`: a therapist's live view of both legs of a session, from the session hub.

Thin, like cli.py: resolve the server and token, follow the hub (netcheck/session/watch.py), store
every event, show it (Rich live view or JSON lines) and notify (netcheck/session/notify.py).
"""

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from netcheck.cli.common import open_store, server_url_from, stdout_console, stop_on_signals
from netcheck.errors import StoreError, UsageError

if TYPE_CHECKING:  # asyncio, the config and the store are imported where they run: `netcheck --help` needs none
    import asyncio

    from netcheck.config import Config
    from netcheck.store.local import LocalStore

VIEW_TICK_S = 1.0
"""The view redraws at least this often, so the age of the last event stays true."""
STORE_EVERY_S = 0.5
"""Events are stored in batches: one fsynced commit per event would stall a 500-event replay."""
NOTIFY_DRAIN_S = 1.5


def watch(
    session: Annotated[str, typer.Option(help="The session to watch: the id your therapist token was made for.")],
    server: Annotated[Optional[str], typer.Option(help="The clinic's netcheck server URL (else config or NETCHECK_SERVER).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print each event as one JSON line instead of the live view.")] = False,
    no_notify: Annotated[bool, typer.Option("--no-notify", help="No desktop notifications (nor the bell and warning lines that replace them).")] = False,
) -> int:
    """Live in-call view of both legs: cue levels, the estimate between you, warnings with advice."""
    import asyncio

    from netcheck.config import load_config
    from netcheck.session.watch import check_watch_args

    config = load_config()
    server_url = server_url_from(server, config) or ""
    token = config.token or ""
    if not token:
        raise UsageError("no token: set NETCHECK_TOKEN to a therapist token (`netcheck token create --role therapist`)")
    check_watch_args(session, token)
    asyncio.run(_run(config, server_url, session, token, json_output, no_notify))
    return 0


async def _run(config: "Config", server_url: str, session: str, token: str, json_output: bool, no_notify: bool) -> None:
    import asyncio
    import json

    from rich.live import Live

    from netcheck.session.notify import Notifier, should_notify
    from netcheck.cli.render_watch import render_watch
    from netcheck.session.watch import ConnectionStatus, Event, WatchState, follow_events

    stop = asyncio.Event()
    stop_on_signals(stop)
    state = WatchState()
    status = [ConnectionStatus("connecting")]
    notifier = None if no_notify else Notifier()
    notifications: set[asyncio.Task[Any]] = set()
    live: Live | None = None

    def on_event(event: Event) -> None:
        store.add(event)
        state.apply(event)
        if json_output:
            _print_line(json.dumps(event, separators=(",", ":")), stop)
        elif live is not None:
            live.refresh()
        if notifier is not None and should_notify(event):
            task = asyncio.ensure_future(notifier.notify(event))
            notifications.add(task)
            task.add_done_callback(notifications.discard)

    def on_status(new: ConnectionStatus) -> None:
        if json_output and new.retry_in_s is not None:
            print(f"netcheck watch: reconnecting in {new.retry_in_s:g} s ({new.detail})", file=sys.stderr, flush=True)
        elif json_output and new.state == "connected" and status[0].state != "connecting":
            print("netcheck watch: connected again", file=sys.stderr, flush=True)
        status[0] = new
        if live is not None:
            live.refresh()

    with _EventStore(config) as store:
        storing = asyncio.ensure_future(_every(STORE_EVERY_S, store.flush))
        try:
            if json_output:
                await follow_events(server_url, session, token, on_event, stop, on_status)
                return
            # auto_refresh off: Rich would redraw from its own thread while events change the state
            live = Live(get_renderable=lambda: render_watch(state, status[0], session, config.thresholds),
                        console=stdout_console(), auto_refresh=False, screen=False, redirect_stderr=True)
            with live:
                ticker = asyncio.ensure_future(_every(VIEW_TICK_S, live.refresh))
                try:
                    await follow_events(server_url, session, token, on_event, stop, on_status)
                finally:
                    ticker.cancel()
        finally:
            storing.cancel()
            store.flush()
            if notifications:  # each is bounded by its own timeout; this only lets the last ones finish
                await asyncio.wait(notifications, timeout=NOTIFY_DRAIN_S)


async def _every(interval_s: float, action: Callable[[], None]) -> None:
    import asyncio

    while True:
        await asyncio.sleep(interval_s)
        action()


def _print_line(line: str, stop: "asyncio.Event") -> None:
    """One JSON line, flushed; a reader that went away (`| head`) ends the watch quietly."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        stop.set()


class _EventStore:
    """The local store for received events; a broken store is said once and never ends the watch."""

    def __init__(self, config: "Config") -> None:
        self.config = config
        self.store: "LocalStore | None" = None
        self.pending: list[dict[str, Any]] = []
        self.warned = False

    def __enter__(self) -> "_EventStore":
        try:
            self.store = open_store(self.config)  # says so if a corrupted store had to be moved aside
        except StoreError as error:
            self._warn(error)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.store is not None:
            self.store.close()

    def add(self, event: dict[str, Any]) -> None:
        if self.store is not None:
            self.pending.append(event)

    def flush(self) -> None:
        events, self.pending = self.pending, []
        if not events:
            return
        try:
            self.store.add_session_events(events)
        except StoreError as error:
            self._warn(error)

    def _warn(self, error: StoreError) -> None:
        if not self.warned:
            print(f"netcheck watch: warning: events not saved: {error}", file=sys.stderr, flush=True)
            self.warned = True


