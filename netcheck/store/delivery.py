"""Delivery from the outbox to InfluxDB: batches, acknowledgement, backoff, and what is never retried.

A batch is marked delivered only after the server acknowledged it (HTTP 204). Failures:
- network errors, timeouts, 5xx, 408/425/429: retried with exponential backoff and jitter,
  honouring Retry-After; the points wait in the outbox.
- 400/413/422 (the server refused the batch's content): the batch is split in halves until the
  refused points are found; those are set aside as `rejected` so that the rest keeps flowing.
- any other 4xx (wrong token, unknown bucket or database, forbidden): a configuration error.
  It is reported once and delivery pauses until netcheck is restarted with a fixed
  configuration; measuring and storing go on, and the points are delivered after the fix.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from netcheck.config import InfluxSettings
from netcheck.store.influx import WriteError, Writer, make_writer, to_line
from netcheck.store.local import LocalStore
from netcheck.store.outbox import StoredPoint
from netcheck.store.writer import StoreWriter

T = TypeVar("T")

RETRY_BASE_S = 1.0
RETRY_MAX_S = 15.0
"""Short enough that the outbox drains within 30 s of a server coming back."""
RETRY_AFTER_MAX_S = 300.0
IDLE_POLL_S = 5.0
"""Without new points, look at the outbox this often (another process may have added some)."""


@dataclass
class DeliveryCounters:
    """What this process's deliverer did (the store keeps the all-time totals)."""

    delivered: int = 0
    rejected: int = 0
    write_errors: int = 0
    """Failed write attempts, retried or not."""
    consecutive_failures: int = 0
    paused_reason: str | None = None
    """Set by a configuration error (4xx); delivery stays paused until restart."""


class Deliverer:
    """Moves points from the outbox to one InfluxDB writer, one batch at a time."""

    def __init__(self, store: LocalStore, writer: Writer, batch_size: int = 5000,
                 on_event: Callable[[str], None] = lambda message: None,
                 retry_base_s: float = RETRY_BASE_S, retry_max_s: float = RETRY_MAX_S,
                 rng: random.Random | None = None, store_writer: StoreWriter | None = None) -> None:
        """`store_writer`: the server's writer thread (store/writer.py); the outbox's lease, reads and
        marks go through it, never on the loop. Without it (the agent, `check`) they run here."""
        self.store = store
        self.store_writer = store_writer
        self.writer = writer
        self.batch_size = batch_size
        self.on_event = on_event
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.rng = rng or random.Random()
        self.counters = DeliveryCounters()
        self._failing = False

    async def deliver_pending(self, deadline: float | None = None) -> int:
        """Send pending points until none are left or `deadline` (time.monotonic()) passes.

        Raises WriteError when a retryable write failed (the caller waits `retry_delay_s`).
        Returns the number of points delivered; 0 when paused or another process holds the lease.
        """
        delivered = 0
        while self.counters.paused_reason is None and (deadline is None or time.monotonic() < deadline):
            if not await self._in_store(lambda store: store.take_delivery_lease()):
                break
            rows = await self._in_store(lambda store: store.pending_points(self.batch_size))
            if not rows:
                break
            try:
                delivered += await self._send(rows)
            except WriteError as error:
                self._failed(error)
                if error.retryable:
                    raise
                break
            self._succeeded()
        return delivered

    def retry_delay_s(self, error: WriteError | None = None) -> float:
        """Exponential backoff with jitter (half fixed, half random), or the server's Retry-After if longer."""
        attempt = max(0, self.counters.consecutive_failures - 1)
        ceiling_s = min(self.retry_max_s, self.retry_base_s * 2.0 ** attempt)
        delay_s = ceiling_s / 2.0 + self.rng.uniform(0.0, ceiling_s / 2.0)
        if error is not None and error.retry_after_s is not None:
            delay_s = max(delay_s, min(error.retry_after_s, RETRY_AFTER_MAX_S))
        return delay_s

    async def run(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        """Deliver whenever points arrive (`wake`) until `stop`; back off while the server fails."""
        while not stop.is_set():
            wait_s = IDLE_POLL_S
            try:
                await self.deliver_pending()
            except WriteError as error:
                wait_s = self.retry_delay_s(error)
            wake.clear()
            waiters = [asyncio.ensure_future(stop.wait())]
            if not self._failing:
                waiters.append(asyncio.ensure_future(wake.wait()))
            _, still_waiting = await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            for waiter in still_waiting:
                waiter.cancel()

    def close(self) -> None:
        self.store.release_delivery_lease()
        self.writer.close()

    async def _send(self, rows: Sequence[StoredPoint]) -> int:
        """Write `rows`; split a refused batch to set aside only the refused points."""
        lines: list[str] = []
        ids: list[int] = []
        unwritable: list[int] = []
        for row in rows:
            line = to_line(row.point)
            if line is None:
                unwritable.append(row.id)
            else:
                lines.append(line)
                ids.append(row.id)
        if unwritable:
            await self._reject(unwritable, "points without a writable field")
        if not lines:
            return 0
        try:
            await asyncio.to_thread(self.writer.write, lines)
        except WriteError as error:
            if not error.batch_refused:
                raise
            self.counters.write_errors += 1
            if len(ids) == 1:
                await self._reject(ids, str(error))
                return 0
            writable = set(ids)
            kept = [row for row in rows if row.id in writable]
            half = len(kept) // 2
            return await self._send(kept[:half]) + await self._send(kept[half:])
        await self._in_store(lambda store: store.mark_delivered(ids))
        self.counters.delivered += len(ids)
        return len(ids)

    async def _in_store(self, action: Callable[[LocalStore], T]) -> T:
        """`action(store)` in the store's writer thread when there is one, else here."""
        if self.store_writer is not None:
            return await self.store_writer.write(action)
        return action(self.store)

    async def _reject(self, ids: list[int], reason: str) -> None:
        await self._in_store(lambda store: store.mark_rejected(ids))
        if self.counters.rejected == 0:
            self.on_event(f"InfluxDB refused {len(ids)} point(s), set aside as rejected: {reason}")
        self.counters.rejected += len(ids)

    def _failed(self, error: WriteError) -> None:
        self.counters.write_errors += 1
        self.counters.consecutive_failures += 1
        if not error.retryable:
            self.counters.paused_reason = str(error)
            self.on_event(f"InfluxDB at {self.writer.target} refused the write: {error}. Delivery paused until "
                          "netcheck restarts with a fixed configuration; points stay in the local store.")
        elif not self._failing:
            self.on_event(f"InfluxDB at {self.writer.target} unavailable ({error}); retrying with backoff, "
                          "points stay in the local store.")
        self._failing = True

    def _succeeded(self) -> None:
        if self._failing:
            self.on_event(f"InfluxDB at {self.writer.target} reachable again; delivering the backlog.")
        self._failing = False
        self.counters.consecutive_failures = 0


async def deliver_within(store: LocalStore, settings: InfluxSettings, budget_s: float,
                         on_event: Callable[[str], None] = lambda message: None) -> DeliveryCounters:
    """For short-lived commands (`check`): deliver what goes within `budget_s`; the rest waits in the store."""
    writer = make_writer(replace(settings, timeout_s=min(settings.timeout_s, budget_s)))
    deliverer = Deliverer(store, writer, settings.batch_size, on_event)
    try:
        await deliverer.deliver_pending(deadline=time.monotonic() + budget_s)
    except WriteError:
        pass  # reported through on_event; retried by the next run or the agent
    finally:
        deliverer.close()
    return deliverer.counters
