"""asyncio beside one Chromium per module (tests/harness/browser.py, `one_chromium_per_module`).

While a module's Playwright driver lives, Playwright's sync API marks its loop as the running loop
of the test's thread, and `asyncio.run` there refuses to start. A module that shares one Chromium
and also has in-process tests (a server in the test's own loop) runs them in a thread of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_in_own_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coroutine)` in a fresh thread; its result, or its exception raised here."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-loop") as pool:
        return pool.submit(asyncio.run, coroutine).result()
