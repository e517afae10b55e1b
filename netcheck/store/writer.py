"""The node's store writes, in one thread of their own: a slow commit never stalls the event loop.

`netcheck serve` measures on its event loop (the reflector answers there, the media peer and the
tabs' windows run there). A commit is an fsync (`synchronous=FULL`, store/local.py): a millisecond
on an idle SSD, hundreds on a busy disk or a network volume. Made on the loop, every such wait was
a stall of everything the node measures. So every write of the server (a check, a tab's window,
session events, points, the outbox's lease and marks) goes to `StoreWriter`: one worker thread with
its own SQLite connection (a connection belongs to the thread that made it), writes in the order
they were asked for, the loop awaiting each result. Reads stay on the loop's own connection
(`CheckEndpoints.store`): in WAL mode a reader never waits for a writer, and they are short.

`synchronous` stays FULL: a check the server answered 201 for survives a power cut. Off the loop
it costs the loop nothing, only the writer's queue; `synchronous=NORMAL` (WAL's usual setting,
which may lose the last commits in a power cut, never corrupts) was not needed for that.

A fault hook, `NETCHECK_FAULT_STORE_WRITE_MS` (store/local.py, `FAULT_SLOW_WRITE_ENV`), makes every
write of a LocalStore sleep that long inside its transaction, in whichever thread writes, as a
slow disk would; tests/test_store_stall.py and docs/deploy.md use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from netcheck.config import StoreLimits
from netcheck.store.local import LocalStore

T = TypeVar("T")


class StoreWriter:
    """A LocalStore that lives in one worker thread; `await write(action)` runs `action(store)` there."""

    def __init__(self, path: Path, limits: StoreLimits = StoreLimits()) -> None:
        """Opens the connection in the worker thread (StoreError, as LocalStore, when it cannot)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netcheck-store-writer")
        try:
            self._store = self._executor.submit(LocalStore, path, None, None, limits).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    async def write(self, action: Callable[[LocalStore], T]) -> T:
        """`action(store)` in the writer thread, after every write asked for before it; its result or error."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, action, self._store)

    def close(self) -> None:
        """Finish the writes already asked for, then close the connection (waits for them)."""
        self._executor.submit(self._store.close)
        self._executor.shutdown(wait=True)
