"""Keeping a check: stored in the local store with its points, then delivered to InfluxDB briefly.

The check itself (check.py) stores and prints nothing; the CLI calls these after the verdict is
known. A broken store is reported, never costs the user the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from netcheck.config import Config
from netcheck.errors import StoreError
from netcheck.model import CheckReport
from netcheck.store.local import LocalStore
from netcheck.store.points import Origin, report_points

CHECK_DELIVERY_BUDGET_S = 3.0
"""After the verdict is shown: how long `check` tries to send its points before leaving them to the agent."""


def save_check(config: Config, check_report: CheckReport, report: dict[str, Any], local: bool, role: str,
               open_store: Callable[[Config], LocalStore], warn: Callable[[str], None]) -> bool:
    """Store the check and its points; False (and a warning) when the store cannot take them.

    A `--local` self-test's server has a random port: its points say `server=local`, one tag value.
    """
    try:
        with open_store(config) as store:
            origin = Origin(agent=store.agent_id(), kind="check", role=role, site=config.site,
                            server="local" if local else urlsplit(report["server"]).netloc, check_id=report["check_id"],
                            client="cli")
            time_ms = int(datetime.fromisoformat(report["started_at"]).timestamp() * 1000)
            store.save_check(report, report_points(check_report.measurements, check_report.assessment, origin, time_ms))
        return True
    except StoreError as error:
        warn(f"result not saved: {error}")
        return False


def deliver_briefly(config: Config, open_store: Callable[[Config], LocalStore], note: Callable[[str], None]) -> None:
    """Send the check's points (and any backlog) to InfluxDB within a few seconds; what fails waits."""
    from netcheck.store.delivery import deliver_within  # urllib and the InfluxDB writer: only when configured

    try:
        with open_store(config) as store:
            asyncio.run(deliver_within(store, config.influx, CHECK_DELIVERY_BUDGET_S, note))
    except StoreError as error:
        note(f"metrics not delivered: {error}")
