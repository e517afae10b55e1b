"""The one Probe protocol every probe implements, and the one way the check and the agent run a probe."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Protocol

from netcheck.model import Measurement, ProbeResult, Status
from netcheck.results import ProbeFailure


class Probe(Protocol):
    """A measurement: constructed with its target and settings, run once, returns its result."""

    name: str

    async def run(self) -> ProbeResult:
        """Measure and return. Failures are returned as a result with a non-ok status."""
        ...


async def run_probe(probe: Probe) -> Measurement:
    """Run `probe` and time it. A probe that raises instead of returning a failed result (a bug, or
    a failure nobody foresaw) becomes a `ProbeFailure` naming the probe: the other probes' figures
    still make a partial check."""
    started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    start_s = time.perf_counter()
    try:
        result: ProbeResult = await probe.run()
    except Exception as error:  # noqa: BLE001 - failure is data; cancellation still propagates
        result = ProbeFailure(status=Status.ERROR, error=f"{probe.name} probe failed: {type(error).__name__}: {error}")
    return Measurement(probe.name, started_at, round(time.perf_counter() - start_s, 3), result)
