"""Real time-series databases on loopback, for tests: InfluxDB 1.x and VictoriaMetrics, free ports,
data in a temp dir, killed on exit.

    with InfluxDB1() as influx:                       # auth on, database "netcheck"
        url = f"{influx.url}/write?db={influx.database}&precision=ms&u={influx.username}&p={influx.password}"
        ... write with the code under test ...
        assert influx.count("netcheck_probe") == 2
        influx.stop(); time.sleep(1); influx.start()    # an outage: same port, same data

    with VictoriaMetrics() as vm:                     # no dedup: duplicate writes stay visible
        ... POST line protocol to f"{vm.url}/api/v2/write?org=o&bucket=b&precision=ms" ...
        assert len(vm.samples()) == 2

Both servers listen on 127.0.0.1 only, on ports picked by `free_port()` (the Debian builds cannot be
told to bind port 0 and report it, so there is a small race; the first start retries with new
ports if the server dies at bind). `start()` returns only once the server answers its health
endpoint; on failure `TsdbError` carries the tail of the server's log. `stop()` + `start()` reuse
the same ports and data directory, so a test can simulate an outage; `close()` (or leaving the
`with` block) kills the server and deletes the directory.

InfluxDB1 wraps `/usr/bin/influxd` (Debian 1.6.7: the v1 `/write` and InfluxQL `/query` only; no
`/api/v2/write`, no `Authorization: Token`). Behaviour verified against 1.6.7 (bodies are JSON):

    wrong password / unknown user   401 {"error":"authorization failed"}
    no credentials (auth on)        401 {"error":"unable to parse authentication credentials"}
    unknown database                404 {"error":"database not found: \\"nope\\""} (also for a non-admin
                                        writer: existence is checked before authorization), and the
                                        same text in an X-Influxdb-Error header
    malformed line                  400 {"error":"unable to parse 'm v=': missing field value"}
    malformed line among good ones  400 {"error":"partial write: unable to parse ...: missing field
                                        value dropped=0"}, and the good lines ARE stored
    field type conflict             400 "partial write: field type conflict: ... dropped=1"
    unknown ?precision=xx           204, silently accepted
    same series + timestamp twice   one point, the last value wins (InfluxDB cannot show duplicates)

Config notes: the Debian build's top-level switch is `reporting-enabled` (default false); upstream's
`reporting-disabled` is an unknown key there and silently ignored, so the config sets both.

VictoriaMetrics wraps `/usr/bin/victoria-metrics` (Debian 1.79.5). Line protocol `m,tag=x f=1` is
stored as series `m_f{tag="x"}`; `/write?db=x` adds a label `db="x"`, `/api/v2/write?bucket=b` adds
none. Malformed lines get 204 and are skipped (logged only), the rest of the batch is stored.
Findings on making fresh writes visible to `/api/v1/export` (all verified here):

  * `/internal/force_flush` exists and is needed: without it, a new series showed up only after
    1-10 s (existing series after ~1 s); with it, the sample is visible at once.
  * export's default `end` hides samples newer than ~0.5 s even after a flush, so `export()` passes
    an explicit far-future `end` and `start=0` (the whole retention, `-retentionPeriod=100y`).
  * with NO dedup flag, writing the same line twice (same series, same ms) shows up as 2 samples in
    export, with or without `reduce_mem_usage=1`, so `export()` does not use it; with
    `-dedup.minScrapeInterval=1ms` the export shows 1 sample.
  * `-search.latencyOffset=0s` and `-search.disableCache` (both exist in 1.79.5) keep
    `/api/v1/query*` from hiding the last 30 s or serving cached results; export needs neither.
  * with `-httpAuth.username/password`, `/health` stays open but writes, export and force_flush
    need Basic auth (401 otherwise); `export()` sends it when those flags were passed.

Timings measured here: both servers answer at the first health poll (~50 ms after spawn, restarts
too); InfluxDB1 then spends ~0.2 s creating the users (bcrypt) and the database. SIGTERM stops
influxd in ~3 ms and victoria-metrics in ~20 ms, and both keep unflushed writes across the restart.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from tests.harness.servers import stop
from tests.harness.ports import free_port

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"
VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
HOST = "127.0.0.1"
EXPORT_END = 4_102_444_800  # 2100-01-01 in Unix seconds: after anything a test writes
NETCHECK_SERIES = '{__name__=~"netcheck_.*"}'

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, int, float]
"""(metric name, sorted (label, value) pairs without __name__, timestamp in ms, value)."""


class TsdbError(RuntimeError):
    """A server did not start or did not answer, or a query failed; carries the log tail or the error."""


ServerT = TypeVar("ServerT", bound="_ServerProcess")


class _ServerProcess:
    """What both servers share: a subprocess with a log file in a temp dir, health polling, restart."""

    name = "server"
    temp_prefix = "netcheck-tsdb-"
    startup_attempts = 3  # for the port race; only the first start may pick new ports

    def __init__(self, start_timeout_s: float, host: str = HOST) -> None:
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.directory: Path | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log_file: IO[bytes] | None = None
        self._started_once = False

    # --- public ------------------------------------------------------------------------------

    def __enter__(self: ServerT) -> ServerT:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.directory is not None
        return self.directory / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""

    def start(self) -> None:
        """Start (or restart, on the same ports and data) and return once the server answers."""
        if self.running:
            return
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=self.temp_prefix)
            self.directory = Path(self._tmp.name)
        if self._started_once:
            self._spawn()
            self._wait_until_ready()
            return
        last_error: TsdbError | None = None
        for _attempt in range(self.startup_attempts):
            self._pick_ports()
            self._prepare()
            self._spawn()
            try:
                self._wait_until_ready()
            except TsdbError as exc:
                self.stop()
                if "address already in use" not in str(exc):
                    raise
                last_error = exc  # lost the port race: pick new ports and try again
                continue
            self._started_once = True
            self._after_first_start()
            return
        raise last_error  # type: ignore[misc]

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 10 s); the data directory and ports are kept for `start()`."""
        if self.proc is not None:
            stop(self.proc, timeout_s=10.0)
            self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def close(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.directory = None
        self._started_once = False

    # --- for subclasses ----------------------------------------------------------------------

    def _pick_ports(self) -> None:
        self.port = free_port()

    def _prepare(self) -> None:
        """Write config files etc. before the first start (again after a port retry)."""

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _after_first_start(self) -> None:
        """Create users, databases... once the server answers for the first time."""

    # --- internals ---------------------------------------------------------------------------

    def _spawn(self) -> None:
        assert self.directory is not None
        # Appended across restarts, so the tail tells the story; closed in stop().
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115
        # INFLUXDB_* variables would override the generated config: start from a clean slate.
        env = {key: value for key, value in os.environ.items() if not key.startswith("INFLUXDB_")}
        self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, cwd=self.directory, env=env,
                                     start_new_session=True)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise TsdbError(f"{self.name} exited {self.proc.returncode} at startup:\n{self._log_tail()}")
            if self._ready():
                return
            time.sleep(0.05)
        raise TsdbError(f"{self.name} did not answer on {self.url} within {self.start_timeout_s} s:\n"
                        f"{self._log_tail()}")

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __del__(self) -> None:
        # A forgotten close() must not leave a server running after the test session.
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()


class InfluxDB1(_ServerProcess):
    """An `influxd` (1.x) subprocess with a generated config; use as a context manager."""

    name = "influxd"
    temp_prefix = "netcheck-influxdb-"

    def __init__(self, auth: bool = True, database: str = "netcheck", username: str = "netcheck",
                 start_timeout_s: float = 15.0,
                 host: str = HOST) -> None:
        super().__init__(start_timeout_s, host)
        self.auth = auth
        self.database = database
        self.username = username
        self.password = secrets.token_hex(12)
        self.admin_username = "admin"
        self.admin_password = secrets.token_hex(12)
        self.rpc_port = 0

    @property
    def config_path(self) -> Path:
        assert self.directory is not None
        return self.directory / "influxdb.conf"

    def query(self, influxql: str, database: str | None = None, epoch: str = "ms") -> list[dict[str, Any]]:
        """Run InfluxQL as the admin; the `series` of the first statement ([] when it has none).

        Raises TsdbError on an HTTP error or a statement error, so a typo cannot pass as "no data".
        """
        db = self.database if database is None else database
        form = {"q": influxql, "epoch": epoch}
        if db:
            form["db"] = db
        request = urllib.request.Request(f"{self.url}/query", data=urllib.parse.urlencode(form).encode(),
                                         method="POST", headers=self._admin_headers())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise TsdbError(f"InfluxQL {influxql!r} failed: HTTP {exc.code} {_body_text(exc)}") from None
        except OSError as exc:
            raise TsdbError(f"InfluxQL {influxql!r} failed: {exc}") from None
        if "error" in payload:
            raise TsdbError(f"InfluxQL {influxql!r} failed: {payload['error']}")
        results = payload.get("results") or [{}]
        if "error" in results[0]:
            raise TsdbError(f"InfluxQL {influxql!r} failed: {results[0]['error']}")
        return list(results[0].get("series", []))

    def count(self, measurement: str) -> int:
        """How many points `measurement` holds (rows of `SELECT *`: exact, fine for test-sized data)."""
        series = self.query(f"SELECT * FROM {_quote_ident(measurement)}")
        return sum(len(s.get("values", [])) for s in series)

    # --- internals ---------------------------------------------------------------------------

    def _pick_ports(self) -> None:
        self.port = free_port()
        self.rpc_port = free_port()
        while self.rpc_port == self.port:
            self.rpc_port = free_port()

    def _prepare(self) -> None:
        self.config_path.write_text("")
        os.chmod(self.config_path, 0o600)
        self.config_path.write_text(self._config())

    def _config(self) -> str:
        assert self.directory is not None
        d = self.directory
        return f"""\
# generated by tests/tsdb.py; loopback only, nothing but HTTP and the RPC port
reporting-disabled = true
reporting-enabled = false
bind-address = {_toml(f"{self.host}:{self.rpc_port}")}

[meta]
  dir = {_toml(d / "meta")}
  logging-enabled = false

[data]
  dir = {_toml(d / "data")}
  wal-dir = {_toml(d / "wal")}
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
  log-enabled = false

[http]
  enabled = true
  bind-address = {_toml(f"{self.host}:{self.port}")}
  auth-enabled = {"true" if self.auth else "false"}
  log-enabled = false
  pprof-enabled = false
  unix-socket-enabled = false

[logging]
  level = "info"
  suppress-logo = true

[ifql]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false
"""

    def _argv(self) -> list[str]:
        return [INFLUXD, "-config", str(self.config_path)]

    def _ready(self) -> bool:
        return _http_status(f"{self.url}/ping") == 204

    def _after_first_start(self) -> None:
        # In 1.x the first admin user may be created without credentials, even with auth on.
        self.query(f"CREATE USER {_quote_ident(self.admin_username)} WITH PASSWORD "
                   f"{_quote_string(self.admin_password)} WITH ALL PRIVILEGES", database="")
        self.query(f"CREATE DATABASE {_quote_ident(self.database)}", database="")
        self.query(f"CREATE USER {_quote_ident(self.username)} WITH PASSWORD {_quote_string(self.password)}",
                   database="")
        self.query(f"GRANT ALL ON {_quote_ident(self.database)} TO {_quote_ident(self.username)}", database="")

    def _admin_headers(self) -> dict[str, str]:
        return {"Authorization": _basic_auth(self.admin_username, self.admin_password)}


class VictoriaMetrics(_ServerProcess):
    """A single-node `victoria-metrics` subprocess; use as a context manager.

    `extra_args` go on the command line after the defaults (a repeated flag wins), e.g.
    `("-dedup.minScrapeInterval=1ms",)` or `("-httpAuth.username=u", "-httpAuth.password=p")`.
    """

    name = "victoria-metrics"
    temp_prefix = "netcheck-victoria-"

    def __init__(self, extra_args: Sequence[str] = (), start_timeout_s: float = 15.0, host: str = HOST) -> None:
        super().__init__(start_timeout_s, host)
        self.extra_args = tuple(extra_args)
        self.username = _flag_value(self.extra_args, "-httpAuth.username")
        self.password = _flag_value(self.extra_args, "-httpAuth.password") or ""

    def export(self, match: str = NETCHECK_SERIES) -> list[dict[str, Any]]:
        """Every raw sample of the series matching `match`, as /api/v1/export's JSON lines
        (`{"metric": {...labels}, "values": [...], "timestamps": [...]}`), including what was
        written a moment ago: flushes first and asks for all time (see the module docstring)."""
        self._request("/internal/force_flush")
        form = urllib.parse.urlencode({"match[]": match, "start": "0", "end": str(EXPORT_END)}).encode()
        body = self._request("/api/v1/export", form)
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

    def samples(self, match: str = NETCHECK_SERIES) -> list[Sample]:
        """`export()` flattened to sorted (name, labels, timestamp_ms, value) tuples, one per sample."""
        flat: list[Sample] = []
        for series in self.export(match):
            metric = dict(series["metric"])
            name = metric.pop("__name__", "")
            labels: Labels = tuple(sorted(metric.items()))
            flat += [(name, labels, int(ts), float(value))
                     for ts, value in zip(series["timestamps"], series["values"])]
        return sorted(flat)

    # --- internals ---------------------------------------------------------------------------

    def _argv(self) -> list[str]:
        assert self.directory is not None
        return [VICTORIA_METRICS, f"-storageDataPath={self.directory / 'data'}",
                f"-httpListenAddr={self.host}:{self.port}", "-retentionPeriod=100y",
                "-search.latencyOffset=0s", "-search.disableCache", *self.extra_args]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as response:
                return response.read().strip() == b"OK"
        except OSError:
            return False

    def _request(self, path: str, data: bytes | None = None) -> bytes:
        headers = {"Authorization": _basic_auth(self.username, self.password)} if self.username else {}
        request = urllib.request.Request(f"{self.url}{path}", data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise TsdbError(f"victoria-metrics {path} failed: HTTP {exc.code} {_body_text(exc)}") from None
        except OSError as exc:
            raise TsdbError(f"victoria-metrics {path} failed: {exc}") from None


# --- helpers ---------------------------------------------------------------------------------


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _body_text(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value of the last `-flag=value` (or `--flag=value`) in args, if any."""
    value = None
    for arg in args:
        name, sep, rest = arg.partition("=")
        if sep and name.lstrip("-") == flag.lstrip("-"):
            value = rest
    return value


def _toml(value: object) -> str:
    """A TOML basic string; JSON's escapes are valid TOML for everything a path or address holds."""
    return json.dumps(str(value))


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
