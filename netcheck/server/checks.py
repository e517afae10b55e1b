"""`POST /v1/checks` and `GET /v1/checks/{check_id}`: the browser check's verdict, stored like a CLI check.

The page posts what it measured (netcheck/browser/check_body.py validates it); the server ends the call
it names, adds its own view of the call, the voice channel and the throughput tests, assesses with
the clinic's thresholds (netcheck/browser/check_report.py), stores the check in its local store with its
points (`client=browser`) and, when InfluxDB is configured, delivers them from the same outbox as
the agent does. Posting is bounded: 256 kB, a handful of checks per client per minute, and for
clients without a token a rate for all of them together; only JSON, and only from the node's own
pages or from a program that is no web page (docs/browser-check.md, "Who may post").
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from netcheck.browser.check_body import MAX_BODY_BYTES, BodyError, parse_body
from netcheck.browser.check_report import ServerView, build_check
from netcheck.config import InfluxSettings, ServeLimits, StoreLimits
from netcheck.errors import StoreError
from netcheck.store.points import Origin, Point, report_points
from netcheck.quality import METRICS, Metric
from netcheck.server.access import MeasuringAccess
from netcheck.server.media import MediaPeerHub
from netcheck.server.rate import TokenBuckets, retry_after_s
from netcheck.server.refusal import Refusal, bad_body, busy, read_body
from netcheck.server.throughput import ThroughputEndpoints
from netcheck.store.delivery import Deliverer
from netcheck.store.influx import make_writer
from netcheck.store.local import LocalStore
from netcheck.store.writer import StoreWriter
from netcheck.tokens import LEGS

CHECK_ID = re.compile(r"^[0-9a-f]{32}$")
CHECKS_BURST = ServeLimits.check_burst
CHECK_EVERY_S = ServeLimits.check_every_s
"""A check takes about 30 s: five at once, then one every 20 s per client, is a person pressing
"run again", not a script filling the store (config.ServeLimits; `[serve]` in the config file)."""
ANONYMOUS = "anonymous"
"""The one key of the global bucket that all clients without a token share."""
FROM_TRUSTED_PROXY: Any = (web.RequestKey("from_trusted_proxy", bool) if hasattr(web, "RequestKey")  # aiohttp ≥ 3.14
                           else "netcheck.from_trusted_proxy")
"""Set on a request by `serve --trust-proxy`'s middleware (app.forwarded_for) when the TCP peer is that
proxy: only then are its X-Forwarded-Host and X-Forwarded-Proto the page's own origin."""
MAX_RATE_CLIENTS = 4096


@dataclass(frozen=True)
class CheckSettings:
    """Where the server keeps browser checks and how it judges them (`netcheck serve`: from the config)."""

    store_path: Path
    thresholds: tuple[Metric, ...] = METRICS
    site: str | None = None
    influx: InfluxSettings | None = None
    """None: points stay in the store."""
    limits: StoreLimits = StoreLimits()
    """The store's bounds (the config's `[store]`): every write prunes within them."""
    rates: ServeLimits = ServeLimits()
    """How many checks a client, and all clients without a token together, may post (`[serve]`)."""
    on_event: Callable[[str], None] = field(default=lambda message: None, repr=False)
    """Told, in one sentence, about delivery (InfluxDB unreachable, back again)."""


SESSION_EVENTS_WRITE_S = 1.0
"""How often the hub's accepted events are written to the node's store: at most a second is lost in a crash."""
SESSION_EVENTS_BUFFERED = 20_000
"""Events waiting for that write, at most: 1,000 sessions post ≈ 400 events a second. The store keeps
them within the config's `max_session_events` and `session_events_retention_days` (StoreLimits);
InfluxDB, not the node, is the platform's record."""


class CheckEndpoints:
    def __init__(self, settings: CheckSettings | None, access: MeasuringAccess, media: MediaPeerHub,
                 throughput: ThroughputEndpoints) -> None:
        self.settings = settings
        self.access = access
        self.media = media
        self.throughput = throughput
        rates = settings.rates if settings is not None else ServeLimits()
        self.rate = TokenBuckets(1.0 / rates.check_every_s, rates.check_burst, MAX_RATE_CLIENTS)
        self.anonymous_rate = TokenBuckets(1.0 / rates.anonymous_check_every_s, rates.anonymous_check_burst, 1)
        self.store: LocalStore | None = None
        """The loop's connection: reads only (in WAL mode they never wait for the writer)."""
        self.writer: StoreWriter | None = None
        """Every write, in a thread of its own with its own connection (store/writer.py): no commit stalls the loop."""
        self.agent_id = ""
        """The store's installation id, read once at open (making it is a write)."""
        self._writes: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._delivery: asyncio.Task | None = None
        self._deliverer: Deliverer | None = None
        self._session_events: list[dict[str, Any]] = []
        self._session_event_writer: asyncio.Task | None = None
        self.session_events_dropped = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/checks", self.post_check)
        app.router.add_get("/v1/checks/{check_id}", self.get_check)

    def open(self) -> None:
        """Open the store and start delivering (when InfluxDB is configured); StoreError when it cannot."""
        if self.settings is None:
            return
        self.store = LocalStore(self.settings.store_path, limits=self.settings.limits)
        self.agent_id = self.store.agent_id()
        self.writer = StoreWriter(self.settings.store_path, self.settings.limits)
        self._session_event_writer = asyncio.ensure_future(self._write_session_events())
        if self.settings.influx is not None:
            self._deliverer = Deliverer(self.store, make_writer(self.settings.influx), self.settings.influx.batch_size,
                                        self.settings.on_event, retry_max_s=self.settings.influx.retry_max_s,
                                        store_writer=self.writer)
            self._delivery = asyncio.ensure_future(self._deliverer.run(self._wake, self._stop))

    def record_session_events(self, events: list[dict[str, Any]]) -> None:
        """Keep a session's events for its report; written in one transaction a second (a post's
        fsync each would cost the hub its capacity). Bounded: beyond SESSION_EVENTS_BUFFERED the
        oldest waiting ones are dropped and counted."""
        if self.store is None:
            return
        self._session_events.extend(events)
        overflow = len(self._session_events) - SESSION_EVENTS_BUFFERED
        if overflow > 0:
            del self._session_events[:overflow]
            self.session_events_dropped += overflow

    async def _write_session_events(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), SESSION_EVENTS_WRITE_S)
            except asyncio.TimeoutError:
                pass
            await self._flush_session_events()

    async def _flush_session_events(self) -> None:
        if self.writer is None or not self._session_events:
            return
        events, self._session_events = self._session_events, []
        try:  # pruned to the store's bounds in the same write
            await self.writer.write(lambda store: store.add_session_events(events))
        except StoreError as error:
            self.session_events_dropped += len(events)
            if self.settings is not None:
                self.settings.on_event(f"session events could not be stored: {error}")

    @property
    def delivers(self) -> bool:
        """True when stored points go on to InfluxDB."""
        return self._deliverer is not None

    def store_points(self, points: list[Point]) -> None:
        """Points of no check (the node's own metrics, a tab's window) into the outbox, delivered with
        the checks'; written by the writer thread, the caller does not wait."""
        if self.writer is None:
            return
        task = asyncio.ensure_future(self._store_points(points))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _store_points(self, points: list[Point]) -> None:
        assert self.writer is not None
        try:
            await self.writer.write(lambda store: store.add_points(points))
        except StoreError as error:
            if self.settings is not None:
                self.settings.on_event(f"the node's metrics could not be stored: {error}")
            return
        self._wake.set()

    async def close(self) -> None:
        self._stop.set()
        if self._session_event_writer is not None:
            await asyncio.gather(self._session_event_writer, return_exceptions=True)  # its last write included
            self._session_event_writer = None
        await asyncio.gather(*self._writes, return_exceptions=True)
        if self._delivery is not None:
            try:
                await asyncio.wait_for(self._delivery, 5.0)
            except asyncio.TimeoutError:
                self._delivery.cancel()
            self._deliverer.close()
            self._delivery = None
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)  # after the writes already asked for
            self.writer = None
        if self.store is not None:
            self.store.close()
            self.store = None

    async def post_check(self, request: web.Request) -> web.Response:
        caller = self.access.caller(request)  # 401 first: a refused caller costs nothing
        refuse_foreign_post(request)
        if self.store is None or self.writer is None:
            raise Refusal(503, "no_store", "this server keeps no checks (it was started without a store)")
        try:
            body = parse_body(await read_body(request, MAX_BODY_BYTES))
        except BodyError as error:
            raise bad_body(error) from None
        wait_s = self.rate.take(caller.client, time.monotonic())  # only a check that would be stored takes from the rate
        if wait_s:
            raise busy(retry_after_s(wait_s), "too many checks from this client", "rate")
        # Everyone's rate after the client's own, so that a client refused its share takes nothing from it.
        wait_s = self.anonymous_rate.take(ANONYMOUS, time.monotonic()) if caller.claims is None else 0.0
        if wait_s:
            raise busy(retry_after_s(wait_s), "too many checks without a check link", "rate")
        call = voice = None
        age_s = 0.0
        if body["av_session_id"] is not None:
            finished = await self.media.finish(body["av_session_id"], caller.client)
            if finished is None:
                raise Refusal(400, "bad_body", "av_session_id: no call of yours with this id (ended, expired, "
                                               "or started by another client)", field="av_session_id")
            call, voice, age_s = finished.view, finished.voice, finished.age_s
        tp = body["throughput"] or {}
        view = ServerView(
            call=call,
            voice_arrivals={a.seq: (a.server_recv_ms, a.server_send_ms) for a in voice.arrivals} if voice else None,
            upload=self._upload(tp.get("upload_test_id")), download=self._download(tp.get("download_test_id")),
            short_of_cpu=self.media.cpu.during(time.monotonic() - age_s).short_of_cpu
            if call is not None and self.media.cpu is not None else None,
        )
        claims = caller.claims
        # a leg's token attaches the check to its session; a `check` token only measures
        session_id = claims.session_id if claims is not None and claims.role in LEGS else None
        now = datetime.now(timezone.utc)
        started_at = (now - timedelta(seconds=age_s)).isoformat(timespec="milliseconds")
        check = build_check(body, view, uuid.uuid4().hex, started_at, round(age_s, 3), _server_url(request),
                            session_id, self.settings.thresholds if self.settings else METRICS)
        origin = Origin(agent=self.agent_id, kind="check",
                        role=claims.role if claims is not None and claims.role in LEGS else "client",
                        site=self.settings.site if self.settings else None,
                        server=_server_url(request).split("://", 1)[1], session_id=session_id,
                        check_id=check.report["check_id"], client="browser")
        time_ms = int((now - timedelta(seconds=age_s)).timestamp() * 1000)
        points = report_points(check.measurements, check.assessment, origin, time_ms)
        try:  # in the writer thread: the loop measures on while the commit waits for the disk
            await self.writer.write(lambda store: store.save_check(check.report, points))
        except StoreError as error:
            raise Refusal(503, "unavailable", f"the check could not be stored: {error}"[:300]) from None
        self._wake.set()
        return web.json_response(check.report, status=201, headers={"Cache-Control": "no-store"})

    async def get_check(self, request: web.Request) -> web.Response:
        self.access.caller(request)
        check_id = request.match_info["check_id"]
        if self.store is None:
            raise Refusal(503, "no_store", "this server keeps no checks (it was started without a store)")
        report = self.store.get_check(check_id) if CHECK_ID.match(check_id) else None
        if report is None or report.get("client") != "browser":
            raise Refusal(404, "not_found", "no such check")
        return web.json_response(report, headers={"Cache-Control": "no-store"})

    def _upload(self, test_id: str | None) -> tuple[list[tuple[float, int]], int] | None:
        record = self.throughput.uploaded.get(test_id) if test_id else None
        return (list(record.samples), record.total_bytes) if record is not None else None

    def _download(self, test_id: str | None) -> tuple[list[tuple[float, int]], int] | None:
        record = self.throughput.downloaded.get(test_id) if test_id else None
        return (list(record.samples), record.total_bytes()) if record is not None else None


def refuse_foreign_post(request: web.Request) -> None:
    """Refuses (403) a post a web page of another origin sent, and (415) one not declared JSON.

    A browser lets any page post a "simple" request (`text/plain`, no preflight) to any address, so
    without this every visitor of a hostile page would post checks from their own address. Browsers
    send `Origin` with every POST and a page cannot forge it: the node's own page sends the node's
    origin (scheme and Host, or behind `--trust-proxy` the proxy's X-Forwarded-Proto and -Host); a
    program that is no web page (the CLI, curl, a test) sends none and is let through, within the rates.
    """
    origin = request.headers.get("Origin")
    own = _origin_key(own_origin(request))
    if origin is not None and (own is None or _origin_key(origin) != own):
        raise Refusal(403, "foreign_origin", "checks are taken from this server's own page only")
    if request.content_type != "application/json":
        raise Refusal(415, "content_type", "the body must be JSON (Content-Type: application/json)")


def own_origin(request: web.Request) -> str:
    """This node's origin as the requesting page sees it: `scheme://host[:port]`. Behind a trusted proxy,
    the last X-Forwarded-Proto and X-Forwarded-Host the proxy set (it may terminate TLS and rename)."""
    scheme, host = ("https" if request.secure else "http"), request.host
    if request.get(FROM_TRUSTED_PROXY):
        proto = _last_entry(request.headers.getall("X-Forwarded-Proto", []))
        scheme = proto.lower() if proto and proto.lower() in ("http", "https") else scheme
        host = _last_entry(request.headers.getall("X-Forwarded-Host", [])) or host
    return f"{scheme}://{host}"


def _last_entry(headers: list[str]) -> str | None:
    """The value the trusted proxy appended: the last entry of the last header."""
    if not headers:
        return None
    return headers[-1].rsplit(",", 1)[-1].strip() or None


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the scheme's default port filled in; None for `null` or a malformed origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query or parts.username:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def _server_url(request: web.Request) -> str:
    """This server as the check's `server`: the address the connection came in on, not the Host header
    (which the client chooses, and which would become an InfluxDB tag)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    host, port = (sockname[0], sockname[1]) if sockname else ("unknown", 0)
    host = f"[{host}]" if ":" in str(host) else host
    return f"{'https' if request.secure else 'http'}://{host}:{port}"
