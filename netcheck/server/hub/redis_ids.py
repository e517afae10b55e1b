"""The Redis hub's names: its keys, how stream ids map to SSE ids, and an entry as an SSE frame.

Shared by the backend (redis_backend.py), the node's reader and watchers (redis_reader.py) and the
leases (redis_leases.py), so that none of them imports another for a name.
"""

from __future__ import annotations

import json

from netcheck.server.hub.events import sse_frame, stamp

SEQ_PER_MS = 1000
NOT_LIVE_FRAME = b": not live: the session store (Redis) is unreachable; reconnect with Last-Event-ID\n\n"
UNAVAILABLE = "session store unavailable (Redis): events are not accepted now; retry later"

IdPair = tuple[int, int]
"""A stream id `<ms>-<seq>` as numbers, which compare in stream order."""


def sse_id(stream_id: bytes | str) -> int:
    """`<ms>-<seq>` → the SSE id `ms × 1000 + seq`."""
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms) * SEQ_PER_MS + int(seq)


def stream_id(event_id: int) -> str:
    """The SSE id back to the stream id it names (ids of the in-memory hub map to 1970: all is newer)."""
    return f"{event_id // SEQ_PER_MS}-{event_id % SEQ_PER_MS}"


def key(session_id: str, what: str) -> str:
    """A session's key; the hash tag `{sid}` keeps a session's keys on one Redis Cluster shard."""
    return f"netcheck:hub:{{{session_id}}}:{what}"


def id_pair(entry_id: bytes | str) -> IdPair:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def id_text(pair: IdPair) -> str:
    return f"{pair[0]}-{pair[1]}"


def frame(session_id: str, entry_id: bytes, fields: dict[bytes, bytes]) -> bytes | None:
    """The entry as an SSE frame; None for an entry no node wrote (skipped rather than stopping the reader)."""
    try:
        event = json.loads(fields[b"event"])
        return sse_frame(stamp(event, sse_id(entry_id), session_id, fields[b"leg"].decode()))
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
