"""The suite's tiers, decided in one place from what each test reaches (tests/conftest.py applies it).

`scripts/test --fast` runs the tests marked `fast`: every test that reaches none of the things
named in REAL_THINGS and is not marked `slow` or `netns` by hand. A test that starts a real
redis-server, InfluxDB, VictoriaMetrics, coturn or irtt is `servers`; one that drives Chromium (or
any other browser) is `browser`; one that builds a network namespace is `netns` (and so `slow`).
"Reaches" means: the test's function, the fixtures it uses (theirs too) and every function or
class of the tests' own code that those name, followed to the end; so a new test that starts a
real server through a helper of its module, a fixture or a harness class lands outside the fast
tier without anyone remembering to mark it. A loopback `netcheck serve` is not a real server here:
the fast tier is for it.
"""

from __future__ import annotations

import contextlib
import dis
import fcntl
import functools
import inspect
import os
import tempfile
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

REAL_THINGS: dict[str, str] = {
    # the harness's entry points to real servers
    "InfluxDB1": "servers", "VictoriaMetrics": "servers", "RedisServer": "servers", "Coturn": "servers",
    "IrttServer": "servers", "run_irtt_client": "servers", "measure_irtt": "servers",
    # browsers, however launched
    "chromium": "browser", "namespaced_chromium": "browser", "sync_playwright": "browser",
    "async_playwright": "browser", "firefox": "browser", "webkit": "browser", "geckodriver": "browser",
    "webdriver": "browser",
    # network namespaces
    "client_namespace": "netns", "ClientNamespace": "netns",
}
"""A name a test reaches → the marker that takes it out of the fast tier."""

ALONE_NAMES = frozenset({
    # A/V calls (they take a core each; the server refuses calls from 85 % CPU), the agent's
    # windows, the impairment relay's delays, a terminal drawn live
    "AvProbe", "probe_in_process", "open_call", "run_page_check", "RTCPeerConnection", "Agent", "Relay",
    "RelayProcess",
    "Terminal", "Tmux",
})
"""Names that make a fast test `alone`: under `scripts/test --fast`'s two processes it runs with
nothing beside it (side_by_side). So does a test that runs `check` with its A/V call (no
"--no-av" among its strings) or `probe av`: a check judges what it measured, and a second core's
load shows in its figures (seen: a check beside another check recommended the phone)."""

TIERED_BY_HAND = ("slow", "netns")
"""Markers a test module may still set itself (a long wait on the clock, an accuracy run)."""

OUT_OF_FAST = (*TIERED_BY_HAND, "servers", "browser")

OWN_CODE_PREFIX = "tests"
"""Only the tests' own code is followed (netcheck and libraries are not the tests' choice of servers)."""


def markers_reached(roots: Iterable[Callable[..., object]]) -> set[str]:
    """The tier markers of everything `roots` (a test function, its fixtures' functions) reach."""
    return {REAL_THINGS[name] for name in names_reached(roots) if name in REAL_THINGS}


def is_alone(names: set[str], command_lines: Iterable[frozenset[str]]) -> bool:
    """A fast test that must run with nothing beside it: it reaches one of ALONE_NAMES, or one of
    its calls runs `check` with the A/V call (no "--no-av" in the same call) or `probe av`."""
    def runs_a_call(words: frozenset[str]) -> bool:
        options = any(word.startswith("--") for word in words)  # a command line, not an assertion's text
        return options and (("check" in words and "--no-av" not in words) or {"probe", "av"} <= words)

    return bool(names & ALONE_NAMES) or any(runs_a_call(words) for words in command_lines)


def names_reached(roots: Iterable[Callable[..., object]]) -> set[str]:
    """Every global and attribute name that `roots` and the tests' own code they name use."""
    return _reach(roots)[0]


def command_lines_reached(roots: Iterable[Callable[..., object]]) -> set[frozenset[str]]:
    """The string constants of each call in the same code (a command line's words, as one set)."""
    return _reach(roots)[1]


def _reach(roots: Iterable[Callable[..., object]]) -> tuple[set[str], set[frozenset[str]]]:
    names: set[str] = set()
    strings: set[frozenset[str]] = set()
    seen: set[int] = set()
    pending: list[object] = [root for root in roots if _is_own_code(root)]  # not pytest's own fixtures
    while pending:
        thing = pending.pop()
        if id(thing) in seen:
            continue
        seen.add(id(thing))
        for function in _functions_of(thing):
            namespace = getattr(function, "__globals__", {})
            strings |= _calls_in(function.__code__)
            for name in _names_in(function.__code__):
                names.add(name)
                found = namespace.get(name)
                if found is not None and _is_own_code(found):
                    pending.append(found)
    return names, strings


def _functions_of(thing: object) -> list[types.FunctionType]:
    """The plain functions behind a function (unwrapped: hypothesis, functools.wraps) or a class."""
    if inspect.isclass(thing):
        found: list[types.FunctionType] = []
        for klass in thing.__mro__:
            if _is_own_code(klass):
                for member in vars(klass).values():
                    member = getattr(member, "__func__", member)  # staticmethod, classmethod
                    if isinstance(member, property):
                        found.extend(f for f in (member.fget, member.fset) if f is not None)
                    elif inspect.isfunction(member):
                        found.append(member)
        return found
    inner = getattr(getattr(thing, "hypothesis", None), "inner_test", None)
    function = inspect.unwrap(inner or thing) if callable(thing) else None
    return [function] if inspect.isfunction(function) else []


@functools.lru_cache(maxsize=None)
def _names_in(code: types.CodeType) -> frozenset[str]:
    """Global and attribute names a code object uses, nested functions, lambdas and classes included."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _names_in(constant)
    return frozenset(names)


@functools.lru_cache(maxsize=None)
def _calls_in(code: types.CodeType) -> frozenset[frozenset[str]]:
    """String constants loaded between one call and the next: roughly, each call's own words."""
    found: set[frozenset[str]] = set()
    words: set[str] = set()
    for instruction in dis.get_instructions(code):
        if instruction.opname == "LOAD_CONST":
            pending: list[object] = [instruction.argval]
            while pending:
                constant = pending.pop()
                if isinstance(constant, str):
                    words.add(constant)
                elif isinstance(constant, (tuple, frozenset)):
                    pending.extend(constant)
                elif isinstance(constant, types.CodeType):
                    found |= _calls_in(constant)
        elif instruction.opname.startswith("CALL") and words:
            found.add(frozenset(words))
            words = set()
    if words:
        found.add(frozenset(words))
    return frozenset(found)


def _is_own_code(thing: object) -> bool:
    module = getattr(thing, "__module__", None) or ""
    own = module == OWN_CODE_PREFIX or module.startswith(OWN_CODE_PREFIX + ".")
    return own and (inspect.isfunction(thing) or inspect.isclass(thing))


@contextlib.contextmanager
def side_by_side(alone: bool) -> Iterator[None]:
    """Under pytest-xdist: a test that may run beside another holds a shared lock, an `alone` test
    an exclusive one, so it starts only when the other process is between tests and nothing starts
    beside it. A turnstile keeps a waiting `alone` test from being overtaken forever. Without
    xdist (one process) this does nothing."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        yield
        return
    folder = Path(tempfile.gettempdir())
    with open(folder / f"netcheck-tests-{run}.turnstile", "a") as turnstile, \
            open(folder / f"netcheck-tests-{run}.lock", "a") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
