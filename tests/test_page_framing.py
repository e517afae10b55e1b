"""Who may frame the node's pages (issue 23): by default only the node itself (`frame-ancestors 'self'`
and `X-Frame-Options: SAMEORIGIN`), so a hostile site cannot lay the panel under its own buttons;
`[serve] frame_ancestors` adds the clinic's call page. Every page the node serves, checked by its headers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from netcheck.config import load_config
from netcheck.errors import ConfigError
from netcheck.server.web import WEB_DIR

SECRET = b"page-framing-test-secret-0123456789"
PAGES = ("/check", "/session/s1", "/session/s1/report", "/session/s1/client",
         *(f"/web/{path.name}" for path in sorted(WEB_DIR.glob("*.html"))))
"""Every HTML page: the check, the therapist's panel and report, the session tab, and each file as /web/ serves it."""
CALL_PAGE = "https://call.clinic.example"


async def page_headers(frame_ancestors: tuple[str, ...]) -> dict[str, tuple[str, str | None]]:
    """Each page's Content-Security-Policy and X-Frame-Options, from a node in this process."""
    from netcheck.server.app import start_server

    server = await start_server(secret=SECRET, frame_ancestors=frame_ancestors)
    try:
        async with aiohttp.ClientSession() as http:
            found = {}
            for path in PAGES:
                async with http.get(f"{server.url}{path}") as page:
                    assert page.status == 200 and page.content_type == "text/html", path
                    found[path] = (page.headers["Content-Security-Policy"], page.headers.get("X-Frame-Options"))
            return found
    finally:
        await server.close()


def directives(policy: str) -> dict[str, str]:
    return {part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2] for part in policy.split(";") if part.strip()}


def test_by_default_only_the_node_itself_may_frame_any_page():
    for path, (policy, frame_options) in asyncio.run(page_headers(())).items():
        assert directives(policy)["frame-ancestors"] == "'self'", path
        assert directives(policy)["default-src"] == "'self'", path
        assert frame_options == "SAMEORIGIN", path


def test_the_clinics_call_page_may_frame_every_page_when_configured():
    for path, (policy, frame_options) in asyncio.run(page_headers((CALL_PAGE,))).items():
        assert directives(policy)["frame-ancestors"] == f"'self' {CALL_PAGE}", path
        assert directives(policy)["connect-src"] == "'self'", path  # the rest of the policy unchanged
        assert frame_options is None, path  # it cannot name another site; frame-ancestors decides


def write(home: Path, text: str) -> dict[str, str]:
    (home / "config.toml").write_text(text)
    return {"NETCHECK_HOME": str(home)}


def test_the_config_takes_origins_to_frame_the_pages(tmp_path: Path):
    assert load_config(write(tmp_path, "")).serve.frame_ancestors == ()
    env = write(tmp_path, '[serve]\nframe_ancestors = ["https://Call.clinic.example", "https://*.clinic.example:8443"]\n')
    assert load_config(env).serve.frame_ancestors == ("https://call.clinic.example", "https://*.clinic.example:8443")


@pytest.mark.parametrize("value", [
    '"https://call.clinic.example"',  # a string, not a list
    '["*"]',  # any site: clickjacking again
    '["https://a.example; script-src *"]',  # would add a directive
    '["https://a.example https://b.example"]',
    '["https://a.example/call"]',
    '["\'none\'"]',
    '["javascript:alert(1)"]',
    '[1]',
])
def test_anything_but_origins_is_refused_naming_the_key(tmp_path: Path, value: str):
    with pytest.raises(ConfigError, match="^serve.frame_ancestors: "):
        load_config(write(tmp_path, f"[serve]\nframe_ancestors = {value}\n"))


def test_netcheck_serve_frames_its_pages_as_its_config_says(tmp_path: Path):
    """The config's [serve] reaches the node `netcheck serve` starts."""
    import urllib.request

    from tests.harness.servers import start_serve, stop, subprocess_env

    write(tmp_path, f'[serve]\nframe_ancestors = ["{CALL_PAGE}"]\n')
    running = start_serve(env=subprocess_env(NETCHECK_HOME=str(tmp_path)))
    try:
        with urllib.request.urlopen(f"{running.http_url}/check", timeout=10) as page:
            policy, frame_options = page.headers["Content-Security-Policy"], page.headers.get("X-Frame-Options")
    finally:
        stop(running.process)
    assert directives(policy)["frame-ancestors"] == f"'self' {CALL_PAGE}" and frame_options is None
