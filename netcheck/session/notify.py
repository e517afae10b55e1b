"""Tell the therapist about a warning even when the watch window is behind the video call.

A desktop notification when the platform can show one (desktop-notifier: D-Bus on Linux,
Notification Center on macOS, WinRT on Windows); otherwise the terminal bell and one line on
stderr. A notification is a courtesy on top of the view, so it never raises and never takes
more than about a second.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TextIO

from netcheck.quality.metrics import CUE_WORDS

STALE_AFTER = timedelta(minutes=5)
"""Older warnings are history (the hub replays up to 500 events to a new watcher): the view
shows them, a notification would only startle. Generous, so a skewed clock still notifies."""
NOTIFY_TIMEOUT_S = 1.0
LEG_NAMES = {"client": "client", "therapist": "your connection"}
Delivery = Literal["desktop", "terminal", "skipped"]


def should_notify(event: Mapping[str, Any], now: datetime | None = None) -> bool:
    """A warning raised or cleared recently (an unreadable time counts as recent)."""
    if event.get("type") not in ("warning_raised", "warning_cleared"):
        return False
    try:
        at = datetime.fromisoformat(str(event.get("at")).replace("Z", "+00:00"))
    except ValueError:
        return True
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return (now or datetime.now(timezone.utc)) - at <= STALE_AFTER


def notification_text(event: Mapping[str, Any]) -> tuple[str, str]:
    """(title, message) for a warning event: what is affected, then what happened and what to do."""
    cue = next((words.short for known, words in CUE_WORDS.items() if known.value == event.get("cue")),
               str(event.get("cue")))
    leg = LEG_NAMES.get(str(event.get("leg")), str(event.get("leg")))
    raised = event.get("type") == "warning_raised"
    title = f"Session: {cue} at risk ({leg})" if raised else f"Session: {cue} OK again ({leg})"
    advice = str(event.get("advice") or "")
    return title, str(event.get("message", "")) + (f"\n{advice}" if advice else "")


class Notifier:
    """Desktop notification, else bell + log line. After one failed desktop attempt it stays with the bell."""

    def __init__(self, app_name: str = "netcheck", timeout_s: float = NOTIFY_TIMEOUT_S,
                 stream: TextIO | None = None, desktop: bool = True) -> None:
        self.app_name = app_name
        self.timeout_s = timeout_s
        self.stream = stream
        """None: sys.stderr at the moment of writing (a Rich Live view redirects it above the view)."""
        self._desktop_ok = desktop
        self._desktop: Any = None

    async def notify(self, event: Mapping[str, Any]) -> Delivery:
        """Show one warning_raised / warning_cleared event; returns how it was shown."""
        if event.get("type") not in ("warning_raised", "warning_cleared"):
            return "skipped"
        title, message = notification_text(event)
        raised = event["type"] == "warning_raised"
        if self._desktop_ok and await self._send_desktop(title, message, raised):
            return "desktop"
        self._terminal(event, raised)
        return "terminal"

    async def _send_desktop(self, title: str, message: str, raised: bool) -> bool:
        try:
            notifier = self._desktop or self._make_desktop()
            if notifier is None:
                return False
            from desktop_notifier import Urgency

            dispatched = asyncio.Event()
            await asyncio.wait_for(
                notifier.send(title=title, message=message, urgency=Urgency.Normal if raised else Urgency.Low,
                              on_dispatched=dispatched.set),
                self.timeout_s)
            if dispatched.is_set():  # desktop-notifier logs a failure instead of raising it
                return True
        except Exception:  # noqa: BLE001 - no notification service, timeout, a backend's bug: all mean the bell
            pass
        self._desktop_ok = False
        return False

    def _make_desktop(self) -> Any:
        try:
            # its failures are logged as warnings with tracebacks; the fallback line says enough
            logging.getLogger("desktop_notifier").addHandler(logging.NullHandler())
            from desktop_notifier import DesktopNotifier
            from desktop_notifier.main import get_backend_class
        except ImportError:
            return None
        if get_backend_class().__name__ == "DummyNotificationCenter":  # unsupported platform: shows nothing
            return None
        self._desktop = DesktopNotifier(app_name=self.app_name)
        return self._desktop

    def _terminal(self, event: Mapping[str, Any], raised: bool) -> None:
        stream = self.stream or sys.stderr
        try:
            if raised:  # the bell goes to the terminal itself: Rich's stderr proxy strips control codes
                raw: TextIO = getattr(stream, "rich_proxied_file", stream)
                raw.write("\a")
                raw.flush()
            advice = f" — {event['advice']}" if event.get("advice") else ""
            kind = "warning" if raised else "cleared"
            stream.write(f"netcheck watch: {kind}: {event.get('message', '')}{advice}\n")
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr: nothing left to tell
            pass
