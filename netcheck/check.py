"""The pre-session check: ask the server where its reflector is, run the probes side by side, assess.

This composes probes and the quality model; it stores and prints nothing. It measures a server at a
URL, whoever started it: `check --local`, which starts one in-process, is composed by the CLI
(netcheck/cli/check.py), so that nothing here reaches the server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone

from netcheck.errors import MeasurementError
from netcheck.net.server_info import fetch_server_info, reflector_of
from netcheck.model import CheckReport, Measurement
from netcheck.probes.av import AvProbe, AvProbeSettings
from netcheck.probes.base import Probe, run_probe
from netcheck.probes.reach import ReachProbe
from netcheck.probes.system import SystemProbe
from netcheck.probes.throughput import ThroughputProbe, ThroughputSettings
from netcheck.probes.udp import UdpProbe, UdpProbeSettings
from netcheck.quality import METRICS, Metric, assess
from netcheck.results import marked_server_busy

NODE_SAMPLE_S = 1.0
"""The node samples its CPU once a second: a spell just before a phase may still be in its last sample."""
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
    thresholds: tuple[Metric, ...] = METRICS,
    av_settings: AvProbeSettings | None = None,
    throughput_settings: ThroughputSettings | None = None,
    token: str | None = None,
    on_busy: Callable[[str], None] | None = None,
) -> CheckReport:
    """Measure the path to `server_url` and assess it.

    `token`: a check link's token, for a server that measures only with one (sent in a header).
    `on_busy`: told, in one sentence, when the server is busy and the check waits to retry.

    The UDP, A/V and system probes run side by side: the UDP stream then sees the path as it is
    during a video call, and the system probe's window covers both. The throughput probe runs
    after them, alone: it fills the link on purpose and would spoil every other figure.
    """
    check_started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    start_s = time.perf_counter()
    info = await fetch_server_info(server_url, token)
    reflector = reflector_of(server_url, info, udp_settings.hmac_key, token)
    host, port = udp_target or (reflector.host, reflector.port)
    udp_settings = replace(udp_settings, client_key=reflector.client_key)
    run_av = av_settings is not None and info.av
    window_s = expected_duration_s(udp_settings, av_settings if run_av else None)  # the first phase
    ice = av_settings.ice if av_settings is not None else None
    first_phase_ends = asyncio.Event()
    system = SystemProbe(host, window_s, ends=first_phase_ends)
    probes: list[Probe] = [
        UdpProbe(host, port, udp_settings),
        ReachProbe(server_url, (host, port), ice.stun_url if ice else None,
                   ice if ice is not None and ice.turn_url else None, udp_settings.hmac_key,
                   client_key=reflector.client_key, token=token),
    ]
    if run_av and av_settings is not None:
        probes.append(AvProbe(server_url, replace(av_settings, token=token, on_busy=on_busy)))
    phase_s = time.monotonic()
    measurements = await marked_by_node(await first_phase(probes, system, first_phase_ends), server_url, token,
                                        phase_s)
    if throughput_settings is not None and info.throughput:
        throughput = replace(throughput_settings, client_key=reflector.client_key, token=token, on_busy=on_busy)
        phase_s = time.monotonic()
        measurements += await marked_by_node([await run_probe(ThroughputProbe(server_url, (host, port), throughput))],
                                             server_url, token, phase_s)
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


async def first_phase(probes: list[Probe], system: SystemProbe, ends: asyncio.Event) -> list[Measurement]:
    """The probes side by side, and the system probe's window over them: it ends when they have."""
    sampling = asyncio.ensure_future(run_probe(system))
    try:
        measurements = list(await asyncio.gather(*(run_probe(probe) for probe in probes)))
    finally:
        ends.set()
    return [*measurements[:1], await sampling, *measurements[1:]]  # the order checks always listed: udp, system, …


async def marked_by_node(measurements: list[Measurement], server_url: str, token: str | None,
                         since_s: float) -> list[Measurement]:
    """The measurements, marked when the node says it was short of CPU since `since_s` (time.monotonic()):
    their figures may then carry the node's delay, and the assessment does not hold them against the
    connection. One more GET /v1/info; a node that cannot say (older, or gone) leaves them unmarked."""
    try:
        ago_s = (await fetch_server_info(server_url, token)).short_of_cpu_ago_s
    except MeasurementError:
        return measurements
    if ago_s is None:
        return measurements
    busy = ago_s <= time.monotonic() - since_s + NODE_SAMPLE_S
    return [replace(m, result=marked_server_busy(m.result, busy)) for m in measurements]
