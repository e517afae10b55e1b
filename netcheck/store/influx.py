"""InfluxDB writers: line protocol, the v2 write API (influxdb-client) and the v1 `/write` API.

This is the only module that knows line protocol. Writers are synchronous and send one batch per
call; they never retry and never buffer: the outbox (store/outbox.py) and delivery.py decide what
is sent, when, and what counts as delivered. influxdb-client's batching writer is not used: it
loses points on exit and after its retries run out (influxdb-client-python #165, #394, #504).
"""

from __future__ import annotations

import base64
import gzip
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Protocol

from netcheck.config import InfluxSettings
from netcheck.store.points import Point

MAX_ERROR_CHARS = 300
RETRYABLE_STATUSES = frozenset({408, 425, 429})
"""4xx answers that mean "not now" rather than "never": retried like 5xx."""
SPLITTABLE_STATUSES = frozenset({400, 413, 422})
"""The batch itself was refused (a bad line, too large): split it to find and set aside the culprit."""


class WriteError(Exception):
    """A batch was not acknowledged. `status` is the HTTP status, or None for network errors."""

    def __init__(self, message: str, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        """Network errors, timeouts, 5xx, 429: the same batch may succeed later."""
        return self.status is None or self.status >= 500 or self.status in RETRYABLE_STATUSES

    @property
    def batch_refused(self) -> bool:
        """The server refused this batch's content; other batches may be fine."""
        return self.status in SPLITTABLE_STATUSES


class Writer(Protocol):
    """Sends one batch of line-protocol lines; returns only when the server acknowledged it."""

    target: str
    """Where points go, for messages (URL and bucket or database; no secrets)."""

    def write(self, lines: Sequence[str]) -> None: ...

    def close(self) -> None: ...


def make_writer(settings: InfluxSettings) -> Writer:
    return V2Writer(settings) if settings.api == "v2" else V1Writer(settings)


# --- line protocol --------------------------------------------------------------------------


def to_line(point: Point) -> str | None:
    """One point in line protocol with a millisecond timestamp; None when no field is writable."""
    fields = ",".join(
        f"{_escape_key(name)}={encoded}"
        for name, value in sorted(point.fields.items())
        if (encoded := _field_value(value)) is not None
    )
    if not fields:
        return None
    tags = "".join(f",{_escape_key(key)}={_escape_key(value)}" for key, value in sorted(point.tags.items()) if value)
    measurement = point.measurement.replace(",", r"\,").replace(" ", r"\ ")
    return f"{measurement}{tags} {fields} {point.time_ms}"


def _escape_key(text: str) -> str:
    """Tag keys, tag values and field keys: commas, equals signs and spaces are escaped; newlines cannot be."""
    text = text.replace("\n", " ").replace("\r", " ")
    return text.replace("\\", "\\\\").replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _field_value(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None  # line protocol has no NaN or infinity
    if isinstance(value, str):
        text = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")
        return f'"{text}"'
    return None


# --- writers --------------------------------------------------------------------------------


class V1Writer:
    """InfluxDB 1.x `/write`: database, retention policy, basic auth; gzip; ms precision."""

    def __init__(self, settings: InfluxSettings) -> None:
        query = {"db": settings.database or "", "precision": "ms"}
        if settings.retention_policy:
            query["rp"] = settings.retention_policy
        self.url = f"{settings.url}/write?{urllib.parse.urlencode(query)}"
        self.target = f"{settings.url} database {settings.database}"
        self.timeout_s = settings.timeout_s
        self.headers = {"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip"}
        if settings.username:
            credentials = f"{settings.username}:{settings.password or ''}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()

    def write(self, lines: Sequence[str]) -> None:
        body = gzip.compress("\n".join(lines).encode(), compresslevel=5)
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read(MAX_ERROR_CHARS)
        except urllib.error.HTTPError as error:
            text = error.read(MAX_ERROR_CHARS).decode(errors="replace")
            raise WriteError(_http_message(error.code, text), error.code,
                             _retry_after_s(error.headers.get("Retry-After"))) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise WriteError(f"cannot reach {self.target}: {reason}") from None

    def close(self) -> None:
        pass


class V2Writer:
    """The v2 write API (InfluxDB 2.x, 3.x, 1.8+, VictoriaMetrics) through influxdb-client, synchronously."""

    def __init__(self, settings: InfluxSettings) -> None:
        from influxdb_client import InfluxDBClient, WritePrecision  # ≈ 210 ms and 35 MB: only when writing
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.target = f"{settings.url} bucket {settings.bucket}"
        self.bucket = settings.bucket or ""
        self.org = settings.org or ""
        self.precision = WritePrecision.MS
        self.client = InfluxDBClient(url=settings.url, token=settings.token or "", org=self.org,
                                     timeout=int(settings.timeout_s * 1000), enable_gzip=True, retries=False)
        self.api = self.client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: Sequence[str]) -> None:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            self.api.write(bucket=self.bucket, org=self.org, record="\n".join(lines), write_precision=self.precision)
        except ApiException as error:
            body = error.body.decode(errors="replace") if isinstance(error.body, bytes) else str(error.body or "")
            headers = error.headers or {}
            raise WriteError(_http_message(error.status or 0, body[:MAX_ERROR_CHARS]), error.status,
                             _retry_after_s(headers.get("Retry-After"))) from None
        except (Urllib3Error, OSError) as error:
            raise WriteError(f"cannot reach {self.target}: {type(error).__name__}") from None

    def close(self) -> None:
        self.api.close()
        self.client.close()


def _http_message(status: int, body: str) -> str:
    hint = {
        401: "the credentials were refused (token, or user and password)",
        403: "the credentials may not write there",
        404: "no such bucket or database",
        413: "batch too large",
    }.get(status, "")
    detail = " ".join(body.split())[:MAX_ERROR_CHARS]
    return f"HTTP {status}" + (f": {hint}" if hint else "") + (f" ({detail})" if detail else "")


def _retry_after_s(header: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored); bounded to an hour."""
    try:
        return min(3600.0, max(0.0, float(header))) if header else None
    except ValueError:
        return None
