"""axe-core on a page as it is now (issue 26: accessibility measured, not looked at).

axe-core comes with the PyPI package `axe-playwright-python` (its `axe.min.js`); it is injected with
Playwright's `evaluate`, which the pages' Content-Security-Policy does not govern. The rules run are
WCAG 2.0 and 2.1, levels A and AA; a violation fails the test with the rule, its impact, the first
element it names and the state the page was in.
"""

from __future__ import annotations

WCAG_21_AA_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")


def violations(page) -> list[dict]:
    """axe-core's violations of WCAG 2.1 A/AA on `page` (a Playwright Page) as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    options = {"runOnly": {"type": "tag", "values": list(WCAG_21_AA_TAGS)}, "resultTypes": ["violations"]}
    return Axe().run(page, options=options).response["violations"]


def assert_accessible(page, state: str) -> None:
    """No WCAG 2.1 A/AA violation on `page`; else fail on the first, naming `state`, the rule and the element."""
    found = violations(page)
    if found:
        first = found[0]
        targets = [node["target"] for node in first["nodes"][:3]]
        raise AssertionError(f"axe-core, page state {state!r}: {first['id']} ({first['impact']}) on {targets}: "
                             f"{first['help']} — {len(found)} rule(s) violated in all")
