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
    "webdriver": "browser",
    # network namespaces
    "client_namespace": "netns", "ClientNamespace": "netns",
}
"""A name a test reaches → the marker that takes it out of the fast tier."""

TIERED_BY_HAND = ("slow", "netns")
"""Markers a test module may still set itself (a long wait on the clock, an accuracy run)."""

OUT_OF_FAST = (*TIERED_BY_HAND, "servers", "browser")

OWN_CODE_PREFIX = "tests"
"""Only the tests' own code is followed (netcheck and libraries are not the tests' choice of servers)."""


def markers_reached(roots: Iterable[Callable[..., object]]) -> set[str]:
    """The tier markers of everything `roots` (a test function, its fixtures' functions) reach."""
    return {REAL_THINGS[name] for name in names_reached(roots) if name in REAL_THINGS}


def names_reached(roots: Iterable[Callable[..., object]]) -> set[str]:
    """Every global and attribute name that `roots` and the tests' own code they name use."""
    names: set[str] = set()
    seen: set[int] = set()
    pending: list[object] = list(roots)
    while pending:
        thing = pending.pop()
        if id(thing) in seen:
            continue
        seen.add(id(thing))
        for function in _functions_of(thing):
            namespace = getattr(function, "__globals__", {})
            for name in _names_in(function.__code__):
                names.add(name)
                found = namespace.get(name)
                if found is not None and _is_own_code(found):
                    pending.append(found)
    return names


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


def _names_in(code: types.CodeType) -> set[str]:
    """Global and attribute names a code object uses, nested functions, lambdas and classes included."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _names_in(constant)
    return names


def _is_own_code(thing: object) -> bool:
    module = getattr(thing, "__module__", None) or ""
    own = module == OWN_CODE_PREFIX or module.startswith(OWN_CODE_PREFIX + ".")
    return own and (inspect.isfunction(thing) or inspect.isclass(thing))
