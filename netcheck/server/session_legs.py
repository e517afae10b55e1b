"""The client's leg of a session measured from an open browser tab (issue 14): `/session/{id}/client`.

Skeleton: the routes are added by the issue-14 work (docs/in-session.md). The server keeps one peer
connection per open client tab, measures the leg on it (the data-channel probe at the agent's
light rate, its own view of the upstream, the page's posted getStats), assesses each window with the
same quality model and publishes it into the session hub as the client's leg, exactly as the CLI
agent's windows are published.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


class ClientLegs:
    """The client tab's endpoints; register with `routes(app)`."""

    def __init__(self, hub: Any | None, media: Any, capacity: Any, checks: Any) -> None:
        self.hub = hub
        """server.hub.SessionHub (None: no secret, the hub is off)."""
        self.media = media
        """server.media.MediaPeerHub."""
        self.capacity = capacity
        """server.app.Capacity: access (tokens), fair shares, CPU."""
        self.checks = checks
        """server.checks.CheckEndpoints: the node's store (session events, points)."""

    def routes(self, app: web.Application) -> None:
        """No routes yet."""

    async def close(self) -> None:
        """Close every open tab's peer connection (the server is stopping)."""
