"""A FAKE for fault injection: a small HTTP/1.1 reverse proxy that can answer 503/500/429 on demand.

A real InfluxDB or VictoriaMetrics cannot be made to return "503, then 503, then work" when a test
wants it, so tests put this proxy between the code under test and the real server:

    with InfluxDB1() as influx, HttpFaultProxy(influx.url) as proxy:
        proxy.fail_next(2, 503)                        # then forwards again
        ... the code under test writes to proxy.url instead of influx.url ...
        assert [r.status for r in proxy.requests] == [503, 503, 204]
        assert proxy.forwarded_count == 1
        assert influx.count("netcheck_probe") == 1     # the real server saw exactly one write

Everything the proxy does NOT fake is real: a forwarded request goes to the target with the same
method, path and query, headers (Host rewritten to the target's) and body bytes (a gzip body stays
gzip, untouched; a chunked body is de-chunked and sent with a Content-Length), and the target's
status, headers and body come back unchanged. An injected fault is answered by the proxy itself and
never reaches the target. If the target is unreachable (say it was stopped to simulate an outage),
or does not answer within `timeout_s`, the proxy answers 502 itself, so a client behind it sees a
502, not a refused connection or a timeout.

It listens on 127.0.0.1 only, on a free port (`url`), one thread per connection, keep-alive on.
`requests` records (method, path_with_query, status_returned) for every request, faulted or not, in
arrival order; it is recorded before the response is sent, so it is complete once the client has
its answer. With `keep_bodies=True`, `exchanges` also keeps each request's body as received (still
gzip if it was sent gzip; `decoded_body()` undoes that): a recording proxy, to count what a client
wrote and how often.
"""

from __future__ import annotations

import gzip
import http.client
import http.server
import threading
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

HOST = "127.0.0.1"
DEFAULT_FAULT_BODY = b'{"code":"unavailable","message":"fault injected"}'
# Per-connection headers that a proxy must not pass on (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "proxy-connection"})


class ProxiedRequest(NamedTuple):
    """One request the proxy answered: compares equal to a plain (method, path, status) tuple."""

    method: str
    path: str
    status: int


class RecordedExchange(NamedTuple):
    """One request with its body, kept when the proxy was made with `keep_bodies=True`."""

    method: str
    path: str
    status: int
    forwarded: bool
    """The target answered it (not a fault, not a 502 of the proxy's own)."""
    content_encoding: str
    body: bytes

    def decoded_body(self) -> bytes:
        return gzip.decompress(self.body) if "gzip" in self.content_encoding.lower() else self.body


@dataclass(frozen=True)
class Fault:
    """A response the proxy gives instead of forwarding."""

    status: int
    body: bytes = DEFAULT_FAULT_BODY
    headers: dict[str, str] = field(default_factory=dict)


class HttpFaultProxy:
    """A reverse proxy in front of `target_url` that injects programmed HTTP errors; a context manager."""

    def __init__(self, target_url: str, timeout_s: float = 10.0, keep_bodies: bool = False) -> None:
        target = urllib.parse.urlsplit(target_url)
        if target.scheme != "http" or not target.hostname:
            raise ValueError(f"target_url must be http://host:port[/prefix], not {target_url!r}")
        self.target_url = target_url
        self.target_host = target.hostname
        self.target_port = target.port or 80
        self.target_prefix = target.path.rstrip("/")
        self.timeout_s = timeout_s
        self.host = HOST
        self.port = 0
        self._lock = threading.Lock()
        self._pending: deque[Fault] = deque()
        self._always: Fault | None = None
        self._requests: list[ProxiedRequest] = []
        self.keep_bodies = keep_bodies
        self._exchanges: list[RecordedExchange] = []
        self._holding = False
        self._held = 0
        self._release = threading.Event()
        self._forwarded = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- public ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[ProxiedRequest]:
        """A snapshot of every request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def exchanges(self) -> list[RecordedExchange]:
        """A snapshot of every request with its body, in arrival order (only with keep_bodies=True)."""
        with self._lock:
            return list(self._exchanges)

    @property
    def forwarded_count(self) -> int:
        """How many requests the target answered (not faults, not 502s for an unreachable target)."""
        with self._lock:
            return self._forwarded

    def fail_next(self, count: int, status: int, body: bytes = DEFAULT_FAULT_BODY,
                  headers: dict[str, str] | None = None) -> None:
        """Answer the next `count` requests with `status` (queued after faults already programmed)."""
        fault = Fault(status, body, dict(headers or {}))
        with self._lock:
            self._pending.extend([fault] * count)

    def fail_always(self, status: int, body: bytes = DEFAULT_FAULT_BODY,
                    headers: dict[str, str] | None = None) -> None:
        """Answer every request with `status` until `heal()` (queued `fail_next` faults come first)."""
        with self._lock:
            self._always = Fault(status, body, dict(headers or {}))

    def hold_responses(self) -> None:
        """From now on, forward each request and record the target's answer, but keep the answer
        from the client until `release()`: the state of a client killed after the server stored its
        write and before it saw the acknowledgement."""
        with self._lock:
            self._release.clear()
            self._holding = True

    @property
    def held_count(self) -> int:
        """Answers held back so far by `hold_responses()`."""
        with self._lock:
            return self._held

    def release(self) -> None:
        """Send the held answers (to clients still listening) and stop holding."""
        with self._lock:
            self._holding = False
        self._release.set()

    def heal(self) -> None:
        """Forget every programmed fault: forward everything from now on."""
        with self._lock:
            self._pending.clear()
            self._always = None

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = http.server.ThreadingHTTPServer((HOST, 0), _make_handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # A short poll interval: close() waits for it, and tests open many proxies.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"HttpFaultProxy:{self.port}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> HttpFaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- used by the handler -----------------------------------------------------------------

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self._pending:
                return self._pending.popleft()
            return self._always

    def _record(self, method: str, path: str, status: int, forwarded: bool,
                content_encoding: str = "", body: bytes | None = None) -> None:
        with self._lock:
            self._requests.append(ProxiedRequest(method, path, status))
            self._forwarded += forwarded
            if self.keep_bodies:
                self._exchanges.append(RecordedExchange(method, path, status, forwarded, content_encoding,
                                                        body or b""))

    def _hold_if_asked(self) -> None:
        with self._lock:
            if not self._holding:
                return
            self._held += 1
        self._release.wait(timeout=60)

    def _forward(self, method: str, path: str, headers: list[tuple[str, str]],
                 body: bytes | None) -> tuple[int, str, list[tuple[str, str]], bytes, bool]:
        """Send the request to the target: (status, reason, headers, body, target_answered); when the
        target cannot be reached or stays silent past `timeout_s`, a 502 of our own with
        target_answered False (after a timeout the target may still have acted on the request)."""
        conn = http.client.HTTPConnection(self.target_host, self.target_port, timeout=self.timeout_s)
        try:
            conn.putrequest(method, self.target_prefix + path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", f"{self.target_host}:{self.target_port}")
            for name, value in headers:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()  # http.client undoes chunking only; Content-Encoding stays as is
            return response.status, response.reason, response.getheaders(), data, True
        except (OSError, http.client.HTTPException) as exc:
            message = f'{{"code":"bad_gateway","message":"HttpFaultProxy: target unreachable: {type(exc).__name__}"}}'
            return 502, "Bad Gateway", [("Content-Type", "application/json")], message.encode(), False
        finally:
            conn.close()


def _make_handler(proxy: HttpFaultProxy) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real servers; every answer has a length
        timeout = 30  # seconds an idle keep-alive connection may hold its thread

        def _handle(self) -> None:
            body = self._read_body()
            fault = proxy._next_fault()
            if fault is not None:
                proxy._record(self.command, self.path, fault.status, False,
                              self.headers.get("Content-Encoding", ""), body)
                headers = {"Content-Type": "application/json", **fault.headers}
                self._respond(fault.status, None, list(headers.items()), fault.body)
                return
            headers = [(name, value) for name, value in self.headers.items()
                       if name.lower() not in HOP_BY_HOP and name.lower() not in ("host", "content-length")]
            status, reason, response_headers, data, answered = proxy._forward(self.command, self.path,
                                                                              headers, body)
            proxy._record(self.command, self.path, status, answered, self.headers.get("Content-Encoding", ""), body)
            proxy._hold_if_asked()
            try:
                self._respond(status, reason, response_headers, data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client is gone (killed while its answer was held)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

        def _read_body(self) -> bytes | None:
            """The request body as sent (Content-Length or chunked); None when there is none."""
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = self.headers.get("Content-Length")
            if length is None:
                return None
            return self.rfile.read(int(length))

        def _respond(self, status: int, reason: str | None, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response_only(status, reason)
            head = self.command == "HEAD"  # no body, but the target's Content-Length stays meaningful
            for name, value in headers:
                if name.lower() not in HOP_BY_HOP and (head or name.lower() != "content-length"):
                    self.send_header(name, value)
            if not head:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: `proxy.requests` is the record

    return Handler
