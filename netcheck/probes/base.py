"""The one Probe protocol every probe implements."""

from __future__ import annotations

from typing import Protocol

from netcheck.model import ProbeResult


class Probe(Protocol):
    """A measurement: constructed with its target and settings, run once, returns its result."""

    name: str

    async def run(self) -> ProbeResult:
        """Measure and return. Failures are returned as a result with a non-ok status."""
        ...
