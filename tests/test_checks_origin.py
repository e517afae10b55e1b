"""`POST /v1/checks` takes checks only from the node's own page or from a program that is no web page
(issue 23): a foreign `Origin` → 403, a body not declared JSON → 415, nothing stored either way; and a
rate for all clients without a token together, beside each client's own.

Why: a browser lets any page post a "simple" request (`text/plain`, no CORS preflight) to any
address, so a hostile page could make each of its visitors post checks from their own address, past
the per-address rate. A real server on loopback (in-process, with its real store); the browser's
side of it in headless Chromium at the end (a hostile page on another origin).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from netcheck.config import ServeLimits
from netcheck.server.app import start_server, tls_context
from netcheck.server.checks import CheckSettings
from netcheck.tokens import create_token
from tests.harness.coturn import _write_self_signed_cert
from tests.harness.servers import start_serve, stop, subprocess_env

SMALL_BODY = json.dumps({"devices": {"secure_context": True, "camera": "not_asked", "microphone": "not_asked",
                                     "speakers": "not_asked"}}).encode()
"""The smallest valid check: the devices the page did not ask for, nothing measured (stored all the same)."""
JSON = {"Content-Type": "application/json"}
SECRET = b"o" * 32


def stored_checks(store_path: Path) -> int:
    db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=10.0)
    try:
        return int(db.execute("SELECT COUNT(*) FROM checks").fetchone()[0])
    finally:
        db.close()


async def post(url: str, headers: dict[str, str], body: bytes = SMALL_BODY, source: str = "127.0.0.1",
               ssl_context: ssl.SSLContext | None = None) -> tuple[int, dict[str, Any]]:
    """One POST /v1/checks from `source` (any 127/8 address is a local source on Linux), exactly these headers."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), ssl=ssl_context if ssl_context else True)
    async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("Content-Type",)) as http:
        async with http.post(url + "/v1/checks", data=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def answers(store_path: Path, cases: dict[str, dict[str, str]], **server_options: Any) -> dict[str, int]:
    """Each case's status against one real server with a store; `{own}` in a header is the node's origin,
    `{own_tls}` the same with https."""
    server = await start_server("127.0.0.1", 0, 0, checks=CheckSettings(store_path), **server_options)
    try:
        got = {}
        for name, headers in cases.items():
            own_over_tls = server.url.replace("http://", "https://")
            status, _ = await post(server.url, {key: value.replace("{own}", server.url).replace("{own_tls}", own_over_tls)
                                                for key, value in headers.items()})
            got[name] = status
        return got
    finally:
        await server.close()


def test_a_foreign_origin_or_a_body_not_declared_json_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    store_path = tmp_path / "node.sqlite3"
    refused = run(answers(store_path, {
        "cross-origin text/plain (a page's simple request)": {"Origin": "http://evil.example", "Content-Type": "text/plain"},
        "cross-origin JSON": {"Origin": "http://evil.example", **JSON},
        "a form's enctype": {"Origin": "https://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
        "an opaque origin (sandboxed frame, file:)": {"Origin": "null", **JSON},
        "the node's host, another port": {"Origin": "http://127.0.0.1:1", **JSON},
        "the node's host and port, https": {"Origin": "{own_tls}", **JSON},
        "the node's own page, text/plain": {"Origin": "{own}", "Content-Type": "text/plain;charset=UTF-8"},
        "no Origin, text/plain": {"Content-Type": "text/plain"},
        "no Origin, no Content-Type": {},
    }))
    assert refused == {
        "cross-origin text/plain (a page's simple request)": 403, "cross-origin JSON": 403, "a form's enctype": 403,
        "an opaque origin (sandboxed frame, file:)": 403, "the node's host, another port": 403,
        "the node's host and port, https": 403, "the node's own page, text/plain": 415,
        "no Origin, text/plain": 415, "no Origin, no Content-Type": 415,
    }
    assert stored_checks(store_path) == 0
    admitted = run(answers(store_path, {
        "the node's own page": {"Origin": "{own}", **JSON},
        "the node's own page, a charset and capitals in the type": {"Origin": "{own}",
                                                                   "Content-Type": "Application/JSON; charset=utf-8"},
        "the CLI or another program (no Origin)": JSON,
    }))
    assert set(admitted.values()) == {201}, admitted
    assert stored_checks(store_path) == 3


def test_refusals_say_why_in_one_sentence_with_a_reason(tmp_path: Path) -> None:
    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        server = await start_server("127.0.0.1", 0, 0, checks=CheckSettings(tmp_path / "node.sqlite3"))
        try:
            return [await post(server.url, {"Origin": "http://evil.example", **JSON}),
                    await post(server.url, {"Content-Type": "text/plain"})]
        finally:
            await server.close()

    (foreign, plain) = run(scenario())
    assert foreign == (403, {"error": "checks are taken from this server's own page only", "reason": "foreign_origin"})
    assert plain[0] == 415 and plain[1]["reason"] == "content_type" and "application/json" in plain[1]["error"]


def test_over_tls_the_pages_origin_is_https(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    _write_self_signed_cert(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> tuple[int, int]:
        server = await start_server("127.0.0.1", 0, 0, checks=CheckSettings(tmp_path / "node.sqlite3"),
                                    tls=tls_context(str(cert), str(key)))
        host = server.url.split("://", 1)[1]
        try:
            return ((await post(server.url, {"Origin": f"https://{host}", **JSON}, ssl_context=trusting))[0],
                    (await post(server.url, {"Origin": f"http://{host}", **JSON}, ssl_context=trusting))[0])
        finally:
            await server.close()

    assert run(scenario()) == (201, 403)  # the page is https://HOST:PORT; a page at http://HOST:PORT is another site


def test_behind_the_trusted_proxy_the_origin_is_the_forwarded_host_and_scheme(tmp_path: Path) -> None:
    """A TLS-terminating balancer at 127.0.0.0/8 forwards https://netcheck.clinic.example's page to the node
    over plain HTTP; from anyone but that proxy the same headers mean nothing."""
    forwarded = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https",
                 "X-Forwarded-Host": "netcheck.clinic.example", **JSON}
    cases = {
        "the public page": {**forwarded, "Origin": "https://netcheck.clinic.example"},
        "the public page, its port spelt out": {**forwarded, "Origin": "https://netcheck.clinic.example:443"},
        "another site": {**forwarded, "Origin": "https://evil.example"},
        "the node's address, not the page's": {**forwarded, "Origin": "{own}"},
        "a client's own claim before the proxy's": {**forwarded, "X-Forwarded-Host": "evil.example, netcheck.clinic.example",
                                                    "Origin": "https://evil.example"},
    }
    trusted = run(answers(tmp_path / "a.sqlite3", cases, trust_proxy="127.0.0.0/8"))
    assert trusted == {"the public page": 201, "the public page, its port spelt out": 201, "another site": 403,
                       "the node's address, not the page's": 403, "a client's own claim before the proxy's": 403}
    untrusted = run(answers(tmp_path / "b.sqlite3", cases, trust_proxy="192.0.2.1"))
    assert untrusted == {"the public page": 403, "the public page, its port spelt out": 403, "another site": 403,
                         "the node's address, not the page's": 201, "a client's own claim before the proxy's": 403}


# --- rates ---------------------------------------------------------------------------------------------


def test_anonymous_checks_share_one_rate_beside_each_addresss_own_but_a_token_holder_has_its_own(tmp_path: Path) -> None:
    """Five addresses, each within its own share (5 at once), against a global 3 at once: the fourth and
    fifth are told the server is busy; a check link's token is not anonymous and still gets through."""
    rates = ServeLimits(check_burst=5, check_every_s=20.0, anonymous_check_burst=3, anonymous_check_every_s=600.0)

    async def scenario() -> tuple[list[int], list[int], int, dict[str, Any]]:
        store_path = tmp_path / "node.sqlite3"
        server = await start_server("127.0.0.1", 0, 0, secret=SECRET, checks=CheckSettings(store_path, rates=rates))
        try:
            anonymous = [(await post(server.url, JSON, source=f"127.0.0.{2 + n}")) for n in range(5)]
            token = create_token(SECRET, "check-1", "check", 600)
            with_token = await post(server.url, {**JSON, "Authorization": f"Bearer {token}"}, source="127.0.0.9")
            return [status for status, _ in anonymous], [with_token[0]], stored_checks(store_path), anonymous[-1][1]
        finally:
            await server.close()

    anonymous, with_token, stored, busy = run(scenario())
    assert anonymous == [201, 201, 201, 429, 429]
    assert with_token == [201]
    assert stored == 4
    assert "too many checks without a check link" in busy["error"] and busy["retry_after_s"] >= 1


def test_an_address_over_its_own_share_takes_nothing_from_everyones(tmp_path: Path) -> None:
    """One address tries 10 times against its share of 2: it takes 2 of everyone's 3, not all 3, so the
    next address gets the last one and the one after is refused by the shared rate."""
    rates = ServeLimits(check_burst=2, check_every_s=600.0, anonymous_check_burst=3, anonymous_check_every_s=600.0)

    async def scenario() -> list[int]:
        server = await start_server("127.0.0.1", 0, 0, checks=CheckSettings(tmp_path / "node.sqlite3", rates=rates))
        try:
            flood = [(await post(server.url, JSON, source="127.0.0.2"))[0] for _ in range(10)]
            return flood + [(await post(server.url, JSON, source=source))[0] for source in ("127.0.0.3", "127.0.0.4")]
        finally:
            await server.close()

    assert run(scenario()) == [201, 201] + [429] * 8 + [201, 429]


# --- in a real browser ----------------------------------------------------------------------------------


HOSTILE_PAGE = """<!doctype html><meta charset="utf-8"><title>a page on another site</title>
<form id="f" method="POST" enctype="text/plain" target="sink" action="{node}/v1/checks">
<input name='{{"devices": {{"secure_context": true, "camera": "not_asked", "microphone": "not_asked", "speakers": "not_asked"}}, "x": "' value='"}}'>
</form><iframe name="sink"></iframe>
<script>
const body = JSON.stringify({body});
async function attack() {{
  const simple = await fetch("{node}/v1/checks", {{method: "POST", mode: "no-cors", body,
                                                 headers: {{"Content-Type": "text/plain"}}}}).then(() => "sent", String);
  const hidden = await fetch("{node}/v1/checks", {{method: "POST", mode: "no-cors", body, referrerPolicy: "no-referrer",
                                                 headers: {{"Content-Type": "text/plain"}}}}).then(() => "sent", String);
  const cors = await fetch("{node}/v1/checks", {{method: "POST", body,
                                               headers: {{"Content-Type": "application/json"}}}}).then(r => String(r.status), String);
  document.getElementById("f").submit();
  document.body.dataset.simple = simple;
  document.body.dataset.hidden = hidden;
  document.body.dataset.cors = cors;
  document.body.dataset.done = "true";
}}
attack();
</script>"""


@pytest.fixture
def hostile_site(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A page on another origin (another port on loopback); yields its URL and a list to put the node's URL in."""
    node: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            page = HOSTILE_PAGE.format(node=node[0], body=SMALL_BODY.decode()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_args: object) -> None:
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}/", node
    finally:
        site.shutdown()
        site.server_close()


@pytest.mark.slow
def test_a_hostile_page_cannot_make_its_visitors_browser_post_checks(tmp_path: Path, hostile_site) -> None:
    """Headless Chromium opens a page of another site that posts the node a check the ways a page can:
    a no-cors `text/plain` fetch, the same with `Referrer-Policy: no-referrer` (its Origin is then
    `null`), and a `text/plain` form (simple requests: no preflight, they reach the node); and a JSON
    fetch (preflighted; the node answers no CORS, so the browser never sends it). Nothing is stored;
    the node's own page still is (tests/test_browser_page.py)."""
    from tests.harness.browser import chromium

    page_url, node = hostile_site
    server = start_serve(env=subprocess_env(NETCHECK_HOME=str(tmp_path)))
    try:
        node.append(server.http_url)
        posts: list[tuple[str, int]] = []
        with chromium() as browser:
            page = browser.new_page()
            page.on("response", lambda response: posts.append((response.request.method, response.status))
                    if response.url.endswith("/v1/checks") else None)
            page.goto(page_url)
            page.wait_for_selector("body[data-done='true']", state="attached", timeout=20_000)
            page.wait_for_timeout(500)  # the form's post lands in the frame
            simple, hidden, cors = (page.get_attribute("body", f"data-{name}") for name in ("simple", "hidden", "cors"))
    finally:
        stop(server.process)
    assert simple == hidden == "sent"  # the browser did send them: only the node can refuse them
    assert cors.startswith("TypeError")  # the preflight found no CORS: the JSON post never left
    assert [status for method, status in posts if method == "POST"] == [403, 403, 403], posts  # 2 fetches, the form
    assert stored_checks(tmp_path / "netcheck.sqlite3") == 0
