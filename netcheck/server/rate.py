"""The server's one rate limiter: a token bucket per key, bounded in the keys it remembers.

Every rate the server holds a peer to is one of these: the reflector's packets per source address,
the hub's posts per leg, a session tab's offers, reports and echoes, the browser check's checks per
client, the voice channel's messages. Pure: the caller passes the clock, so tests drive it directly.

Bounded: beyond `max_keys` the least recently seen key is forgotten and starts again with a full
burst. A flood of fresh keys therefore gets each key's burst at most, and never more memory.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_KEYS = 10_000
"""Keys remembered unless the caller says otherwise (the reflector's sources: about 1 MB)."""


class TokenBuckets:
    """`rate_per_s` tokens a second per key, up to `burst`; each admitted event costs one."""

    def __init__(self, rate_per_s: float, burst: float, max_keys: int = MAX_KEYS) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now_s: float) -> float:
        """0.0 when a token was taken for `key`, else the seconds until one will be there (none taken)."""
        tokens, last_s = self._buckets.pop(key, (self.burst, now_s))
        tokens = min(self.burst, tokens + max(0.0, now_s - last_s) * self.rate_per_s)
        admitted = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if admitted else tokens, now_s)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return 0.0 if admitted else (1.0 - tokens) / self.rate_per_s

    def allow(self, key: str, now_s: float) -> bool:
        """Whether `key` may act now (a token is taken when it may)."""
        return self.take(key, now_s) == 0.0

    def __len__(self) -> int:
        """Keys remembered now."""
        return len(self._buckets)


def retry_after_s(wait_s: float) -> int:
    """A `take` wait as Retry-After's whole seconds: past the wait, never 0 (coming back at once is refused again)."""
    return max(1, int(wait_s) + 1)
