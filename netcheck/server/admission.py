"""Fair shares of the server's measuring capacity: per client, in all, and only while the node has CPU.

A public check link is reachable by anyone, so no client may take what another needs: each kind
of slot (A/V sessions, throughput streams, in-call data channels) has a per-client share and a
total, and A/V sessions and session tabs (which encode and decode video) are admitted only while
the node itself is not short of CPU (headroom.py: its own CPU, waiting and loop lag, never the
machine's). A client that must wait is told how long (`429` with `Retry-After`); the CLI and the
page say so and retry. A client is its session (with a token) or its source address — for IPv6,
its /64 (udp_keys.share_address).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RETRY_AFTER_MIN_S = 1
RETRY_AFTER_MAX_S = 60


@dataclass
class Slot:
    """One admitted stream or session; release it exactly once when it ends."""

    share: FairShare
    client: str
    started_s: float
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.share.release(self)


@dataclass(frozen=True)
class Busy:
    """Not now: how long to wait, and why, for the 429 body."""

    retry_after_s: int
    reason: str


@dataclass
class FairShare:
    """Concurrent slots of one kind, `per_client` for each client and `total` for all."""

    kind: str
    per_client: int
    total: int
    expected_hold_s: float
    """How long a slot is usually held: the wait a busy client is told is derived from it."""
    clock: Callable[[], float] = time.monotonic
    slots: list[Slot] = field(default_factory=list)
    refused: int = 0
    """Requests answered Busy since start (the node's metrics)."""

    def acquire(self, client: str) -> Slot | Busy:
        now_s = self.clock()
        mine = [slot for slot in self.slots if slot.client == client]
        if len(mine) >= self.per_client:
            self.refused += 1
            return Busy(self._wait_s(mine, now_s), f"at most {self.per_client} {self.kind} per client")
        if len(self.slots) >= self.total:
            self.refused += 1
            return Busy(self._wait_s(self.slots, now_s), f"all {self.total} {self.kind} are in use")
        slot = Slot(self, client, now_s)
        self.slots.append(slot)
        return slot

    def release(self, slot: Slot) -> None:
        if slot in self.slots:
            self.slots.remove(slot)

    def in_use(self, client: str | None = None) -> int:
        return len(self.slots) if client is None else sum(slot.client == client for slot in self.slots)

    def _wait_s(self, held: list[Slot], now_s: float) -> int:
        """Until the first of `held` is expected to end (at least 1 s, at most a minute)."""
        first_end_s = min(slot.started_s + self.expected_hold_s for slot in held)
        return min(RETRY_AFTER_MAX_S, max(RETRY_AFTER_MIN_S, math.ceil(first_end_s - now_s)))


def client_of(remote: str | None, session_id: str | None, role: str | None = None) -> str:
    """Whose share a request takes: its token's leg of a session (the client's and the therapist's
    agents measure side by side), else its source address's (one household, or one NAT; an IPv6
    client's /64, which one household holds whole)."""
    from netcheck.server.udp_keys import share_address

    if session_id:
        return f"session:{session_id}:{role or ''}"
    return f"address:{share_address(remote or '?')}"
