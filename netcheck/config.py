"""One typed config: TOML file < environment (NETCHECK_*) < command-line flags. Validated at start-up.

Paths: NETCHECK_HOME holds both config.toml and the local store when set; otherwise the
platform's config and data directories. NETCHECK_CONFIG points at another config file.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from netcheck import bounds
from netcheck.av.session import parse_video_format
from netcheck.errors import ConfigError, UsageError
from netcheck.parse import parse_frame_ancestors, parse_hub_url, parse_server_url
from netcheck.quality.metrics import METRICS, Metric
from netcheck.quality.thresholds import apply_overrides

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

APP_NAME = "netcheck"

TEMPLATE_PATH = Path(__file__).with_name("config_template.toml")
"""What `netcheck config init` writes: every key, commented out, with what it does."""


@dataclass(frozen=True)
class CheckDefaults:
    udp_interval_ms: float = 20.0
    udp_duration_s: float = 3.0
    udp_size_bytes: int = 160
    quick_udp_duration_s: float = 1.0
    av_duration_s: float = 3.0  # after the first frame: 3 lip-sync markers, the length the calibration was validated on
    quick_av_duration_s: float = 1.0
    throughput_duration_s: float = 4.0
    av_gather_timeout_s: float = 5.0  # the A/V call's waits for ICE candidates, then for its first frame
    av_connect_timeout_s: float = 10.0
    udp_wait_max_s: float = 2.0
    av_video: str = "1280x720@30"
    """What the check's A/V probe sends: 720p, so that the facial-expression threshold (≥ 720) can be met."""


@dataclass(frozen=True)
class AgentDefaults:
    window_s: float = 5.0
    udp_rate_pps: float = 10.0
    """Light enough not to disturb the call: 10 × 64-byte packets ≈ 7 kbit/s each way."""
    udp_size_bytes: int = 64
    av_every_s: float = 300.0
    """0 = never. Each run costs ≈ 1 CPU-second and a short burst of video traffic."""
    av_duration_s: float = 2.0
    av_video: str = "320x240@30"
    av_audio_offset_ms: float = 0.0
    """Calibration and tests only: audio sent this much before its video (as `probe av --audio-offset-ms`)."""


@dataclass(frozen=True)
class StoreLimits:
    """What the local store keeps, each table by age and count (store/retention.py); why: design notes, "Store"."""

    max_points: int = 200_000
    """Points kept locally (outbox and history); beyond it delivered points go first, then the oldest undelivered."""
    retention_days: float = 30.0
    """Delivered points older than this are deleted."""
    max_checks: int = 50_000
    checks_retention_days: float = 90.0
    max_windows: int = 50_000
    windows_retention_days: float = 30.0
    max_session_events: int = 200_000
    session_events_retention_days: float = 90.0


@dataclass(frozen=True)
class ServeLimits:
    """`serve`: checks per client (5, then one every 20 s) and for all without a token (docs/browser-check.md)."""

    check_burst: int = 5
    check_every_s: float = 20.0
    anonymous_check_burst: int = 30
    anonymous_check_every_s: float = 2.0
    frame_ancestors: tuple[str, ...] = ()
    """Sites besides the node's own that may frame its pages (the clinic's call page); none: 'self' only."""
    page_call_watch_s: float = 7.0
    page_voice_s: float = 3.2
    page_speed_phase_s: float = 2.0
    """The check page's steps (the call watched from its first frame, the voice stream in the call's last
    seconds, each speed phase), handed to it in /v1/info."""


@dataclass(frozen=True)
class InfluxSettings:
    """Where points go. v2: InfluxDB 2.x, 3.x, 1.8+ and VictoriaMetrics; v1: InfluxDB 1.x `/write`."""

    url: str
    api: str = "v2"
    org: str | None = None
    bucket: str | None = None
    token: str | None = field(default=None, repr=False)
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    batch_size: int = 5000
    retry_max_s: float = 15.0
    """The backoff's cap while InfluxDB fails: 15 s drains the outbox within 30 s of its return."""

    def describe(self) -> dict[str, Any]:
        """For `config show`: everything but the secrets."""
        return {**self.__dict__, "token": "set" if self.token else None, "password": "set" if self.password else None}


@dataclass(frozen=True)
class Config:
    config_path: Path
    store_path: Path
    server: str | None = None
    site: str | None = None
    hmac_key: bytes | None = field(default=None, repr=False)
    secret: bytes | None = field(default=None, repr=False)
    """Signs and checks session tokens (netcheck/tokens.py); None: the session hub is off."""
    token: str | None = field(default=None, repr=False)
    """This client's session or check token (NETCHECK_TOKEN or `token_file`): sent in a header."""
    turn_password: str | None = field(default=None, repr=False)
    """The TURN server's password (NETCHECK_TURN_PASSWORD or `turn_password_file`)."""
    turn_secret: str | None = field(default=None, repr=False)
    """`serve --browser-turn`: the TURN server's static-auth-secret (NETCHECK_TURN_SECRET or `turn_secret_file`)."""
    hub_url: str | None = None
    """`serve`: the Redis holding the session hub (NETCHECK_HUB_URL or `hub_url`); None: in memory."""
    hub_password: str | None = field(default=None, repr=False)
    """That Redis's password (NETCHECK_HUB_PASSWORD or `hub_password_file`)."""
    check: CheckDefaults = CheckDefaults()
    thresholds: tuple[Metric, ...] = METRICS
    agent: AgentDefaults = AgentDefaults()
    store: StoreLimits = StoreLimits()
    serve: ServeLimits = ServeLimits()
    influx: InfluxSettings | None = None
    """None: points stay in the local store (and are delivered once InfluxDB is configured)."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """The file's contents as read, for `netcheck config show`."""


def config_path(env: Mapping[str, str]) -> Path:
    if env.get("NETCHECK_CONFIG"):
        return Path(env["NETCHECK_CONFIG"])
    if env.get("NETCHECK_HOME"):
        return Path(env["NETCHECK_HOME"]) / "config.toml"
    from platformdirs import user_config_dir
    return Path(user_config_dir(APP_NAME)) / "config.toml"


def store_path(env: Mapping[str, str]) -> Path:
    if env.get("NETCHECK_HOME"):
        return Path(env["NETCHECK_HOME"]) / "netcheck.sqlite3"
    from platformdirs import user_data_dir
    return Path(user_data_dir(APP_NAME)) / "netcheck.sqlite3"


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file (absent is fine) and the NETCHECK_* environment."""
    env = os.environ if env is None else env
    path = config_path(env)
    raw = _read_toml(path)
    unknown = set(raw) - {"server", "site", "hmac_key_file", "secret_file", "token_file", "turn_password_file", "turn_secret_file", "hub_url", "hub_password_file", "check", "thresholds", "agent", "store",
                          "serve", "influx"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}")

    file_server = _optional_str(raw, "server")
    server = env.get("NETCHECK_SERVER") or file_server
    if server:
        try:
            server = parse_server_url(server)
        except UsageError as error:
            raise ConfigError(f"server: {error}") from None
    site = env.get("NETCHECK_SITE") or _optional_str(raw, "site")

    hmac_key: bytes | None = None
    key_source = ""
    if env.get("NETCHECK_HMAC_KEY"):
        hmac_key, key_source = env["NETCHECK_HMAC_KEY"].encode(), "NETCHECK_HMAC_KEY"
    elif key_file := _optional_str(raw, "hmac_key_file"):
        hmac_key, key_source = read_secret_file(Path(key_file), "hmac_key_file"), "hmac_key_file"
    if hmac_key is not None and len(hmac_key) < MIN_SECRET_BYTES:
        raise ConfigError(f"{key_source}: the HMAC key must be at least {MIN_SECRET_BYTES} bytes "
                          f"(got {len(hmac_key)}); a short key can be guessed")
    secret = _session_secret(raw, env)
    token = _text_secret(raw, env, "NETCHECK_TOKEN", "token_file")
    turn_password = _text_secret(raw, env, "NETCHECK_TURN_PASSWORD", "turn_password_file")
    turn_secret = _text_secret(raw, env, "NETCHECK_TURN_SECRET", "turn_secret_file")
    if turn_secret is not None and len(turn_secret.encode()) < MIN_SECRET_BYTES:
        source = "NETCHECK_TURN_SECRET" if env.get("NETCHECK_TURN_SECRET", "").strip() else "turn_secret_file"
        raise ConfigError(f"{source}: the TURN secret must be at least {MIN_SECRET_BYTES} bytes; every page "
                          "gets a credential signed with it, from which a short one can be guessed offline")
    hub_url = env.get("NETCHECK_HUB_URL") or _optional_str(raw, "hub_url")
    if hub_url:
        try:
            hub_url = parse_hub_url(hub_url)
        except UsageError as error:
            raise ConfigError(f"hub_url: {error}") from None
    hub_password = _text_secret(raw, env, "NETCHECK_HUB_PASSWORD", "hub_password_file")

    thresholds_raw = raw.get("thresholds", {})
    if not isinstance(thresholds_raw, Mapping):
        raise ConfigError("thresholds: must be a table of [thresholds.<metric>] tables")
    return Config(
        config_path=path, store_path=store_path(env), server=server or None, site=site or None,
        hmac_key=hmac_key, secret=secret, token=token, turn_password=turn_password, turn_secret=turn_secret,
        hub_url=hub_url or None, hub_password=hub_password,
        check=_table(raw, "check", CheckDefaults, CHECK_LIMITS, {"av_video": _video_format}),
        thresholds=apply_overrides(METRICS, thresholds_raw),
        agent=_table(raw, "agent", AgentDefaults, AGENT_LIMITS, {"av_video": _video_format}),
        store=_table(raw, "store", StoreLimits, STORE_LIMITS),
        serve=_table(raw, "serve", ServeLimits, SERVE_LIMITS, {"frame_ancestors": parse_frame_ancestors}),
        influx=_influx_settings(raw.get("influx", {}), env),
        raw=raw,
    )


def read_secret_file(path: Path, key: str) -> bytes:
    """A secret from a file that only its owner may read (checked where the OS has modes)."""
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{key}: {path} must not be readable by others (chmod 600)")
        secret = path.read_bytes().strip()
    except OSError as error:
        raise ConfigError(f"{key}: cannot read {path}: {error.strerror}") from None
    if not secret:
        raise ConfigError(f"{key}: {path} is empty")
    return secret


MIN_SECRET_BYTES = 16
"""Anyone holding a token can try secrets offline; a short one would be guessed."""


def _text_secret(raw: Mapping[str, Any], env: Mapping[str, str], variable: str, file_key: str) -> str | None:
    """A secret that is text (a token, a password): the environment variable, else the 0600 file the
    config names. Never a command-line flag: argv is visible to every user of the machine."""
    if env.get(variable, "").strip():
        return env[variable].strip()
    if path := _optional_str(raw, file_key):
        return read_secret_file(Path(path), file_key).decode("utf-8", "replace").strip() or None
    return None


def _session_secret(raw: Mapping[str, Any], env: Mapping[str, str]) -> bytes | None:
    """NETCHECK_SECRET, else the file named by `secret_file`; None when neither is set."""
    if env.get("NETCHECK_SECRET"):
        secret, source = env["NETCHECK_SECRET"].encode(), "NETCHECK_SECRET"
    elif secret_file := _optional_str(raw, "secret_file"):
        secret, source = read_secret_file(Path(secret_file), "secret_file"), "secret_file"
    else:
        return None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"{source}: the secret must be at least {MIN_SECRET_BYTES} bytes "
                          f"(e.g. python -c \"import secrets; print(secrets.token_urlsafe(32))\")")
    return secret


def write_template(path: Path) -> None:
    if path.exists():
        raise UsageError(f"{path} already exists; edit it or remove it first")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TEMPLATE_PATH.read_text(encoding="utf-8"), encoding="utf-8")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None


def _optional_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{key}: must be a string, got {value!r}")
    return value


T = TypeVar("T")
CHECK_LIMITS = {"udp_interval_ms": bounds.UDP_INTERVAL_MS, "udp_duration_s": bounds.UDP_DURATION_S,
                "udp_size_bytes": bounds.UDP_SIZE_BYTES, "quick_udp_duration_s": bounds.UDP_DURATION_S,
                "av_duration_s": bounds.AV_DURATION_S, "quick_av_duration_s": bounds.AV_DURATION_S,
                "throughput_duration_s": bounds.THROUGHPUT_DURATION_S, "av_gather_timeout_s": bounds.AV_TIMEOUT_S,
                "av_connect_timeout_s": bounds.AV_TIMEOUT_S, "udp_wait_max_s": bounds.UDP_WAIT_MAX_S}
AGENT_LIMITS = {"window_s": bounds.AGENT_WINDOW_S, "udp_rate_pps": bounds.AGENT_UDP_RATE_PPS,
                "udp_size_bytes": bounds.UDP_SIZE_BYTES, "av_every_s": bounds.AGENT_AV_EVERY_S,
                "av_duration_s": bounds.AGENT_AV_DURATION_S, "av_audio_offset_ms": bounds.AUDIO_OFFSET_MS}
STORE_LIMITS = {"max_points": bounds.STORE_MAX_POINTS, "retention_days": bounds.STORE_RETENTION_DAYS}
for _rows in ("checks", "windows", "session_events"):
    STORE_LIMITS.update({f"max_{_rows}": bounds.STORE_MAX_ROWS, f"{_rows}_retention_days": bounds.STORE_RETENTION_DAYS})
SERVE_LIMITS = {"check_burst": bounds.CHECK_BURST, "check_every_s": bounds.CHECK_EVERY_S,
                "anonymous_check_burst": bounds.CHECK_BURST, "anonymous_check_every_s": bounds.CHECK_EVERY_S,
                "page_call_watch_s": bounds.PAGE_CALL_WATCH_S, "page_voice_s": bounds.PAGE_VOICE_S,
                "page_speed_phase_s": bounds.PAGE_SPEED_PHASE_S}


def _table(raw: Mapping[str, Any], table: str, kind: type[T], limits: Mapping[str, bounds.Range],
           strings: Mapping[str, Any] | None = None) -> T:
    """The file's `[table]` over `kind`'s defaults, every key validated (unknown keys and ranges name the key)."""
    return replace(kind(), **_numbers(raw.get(table, {}), table, limits, kind(), strings))


def _video_format(value: Any) -> str:
    parse_video_format(str(value))
    return str(value)


def _numbers(section: Any, table: str, limits: Mapping[str, bounds.Range], defaults: Any,
             strings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate a table of numbers (and named string keys) against their ranges; messages name the key."""
    if not isinstance(section, Mapping):
        raise ConfigError(f"{table}: must be a table")
    strings = strings or {}
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key in strings:
            try:
                values[key] = strings[key](value)
            except UsageError as error:
                raise ConfigError(f"{table}.{key}: {error}") from None
            continue
        if key not in limits:
            raise ConfigError(f"{table}.{key}: unknown key (known: {', '.join([*limits, *strings])})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not limits[key].contains(value):
            raise ConfigError(f"{table}.{key}: must be a number in {limits[key].describe()}, got {value!r}")
        values[key] = type(getattr(defaults, key))(value)
    return values


INFLUX_ENV = {
    "url": "NETCHECK_INFLUX_URL", "api": "NETCHECK_INFLUX_API", "org": "NETCHECK_INFLUX_ORG",
    "bucket": "NETCHECK_INFLUX_BUCKET", "token": "NETCHECK_INFLUX_TOKEN",
    "database": "NETCHECK_INFLUX_DATABASE", "retention_policy": "NETCHECK_INFLUX_RP",
    "username": "NETCHECK_INFLUX_USERNAME", "password": "NETCHECK_INFLUX_PASSWORD",
}
INFLUX_STRING_KEYS = ("url", "api", "org", "bucket", "database", "retention_policy", "username", "token_file", "password_file")


def _influx_settings(section: Any, env: Mapping[str, str]) -> InfluxSettings | None:
    """[influx] < NETCHECK_INFLUX_*; secrets only from the environment or a 0600 file."""
    if not isinstance(section, Mapping):
        raise ConfigError("influx: must be a table")
    for secret in ("token", "password"):
        if secret in section:
            raise ConfigError(f"influx.{secret}: keep secrets out of the config file; "
                              f"use influx.{secret}_file (mode 0600) or {INFLUX_ENV[secret]}")
    limits = {"timeout_s": bounds.INFLUX_TIMEOUT_S, "batch_size": bounds.INFLUX_BATCH_SIZE,
              "retry_max_s": bounds.INFLUX_RETRY_MAX_S}
    numbers = {key: section[key] for key in limits if key in section}
    strings = {key: value for key, value in section.items() if key not in numbers}
    for key, value in strings.items():
        if key not in INFLUX_STRING_KEYS:
            raise ConfigError(f"influx.{key}: unknown key (known: {', '.join((*INFLUX_STRING_KEYS, *limits))})")
        if not isinstance(value, str):
            raise ConfigError(f"influx.{key}: must be a string, got {value!r}")
    values: dict[str, Any] = {key: strings.get(key) or None for key in INFLUX_ENV if key not in ("token", "password")}
    for key, variable in INFLUX_ENV.items():
        if env.get(variable):
            values[key] = env[variable]
    if not values.get("token") and strings.get("token_file"):
        values["token"] = read_secret_file(Path(strings["token_file"]), "influx.token_file").decode()
    if not values.get("password") and strings.get("password_file"):
        values["password"] = read_secret_file(Path(strings["password_file"]), "influx.password_file").decode()
    if not values.get("url"):
        configured = [INFLUX_ENV[key] for key in INFLUX_ENV if values.get(key)]
        if configured:
            raise ConfigError(f"influx: {configured[0]} is set but NETCHECK_INFLUX_URL (influx.url) is not")
        return None
    try:
        values["url"] = parse_server_url(values["url"])
    except UsageError as error:
        raise ConfigError(f"influx.url: {error}") from None
    api = values.get("api") or "v2"
    if api not in ("v1", "v2"):
        raise ConfigError(f"influx.api: must be v1 or v2, got {api!r}")
    values["api"] = api
    if api == "v2" and not values.get("bucket"):
        raise ConfigError("influx.bucket: the v2 API needs a bucket (NETCHECK_INFLUX_BUCKET)")
    if api == "v1" and not values.get("database"):
        raise ConfigError("influx.database: the v1 API needs a database (NETCHECK_INFLUX_DATABASE)")
    values.update(_numbers(numbers, "influx", limits, InfluxSettings(url="")))
    return InfluxSettings(**values)
