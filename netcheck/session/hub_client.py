"""The agent's side of the session hub: post this leg's summaries and warnings (docs/session-hub.md).

Best effort and never in the way: events are stored locally first; posting runs in the
background, one request at a time, with a short timeout; what fails waits (bounded) for the next
window. A refused token (401/403) or a server without a hub (404) is reported once and posting
stops: retrying cannot fix it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from netcheck.net.httpio import BodyTooLarge, read_bounded

POST_TIMEOUT_S = 3.0
MAX_EVENTS_PER_POST = 20
MAX_WAITING_EVENTS = 200
"""About 15 minutes of 5 s windows; older unsent events are dropped (they are in the local store)."""
HUB_KEYS_SET_BY_SERVER = ("id", "leg", "session_id")


class HubPoster:
    def __init__(self, server_url: str, session_id: str, token: str,
                 on_event: Callable[[str], None] = lambda message: None) -> None:
        self.url = f"{server_url}/v1/sessions/{session_id}/events"
        self.token = token
        self.on_event = on_event
        self.waiting: deque[dict[str, Any]] = deque(maxlen=MAX_WAITING_EVENTS)
        self.refused = False
        self.posted = 0
        self._task: asyncio.Task[None] | None = None
        self._http: Any = None
        self._failing = False

    def send(self, events: list[Mapping[str, Any]]) -> None:
        """Queue events and start posting them if no post is under way; returns at once."""
        if self.refused:
            return
        self.waiting.extend({k: v for k, v in event.items() if k not in HUB_KEYS_SET_BY_SERVER} for event in events)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._post_waiting())

    async def close(self, timeout_s: float = 2.0) -> None:
        """Give the post under way a moment to finish, then close the connection."""
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except asyncio.TimeoutError:
                self._task.cancel()
        if self._http is not None:
            await self._http.close()

    async def _post_waiting(self) -> None:
        while self.waiting and not self.refused:
            batch = [self.waiting.popleft() for _ in range(min(MAX_EVENTS_PER_POST, len(self.waiting)))]
            status, reason = await self._post(batch)
            if status == 202:
                self.posted += len(batch)
                if self._failing:
                    self.on_event("session hub reachable again")
                self._failing = False
                continue
            if status in (401, 403, 404):
                self.refused = True
                self.on_event(f"session hub refused this agent's events ({reason}); in-call warnings will "
                              "not reach the therapist's view. Check the token (netcheck token create).")
                return
            self.waiting.extendleft(reversed(batch))  # retried after the next window
            if not self._failing:
                self.on_event(f"session hub unavailable ({reason}); events wait and are retried")
            self._failing = True
            return

    async def _post(self, events: list[dict[str, Any]]) -> tuple[int, str]:
        import aiohttp  # only once a session's agent posts: not on every command's start

        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_S))
        try:
            async with self._http.post(self.url, json={"events": events}, allow_redirects=False,
                                       headers={"Authorization": f"Bearer {self.token}"}) as response:
                body = await read_bounded(response, 4096)
                return response.status, f"HTTP {response.status} {body[:200].decode(errors='replace')}".strip()
        except BodyTooLarge:
            return 0, "answer too large"
        except asyncio.TimeoutError:
            return 0, f"no answer within {POST_TIMEOUT_S:g} s"
        except aiohttp.ClientError as error:
            return 0, type(error).__name__
