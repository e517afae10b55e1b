"""The therapist's live panel and the session report page (issue 14): `/session/{id}` and
`/session/{id}/report`.

Skeleton: the routes are added by the issue-14 work (docs/in-session.md). The panel reads the session
hub's SSE stream (the same contract `netcheck watch` reads); the report page reads the session's
report (the same `session_report.build_report` as `netcheck session report`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


class SessionPages:
    """The therapist's pages and the report's JSON; register with `routes(app)`."""

    def __init__(self, hub: Any | None, capacity: Any, checks: Any) -> None:
        self.hub = hub
        """server.hub.SessionHub (None: no secret, the hub is off)."""
        self.capacity = capacity
        """server.app.Capacity: access (tokens)."""
        self.checks = checks
        """server.checks.CheckEndpoints: the node's store (the session's checks)."""

    def routes(self, app: web.Application) -> None:
        """No routes yet."""
