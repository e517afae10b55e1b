"""The suite's tiers, decided in one place from what each test reaches (tests/conftest.py applies it).

`scripts/test --fast` runs the tests marked `fast`: every test that reaches none of the things
named here and is not marked `slow` or `netns` by hand. A test that starts a real redis-server,
InfluxDB, VictoriaMetrics, coturn or irtt is `servers`; one that drives Chromium (or any other
browser) is `browser`; one that builds a network namespace is `netns` (and so `slow`); one whose
assertions stand on measured figures — an A/V call, a check that judges what it measured, the
agent's windows, the impairment relay's delays, a live terminal — is `measures`. "Reaches" means:
the test's function, the fixtures it uses (theirs too) and every function or class of the tests'
own code that those name, followed to the end, and the words of each call in that code (a
command line); so a new test lands in its tier without anyone remembering to mark it. A loopback
`netcheck serve` is not a real server here: the fast tier is for it. The fast tier runs in two
processes; everything else runs alone (docs/design-notes.md, "The suite in tiers").
"""

from __future__ import annotations

import dis
import functools
import inspect
import types
from collections.abc import Callable, Iterable

REAL_THINGS: dict[str, str] = {
    # the harness's entry points to real servers
    "InfluxDB1": "servers", "VictoriaMetrics": "servers", "RedisServer": "servers", "Coturn": "servers",
    "IrttServer": "servers", "run_irtt_client": "servers", "measure_irtt": "servers",
    # browsers, however launched
    "chromium": "browser", "namespaced_chromium": "browser", "sync_playwright": "browser",
    "async_playwright": "browser", "firefox": "browser", "webkit": "browser", "geckodriver": "browser",
    "webdriver": "browser", "CHROMIUM": "browser", "xvfb": "browser",
    # network namespaces
    "client_namespace": "netns", "ClientNamespace": "netns",
}
"""A name a test reaches → the marker that takes it out of the fast tier."""

MEASURING_NAMES = frozenset({
    # A/V calls (a call takes a core; the server refuses calls from 85 % CPU), the agent's windows,
    # the impairment relay's delays, a terminal drawn live
    "AvProbe", "probe_in_process", "open_call", "run_page_check", "RTCPeerConnection", "Agent", "Relay",
    "RelayProcess", "Terminal", "Tmux",
})
"""Names that make a test `measures`. So does a call that runs `check` with its A/V call (no
"--no-av" among the call's words) or `probe av`. Seen when such tests ran beside others: a
`check --quick` recommended the phone, then audio only — its A/V call short of a core."""

TIERED_BY_HAND = ("slow", "netns", "measures", "beside")
"""Markers a test module may still set itself: a long wait on the clock, an accuracy run,
`measures` for a figure the test takes itself (a p99, a burst's length, a budget in seconds),
which no name it reaches gives away, and `beside` for a test that waits on the clock for a minute
or more with next to no CPU and times nothing (it runs beside the serial phase). `scripts/test`
runs the slow tests that do not measure beside each other, so a test that times anything must say so."""

OUT_OF_FAST = (*TIERED_BY_HAND, "servers", "browser", "measures")

OWN_CODE_PREFIX = "tests"
"""Only the tests' own code is followed (netcheck and libraries are not the tests' choice of servers)."""


def markers_reached(roots: Iterable[Callable[..., object]]) -> set[str]:
    """The tier markers of everything `roots` (a test function, its fixtures' functions) reach."""
    return {REAL_THINGS[name] for name in names_reached(roots) if name in REAL_THINGS}


def measures(names: set[str], command_lines: Iterable[frozenset[str]]) -> bool:
    """Its assertions stand on measured figures: it reaches one of MEASURING_NAMES, or one of its
    calls runs `check` with the A/V call (no "--no-av" in the same call) or `probe av`."""
    def runs_a_call(words: frozenset[str]) -> bool:
        options = any(word.startswith("--") for word in words)  # a command line, not an assertion's text
        return options and (("check" in words and "--no-av" not in words) or {"probe", "av"} <= words)

    return bool(names & MEASURING_NAMES) or any(runs_a_call(words) for words in command_lines)


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

