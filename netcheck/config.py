"""One typed config: TOML file < environment (NETCHECK_*) < command-line flags. Validated at start-up.

Paths: NETCHECK_HOME holds both config.toml and the local store when set; otherwise the
platform's config and data directories. NETCHECK_CONFIG points at another config file.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netcheck.errors import ConfigError, UsageError
from netcheck.parse import parse_server_url
from netcheck.quality.thresholds import DEFAULT_THRESHOLDS, Threshold, apply_overrides

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

APP_NAME = "netcheck"

CONFIG_TEMPLATE = """\
# netcheck configuration. Environment variables NETCHECK_* and command-line flags override it.

# The clinic's netcheck server (`netcheck serve`), e.g. "https://netcheck.example-clinic.org".
# server = "http://127.0.0.1:8080"

# A low-cardinality label for this site in metrics, e.g. "clinic-north". No personal data.
# site = ""

# A file (mode 0600) holding the reflector's HMAC key, if the server requires one.
# Or set NETCHECK_HMAC_KEY. Never on the command line.
# hmac_key_file = ""

[check]
# udp_interval_ms = 20
# udp_duration_s = 3.0
# udp_size_bytes = 160
# quick_udp_duration_s = 1.0
# av_duration_s = 4.0
# quick_av_duration_s = 1.0
# av_video = "1280x720@30"
# throughput_duration_s = 4.0

# Per-clinic thresholds; see docs/quality-model.md for the metrics and their sources.
# [thresholds.rtt_p95_ms]
# good = 100
# fair = 250
# [thresholds.av_skew_ms]
# good = [-125, 45]
# fair = [-185, 90]
"""


@dataclass(frozen=True)
class CheckDefaults:
    udp_interval_ms: float = 20.0
    udp_duration_s: float = 3.0
    udp_size_bytes: int = 160
    quick_udp_duration_s: float = 1.0
    av_duration_s: float = 4.0
    quick_av_duration_s: float = 1.0
    throughput_duration_s: float = 4.0
    av_video: str = "1280x720@30"
    """What the check's A/V probe sends: 720p, so that the facial-expression threshold (≥ 720) can be met."""


@dataclass(frozen=True)
class Config:
    config_path: Path
    store_path: Path
    server: str | None = None
    site: str | None = None
    hmac_key: bytes | None = field(default=None, repr=False)
    check: CheckDefaults = CheckDefaults()
    thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS
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
    unknown = set(raw) - {"server", "site", "hmac_key_file", "check", "thresholds"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}")

    server = _optional_str(raw, "server")
    if env.get("NETCHECK_SERVER"):
        server = env["NETCHECK_SERVER"]
    if server:
        try:
            server = parse_server_url(server)
        except UsageError as error:
            raise ConfigError(f"server: {error}") from None
    site = env.get("NETCHECK_SITE") or _optional_str(raw, "site")

    hmac_key: bytes | None = None
    if env.get("NETCHECK_HMAC_KEY"):
        hmac_key = env["NETCHECK_HMAC_KEY"].encode()
    elif key_file := _optional_str(raw, "hmac_key_file"):
        hmac_key = read_secret_file(Path(key_file), "hmac_key_file")

    thresholds_raw = raw.get("thresholds", {})
    if not isinstance(thresholds_raw, Mapping):
        raise ConfigError("thresholds: must be a table of [thresholds.<metric>] tables")
    return Config(
        config_path=path,
        store_path=store_path(env),
        server=server or None,
        site=site or None,
        hmac_key=hmac_key,
        check=_check_defaults(raw.get("check", {})),
        thresholds=apply_overrides(DEFAULT_THRESHOLDS, thresholds_raw),
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


def write_template(path: Path) -> None:
    if path.exists():
        raise UsageError(f"{path} already exists; edit it or remove it first")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CONFIG_TEMPLATE, encoding="utf-8")


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


def _check_defaults(section: Any) -> CheckDefaults:
    if not isinstance(section, Mapping):
        raise ConfigError("check: must be a table")
    defaults = CheckDefaults()
    values: dict[str, Any] = {}
    limits = {
        "udp_interval_ms": (1.0, 1000.0),
        "udp_duration_s": (0.1, 600.0),
        "udp_size_bytes": (64, 1472),
        "quick_udp_duration_s": (0.1, 600.0),
        "av_duration_s": (0.5, 120.0),
        "quick_av_duration_s": (0.5, 120.0),
        "throughput_duration_s": (2.0, 60.0),
    }
    for key, value in section.items():
        if key == "av_video":
            from netcheck.av.session import parse_video_format

            try:
                parse_video_format(str(value))
            except UsageError as error:
                raise ConfigError(f"check.av_video: {error}") from None
            values[key] = str(value)
            continue
        if key not in limits:
            raise ConfigError(f"check.{key}: unknown key (known: av_video, {', '.join(limits)})")
        low, high = limits[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ConfigError(f"check.{key}: must be a number in {low:g}..{high:g}, got {value!r}")
        values[key] = type(getattr(defaults, key))(value)
    return CheckDefaults(**{**defaults.__dict__, **values})
