"""The therapist's live panel and the session report page (issue 14): `/session/{id}` and
`/session/{id}/report`, and the two JSON calls behind them.

The pages are static files (netcheck/web/panel.*, report.*), served like the check page with the
same Content-Security-Policy; the session's token stays in the URL fragment and reaches the server
only as `Authorization: Bearer`. The panel reads the hub's SSE stream (the contract `netcheck watch`
reads, docs/session-hub.md); besides it:

- `GET /v1/sessions/{id}/report` (therapist token): `session_report.report_to_dict(build_report(...))`
  from what this node has (session_record.py), plus `coverage`: how many events came from where.
- `POST /v1/sessions/{id}/estimate` (therapist token): the end-to-end estimate between the two
  people from each leg's latest `window.figures`, judged by this node's thresholds (the page never
  judges).

docs/in-session.md, "The therapist's panel and the report page".
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from netcheck.errors import StoreError
from netcheck.parse import strict_json
from netcheck.quality import METRICS
from netcheck.quality.end_to_end import end_to_end
from netcheck.server.capacity import Capacity
from netcheck.server.checks import CheckEndpoints
from netcheck.server.hub.routes import SessionHub, hub_disabled, session_claims
from netcheck.server.hub.record import hub_held_events
from netcheck.server.refusal import Refusal, read_body
from netcheck.server.web import CONTENT_TYPES, NO_SUCH_FILE, resolve, static_headers
from netcheck.session.report import build_report, report_to_dict
from netcheck.tokens import LEGS, TokenClaims

SESSION = "{session_id:[A-Za-z0-9._-]{1,128}}"
PANEL_PAGE = "panel.html"
REPORT_PAGE = "report.html"
MAX_ESTIMATE_BODY_BYTES = 16 * 1024
"""Two legs' `figures` (a dozen numbers each), with room to spare."""
NO_STORE = {"Cache-Control": "no-store"}


class SessionPages:
    """The therapist's pages and the report's JSON; register with `routes(app)`."""

    def __init__(self, hub: SessionHub | None, capacity: Capacity, checks: CheckEndpoints | None) -> None:
        self.hub = hub
        """None: no secret, the hub is off."""
        self.capacity = capacity
        """Access (tokens)."""
        self.checks = checks
        """The node's store (the session's checks)."""

    def routes(self, app: web.Application) -> None:
        app.router.add_get(f"/session/{SESSION}", self.panel_page)
        app.router.add_get(f"/session/{SESSION}/report", self.report_page)
        app.router.add_get(f"/v1/sessions/{SESSION}/report", self.report)
        app.router.add_post(f"/v1/sessions/{SESSION}/estimate", self.estimate)

    async def panel_page(self, request: web.Request) -> web.Response:
        return _page(PANEL_PAGE)

    async def report_page(self, request: web.Request) -> web.Response:
        return _page(REPORT_PAGE)

    async def report(self, request: web.Request) -> web.Response:
        """The session's report from the node's store and the hub's held events."""
        claims = self._therapist(request, "read a session's report")
        session_id = claims.session_id
        store = self.checks.store if self.checks is not None else None
        try:
            stored = store.session_events(session_id) if store is not None else []
            checks = store.session_checks(session_id) if store is not None else []
        except StoreError as error:
            raise Refusal(503, "unavailable", f"the session's report could not be read: {error}"[:300]) from None
        held = await hub_held_events(self.hub.backend, session_id, request.transport)
        report = report_to_dict(build_report(session_id, [*stored, *held.events], checks))  # each event once
        report["skipped_rows"] += held.skipped
        report["coverage"] = {"store_events": len(stored), "hub_events": len(held.events),
                              "hub_holds_at_most": self.hub.limits.history_events, "hub_refused": held.refused}
        return web.json_response(report, headers=NO_STORE)

    async def estimate(self, request: web.Request) -> web.Response:
        """`{"client": figures | null, "therapist": figures | null}` → the judged end-to-end figures."""
        self._therapist(request, "ask for a session's estimate")
        body = await _read_json(request)
        legs = {leg: {"window": {"figures": body.get(leg)}} if isinstance(body.get(leg), dict) else None
                for leg in LEGS}
        settings = self.checks.settings if self.checks is not None else None
        thresholds = settings.thresholds if settings is not None else METRICS
        estimate = end_to_end(legs["client"], legs["therapist"], thresholds)
        figures = [{"metric": figure.metric, "label": figure.label, "value": figure.value, "unit": figure.unit,
                    "level": figure.level.value} for figure in estimate.figures()]
        return web.json_response({"figures": figures}, headers=NO_STORE)

    def _therapist(self, request: web.Request, what: str) -> TokenClaims:
        """The claims of a valid therapist token for the URL's session; refusals as the hub words them."""
        if self.hub is None:
            raise hub_disabled()
        claims = session_claims(self.hub.secret, request)
        if claims.role != "therapist":
            raise Refusal(403, "role", f"only a therapist token may {what}")
        return claims


def _page(name: str) -> web.Response:
    path = resolve(name)
    if path is None:
        return NO_SUCH_FILE.response()
    return web.Response(body=path.read_bytes(), headers=static_headers(CONTENT_TYPES["html"]))


async def _read_json(request: web.Request) -> dict[str, Any]:
    """A small JSON object, read within the body time limit; anything else is a 400 (or 413, 408)."""
    try:
        body = strict_json(await read_body(request, MAX_ESTIMATE_BODY_BYTES))
    except ValueError:
        raise Refusal(400, "bad_body", "body is not JSON") from None
    if not isinstance(body, dict):
        raise Refusal(400, "bad_body", 'body must be {"client": {...}, "therapist": {...}}')
    return body
