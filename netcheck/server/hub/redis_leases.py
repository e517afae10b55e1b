"""Watcher places shared by every node: one lease per watcher in the session's sorted set.

    netcheck:hub:{sid}:watchers   member: the lease's random id; score: its expiry (unix seconds).

A watcher takes its lease when it subscribes and renews it every keep-alive; a lease lasts
`lease_keepalives` keep-alives (45 s as deployed). Taking and renewing are one script: expired
leases leave, the lease is (re)added if it is held already or a place is free, and the set's own
expiry is set to the lease time. So the set never outlives its newest lease, and a node killed
with SIGKILL leaves nothing behind for longer than the lease time: no node needs to clean up
after it. (Before: the set's expiry was set when a lease was taken only, and renewals re-created
an expired set with no expiry at all, ≈ 46 s after the last subscribe.)
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from netcheck.server.hub.backend import HubLimits
from netcheck.server.hub.redis_ids import key

_HOLD = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[4]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""
"""Take or renew lease ARGV[4] (expiry ARGV[3]) in KEYS[1] after dropping leases expired by ARGV[1];
a lease not held yet only while fewer than ARGV[2] are: atomic across nodes. The set expires ARGV[5]
ms from now, which is at or after every lease in it (each expires within the lease time)."""


class Leases:
    """The watcher leases of every session, through the node's command connections."""

    def __init__(self, commands: redis.Redis, limits: HubLimits) -> None:
        self.commands = commands
        self.limits = limits
        self._hold = commands.register_script(_HOLD)

    @property
    def lease_s(self) -> float:
        return self.limits.lease_keepalives * self.limits.keepalive_s

    async def hold(self, session_id: str, lease: str) -> bool:
        """Take or renew `lease`; False when it is not held and the session has no free place.
        Raises RedisError."""
        now_s = time.time()
        held: Any = await self._hold(keys=[key(session_id, "watchers")], args=[
            now_s, self.limits.max_watchers, now_s + self.lease_s, lease, math.ceil(self.lease_s * 1000)])
        return bool(held)

    async def release(self, session_id: str, lease: str) -> None:
        """Give the place back at once; when Redis cannot be told, the lease expires within the lease time."""
        try:
            await self.commands.zrem(key(session_id, "watchers"), lease)
        except RedisError:
            pass
