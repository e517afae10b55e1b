"""One way to refuse (issue 24): every endpoint answers a refusal as `{"error": …, "reason": …}` with a
code from server/refusal.py REASONS, documented in docs/http-api.md; one body reader with a time
limit, so a client that sends its headers and then dribbles the body is refused (408 `too_slow`)
instead of holding a handler (issue 23: `/v1/checks` and tab offers had no time limit); one strict
JSON parser (NaN, Infinity and 1e999 refused) for everything a peer sends.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from netcheck.parse import strict_json
from netcheck.server.app import start_server
from netcheck.server.checks import CheckSettings
from netcheck.server.refusal import REASONS, Refusal
from netcheck.tokens import create_token

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"r" * 32
SESSION = "s1"
BODY_TIMEOUT_S = 0.5


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(SECRET, SESSION, role, 3600)}"}


async def dribbled(url: str, path: str, headers: dict[str, str], give_up_s: float) -> tuple[int, dict[str, Any], float]:
    """POST `path` announcing a 4 kB body and sending one byte of it every 0.1 s: the status and JSON of
    the answer and how long it took; (0, {}, give_up_s) when none came within `give_up_s`."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = "".join(f"{name}: {value}\r\n" for name, value in
                   {"Host": f"{host}:{port}", "Content-Type": "application/json", "Content-Length": "4096",
                    **headers}.items())
    writer.write(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode())
    started_s = time.monotonic()

    async def dribble() -> None:
        for _ in range(4096):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.1)

    trickle = asyncio.ensure_future(dribble())
    try:
        answer = await asyncio.wait_for(reader.read(64 * 1024), give_up_s)
    except asyncio.TimeoutError:
        return 0, {}, give_up_s
    except ConnectionError:  # cut without an answer
        return -1, {}, time.monotonic() - started_s
    finally:
        trickle.cancel()
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.1)  # the server sees the close before it stops (else it lingers 10 s on the body)
    status = int(answer.split(b" ", 2)[1])
    body = answer.split(b"\r\n\r\n", 1)[1]
    return status, json.loads(body) if body else {}, time.monotonic() - started_s


@pytest.mark.parametrize("path, role", [("/v1/checks", None), (f"/v1/sessions/{SESSION}/legs/client/offer", "client"),
                                        (f"/v1/sessions/{SESSION}/estimate", "therapist")])
def test_a_body_dribbled_after_the_headers_is_refused_within_the_limit(tmp_path: Path, path: str, role: str | None) -> None:
    async def body() -> tuple[int, dict[str, Any], float]:
        server = await start_server(secret=SECRET, checks=CheckSettings(tmp_path / "node.sqlite3"),
                                    body_timeout_s=BODY_TIMEOUT_S)
        try:
            return await dribbled(server.url, path, bearer(role) if role else {}, give_up_s=BODY_TIMEOUT_S + 4.0)
        finally:
            await server.close()

    status, answer, took_s = run(body())
    assert (status, answer.get("reason")) == (408, "too_slow"), answer
    assert took_s < BODY_TIMEOUT_S + 1.0


def test_the_body_time_limit_is_ten_seconds_unless_the_server_is_told_otherwise() -> None:
    from netcheck.server import refusal

    assert refusal.BODY_TIMEOUT_S == 10.0


def get(path: str, **options: Any) -> tuple[str, str, dict[str, Any]]:
    return "GET", path, options


def post(path: str, **options: Any) -> tuple[str, str, dict[str, Any]]:
    return "POST", path, options


CASES = {
    "token of no server secret": (post("/v1/udp/key", headers={"Authorization": "Bearer x"}), 401, "no_tokens"),
    "throughput size": (get("/v1/throughput/download?bytes=0"), 400, "bad_query"),
    "throughput test id": (post("/v1/throughput/upload/nothex", data=b"x"), 400, "bad_query"),
    "unknown upload": (get("/v1/throughput/upload/" + "0" * 16), 404, "not_found"),
    "unknown call": (post("/v1/av/sessions/x/report"), 404, "not_found"),
    "offer not JSON": (post("/v1/av/offer", data=b"{not json"), 400, "bad_offer"),
    "offer with NaN": (post("/v1/av/offer", data=b'{"type": "offer", "sdp": "v=0", "audio_offset_ms": NaN}'),
                       400, "bad_offer"),
    "offer too large": (post("/v1/av/offer", data=b" " * (64 * 1024 + 1)), 413, "too_large"),
    "unknown check": (get("/v1/checks/" + "0" * 32), 503, "no_store"),
    "no such file": (get("/web/missing.js"), 404, "not_found"),
    "events without hub": (post(f"/v1/sessions/{SESSION}/events", json={}), 404, "hub_disabled"),
    "report without hub": (get(f"/v1/sessions/{SESSION}/report"), 404, "hub_disabled"),
    "tab without hub": (post(f"/v1/sessions/{SESSION}/legs/client/offer", json={}), 404, "hub_disabled"),
}
HUB_CASES = {
    "no token": (post(f"/v1/sessions/{SESSION}/events", json={}), 401, "missing"),
    "client watching": (get(f"/v1/sessions/{SESSION}/events", headers=bearer("client")), 403, "role"),
    "check token posting": (post(f"/v1/sessions/{SESSION}/events", json={}, headers=bearer("check")), 403, "role"),
    "events with NaN": (post(f"/v1/sessions/{SESSION}/events", headers=bearer("client"),
                             data=b'{"events": [{"type": "summary", "at": "x", "window": {"v": NaN}}]}'), 400, "bad_body"),
    "estimate with Infinity": (post(f"/v1/sessions/{SESSION}/estimate", headers=bearer("therapist"),
                                    data=b'{"client": {"rtt_p95_ms": Infinity}}'), 400, "bad_body"),
    "tab report of no leg": (post(f"/v1/sessions/{SESSION}/legs/client/window", headers=bearer("client"),
                                  json={"leg_id": "0" * 32, "index": 0}), 404, "not_found"),
    "tab report with 1e999": (post(f"/v1/sessions/{SESSION}/legs/client/window", headers=bearer("client"),
                                   data=b'{"leg_id": "' + b"0" * 32 + b'", "index": 0, "downstream": {"rtt_ms": 1e999}}'),
                              400, "bad_body"),
    "check from another origin": (post("/v1/checks", json={}, headers={"Origin": "http://evil.example"}),
                                  403, "foreign_origin"),
    "check as text": (post("/v1/checks", data=b"{}", headers={"Content-Type": "text/plain"}), 415, "content_type"),
    "check not the contract's": (post("/v1/checks", json={"devices": 1}), 400, "bad_body"),
    "check with NaN": (post("/v1/checks", data=b'{"devices": NaN}', headers={"Content-Type": "application/json"}),
                       400, "bad_body"),
}


def test_every_refusal_carries_its_reason_code(tmp_path: Path) -> None:
    async def answers(cases: dict[str, Any], **server_options: Any) -> dict[str, tuple[int, str | None]]:
        server = await start_server(**server_options)
        got = {}
        try:
            async with aiohttp.ClientSession() as http:
                for name, ((method, path, options), _, _) in cases.items():
                    async with http.request(method, server.url + path, **options) as response:
                        body = await response.json(content_type=None)
                        assert set(body) >= {"error", "reason"} and isinstance(body["error"], str), (name, body)
                        got[name] = (response.status, body["reason"])
        finally:
            await server.close()
        return got

    got = run(answers(CASES))
    got.update(run(answers(HUB_CASES, secret=SECRET, checks=CheckSettings(tmp_path / "node.sqlite3"))))
    assert got == {name: (status, reason) for name, (_, status, reason) in {**CASES, **HUB_CASES}.items()}


def test_every_reason_in_the_code_is_one_of_reasons_and_each_is_documented() -> None:
    source = "\n".join(path.read_text() for path in (ROOT / "netcheck").rglob("*.py"))
    used = set(re.findall(r'Refusal\(\d{3}, "([^"]+)"', source)) | set(re.findall(r'busy\(.*, "(\w+)"\)$', source, re.M))
    assert used and used <= REASONS, used - REASONS
    documented = set(re.findall(r"^\| `([^`]+)` \|", (ROOT / "docs" / "http-api.md").read_text(), re.MULTILINE))
    assert REASONS <= documented, REASONS - documented
    with pytest.raises(ValueError):
        Refusal(400, "some new reason", "a reason no one documented")


@pytest.mark.parametrize("raw", [b'{"v": NaN}', b'{"v": Infinity}', b'[-Infinity]', b"[1e999]", b"[-1e999]",
                                 b"[" * 100_000, '{"v": 1}'.encode("utf-16"), b"\xff", b"", b"{"])
def test_strict_json_refuses_what_json_has_not_or_a_double_cannot_hold(raw: bytes) -> None:
    with pytest.raises(ValueError):
        strict_json(raw)


def test_strict_json_reads_json() -> None:
    assert strict_json(b'{"a": [1, 2.5, -3e2, null, true, "\\u00e9"]}') == {"a": [1, 2.5, -300.0, None, True, "é"]}
    assert strict_json("1e308") == 1e308
