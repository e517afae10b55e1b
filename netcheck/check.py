"""The pre-session check: ask the server where its reflector is, run the probes side by side, assess.

This composes probes and the quality model; it stores and prints nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from netcheck import __version__
from netcheck.errors import ConfigError, MeasurementError
from netcheck.httpio import BodyTooLarge, read_bounded
from netcheck.model import Assessment, Measurement, ProbeResult, result_fields
from netcheck.probes.av import AvProbe, AvProbeSettings
from netcheck.probes.base import Probe
from netcheck.probes.reach import ReachProbe
from netcheck.probes.system import SystemProbe
from netcheck.probes.throughput import ThroughputProbe, ThroughputSettings
from netcheck.probes.udp import UdpProbe, UdpProbeSettings
from netcheck.quality import DEFAULT_THRESHOLDS, Threshold, assess

INFO_TIMEOUT_S = 3.0
"""Short enough that an unreachable server ends the check within 5 s."""
MAX_INFO_BYTES = 64 * 1024


@dataclass(frozen=True)
class ServerInfo:
    version: str
    udp_port: int
    hmac_required: bool
    av: bool
    """The server hosts a media peer for the A/V probe."""
    throughput: bool


@dataclass(frozen=True)
class CheckReport:
    check_id: str
    started_at: str
    duration_s: float
    server: str
    measurements: dict[str, Measurement]
    assessment: Assessment


async def fetch_server_info(server_url: str) -> ServerInfo:
    """GET /v1/info: the reflector's UDP port, so a client needs only the server's URL."""
    import aiohttp

    url = f"{server_url}/v1/info"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=INFO_TIMEOUT_S)) as session:
            async with session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise MeasurementError(f"server {server_url} answered HTTP {response.status} to /v1/info")
                body = await read_bounded(response, MAX_INFO_BYTES)
    except BodyTooLarge:
        raise MeasurementError(f"{url} is not a netcheck server (answer too large)") from None
    except asyncio.TimeoutError:
        raise MeasurementError(f"server {server_url} did not answer within {INFO_TIMEOUT_S:g} s") from None
    except aiohttp.ClientConnectorCertificateError as error:  # verification is on: never skipped
        reason = getattr(error.certificate_error, "verify_message", None) or error.certificate_error
        raise MeasurementError(f"server {server_url}: its TLS certificate is not trusted ({reason}); "
                               "if the clinic uses its own CA, point SSL_CERT_FILE at its certificate") from None
    except aiohttp.ClientConnectorError as error:
        reason = (error.os_error.strerror or str(error.os_error)).lower()
        raise MeasurementError(f"server {server_url} unreachable: {reason}") from None
    except aiohttp.ClientError as error:
        raise MeasurementError(f"server {server_url} unreachable: {type(error).__name__}: {error}") from None
    try:
        info = json.loads(body)
        udp_port = info["udp_port"]
        if not isinstance(udp_port, int) or not 1 <= udp_port <= 65535:
            raise ValueError
        return ServerInfo(str(info.get("version", "?")), udp_port, bool(info.get("hmac_required", False)),
                          info.get("av") is True, info.get("throughput") is True)
    except (ValueError, KeyError, TypeError):
        raise MeasurementError(f"{url} is not a netcheck server (unexpected answer)") from None


async def run_probe(probe: Probe) -> Measurement:
    started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    start_s = time.perf_counter()
    result: ProbeResult = await probe.run()
    return Measurement(probe.name, started_at, round(time.perf_counter() - start_s, 3), result)


AV_SETUP_S = 1.0
"""ICE, DTLS and the first frame on a good path, plus the server's report."""


def expected_duration_s(udp_settings: UdpProbeSettings, av_settings: AvProbeSettings | None,
                        throughput_settings: ThroughputSettings | None = None) -> float:
    """For progress displays: the longest probe of the first phase, then the throughput phase."""
    udp_s = udp_settings.duration_s + 0.5
    first_phase_s = max(udp_s, av_settings.duration_s + AV_SETUP_S) if av_settings else udp_s
    return first_phase_s + (throughput_settings.duration_s + 1.0 if throughput_settings else 0.0)


async def run_check(
    server_url: str,
    udp_settings: UdpProbeSettings,
    udp_target: tuple[str, int] | None = None,
    thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS,
    av_settings: AvProbeSettings | None = None,
    throughput_settings: ThroughputSettings | None = None,
) -> CheckReport:
    """Measure the path to `server_url` and assess it.

    The UDP, A/V and system probes run side by side: the UDP stream then sees the path as it is
    during a video call, and the system probe's window covers both. The throughput probe runs
    after them, alone: it fills the link on purpose and would spoil every other figure.
    """
    check_started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    start_s = time.perf_counter()
    info = await fetch_server_info(server_url)
    if info.hmac_required and udp_settings.hmac_key is None:
        raise ConfigError("hmac_key: the server requires an HMAC key; set NETCHECK_HMAC_KEY or hmac_key_file")
    host, port = udp_target or (urlsplit(server_url).hostname or "", info.udp_port)
    run_av = av_settings is not None and info.av
    window_s = expected_duration_s(udp_settings, av_settings if run_av else None)  # the first phase
    ice = av_settings.ice if av_settings is not None else None
    probes: list[Probe] = [
        UdpProbe(host, port, udp_settings),
        SystemProbe(host, window_s),
        ReachProbe(server_url, (host, port), ice.stun_url if ice else None,
                   ice if ice is not None and ice.turn_url else None, udp_settings.hmac_key),
    ]
    if run_av and av_settings is not None:
        probes.append(AvProbe(server_url, av_settings))
    measurements = list(await asyncio.gather(*(run_probe(probe) for probe in probes)))
    if throughput_settings is not None and info.throughput:
        measurements.append(await run_probe(ThroughputProbe(server_url, (host, port), throughput_settings)))
    by_probe = {measurement.probe: measurement for measurement in measurements}
    assessment = assess({name: m.result for name, m in by_probe.items()}, thresholds)
    return CheckReport(
        check_id=uuid.uuid4().hex,
        started_at=check_started_at,
        duration_s=round(time.perf_counter() - start_s, 3),
        server=server_url,
        measurements=by_probe,
        assessment=assessment,
    )


async def run_local_check(
    udp_settings: UdpProbeSettings,
    thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS,
    av_settings: AvProbeSettings | None = None,
    throughput_settings: ThroughputSettings | None = None,
) -> CheckReport:
    """A self-test for a fresh install: start a server on loopback in-process and check against it.

    Media stays on loopback too: ICE host candidates are restricted to 127.0.0.1.
    """
    from netcheck.av.peer import restrict_host_candidates
    from netcheck.server.app import start_server

    if av_settings is not None:
        restrict_host_candidates(["127.0.0.1"])
    server = await start_server("127.0.0.1", 0, 0, hmac_key=udp_settings.hmac_key)
    try:
        return await run_check(server.url, udp_settings, thresholds=thresholds, av_settings=av_settings,
                               throughput_settings=throughput_settings)
    finally:
        await server.close()


def report_to_dict(report: CheckReport) -> dict[str, Any]:
    """The `netcheck check --json` form, also what the local store keeps."""
    assessment = report.assessment
    return {
        "recommendation": assessment.recommendation.value,
        "level": assessment.level.value,
        "summary": assessment.summary,
        "cues": {
            cue.value: {
                "level": verdict.level.value,
                "note": verdict.note,
                "deciding_metric": verdict.deciding.metric if verdict.deciding else None,
                "metrics": {
                    metric.metric: {
                        "level": metric.level.value,
                        "value": metric.value,
                        "unit": metric.unit,
                        "good": metric.good,
                        "fair": metric.fair,
                        "label": metric.label,
                        "source": metric.source,
                    }
                    for metric in verdict.metrics
                },
            }
            for cue, verdict in assessment.cues.items()
        },
        "advice": list(assessment.advice),
        "video_setting": assessment.video_setting,
        "measurements": {name: result_fields(m.result) for name, m in report.measurements.items()},
        "probe_runs": {name: {"started_at": m.started_at, "duration_s": m.duration_s}
                       for name, m in report.measurements.items()},
        "started_at": report.started_at,
        "duration_s": report.duration_s,
        "check_id": report.check_id,
        "server": report.server,
        "netcheck_version": __version__,
    }
