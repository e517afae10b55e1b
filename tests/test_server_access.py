"""A server that can face the internet (issue 15): fair shares with 429 + Retry-After, and
`serve --require-token` refusing every measuring endpoint without a valid token."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from netcheck.model import Status
from netcheck.probes.av import AvProbe, AvProbeSettings
from netcheck.server.admission import Busy, FairShare, Slot, client_of
from netcheck.server.app import start_server
from netcheck.server.headroom import ShortOfCpu
from netcheck.tokens import create_token

SECRET = b"k" * 32


# --- fair shares ---------------------------------------------------------------------------------

def test_a_fair_share_caps_each_client_and_the_total_and_says_how_long_to_wait() -> None:
    now = [100.0]
    share = FairShare("streams", per_client=2, total=3, expected_hold_s=8.0, clock=lambda: now[0])
    first, second = share.acquire("a"), share.acquire("a")
    assert isinstance(first, Slot) and isinstance(second, Slot)
    refused = share.acquire("a")
    assert isinstance(refused, Busy) and refused.retry_after_s == 8 and "per client" in refused.reason
    now[0] = 103.0
    assert isinstance(share.acquire("b"), Slot)  # another client still gets in ...
    full = share.acquire("c")
    assert isinstance(full, Busy) and full.retry_after_s == 5 and "in use" in full.reason  # ... until all are taken
    first.release()
    first.release()  # releasing twice is harmless
    assert isinstance(share.acquire("c"), Slot)
    now[0] = 500.0
    late = share.acquire("c")
    assert isinstance(late, Busy) and late.retry_after_s == 1  # overdue holders: ask again soon, not never


def test_two_addresses_of_one_64_share_a_slot_and_two_64s_do_not() -> None:
    """An IPv6 client's share is its /64 (a household holds a whole one); IPv4 is the address itself."""
    share = FairShare("A/V sessions", per_client=1, total=10, expected_hold_s=10.0)

    def admitted(remote: str) -> bool:
        return isinstance(share.acquire(client_of(remote, None)), Slot)

    assert admitted("2001:db8:1:2::a")
    assert not admitted("2001:db8:1:2:8000:0:0:b")  # the same /64
    assert admitted("2001:db8:1:3::a")  # the next /64
    assert admitted("192.0.2.1") and not admitted("::ffff:192.0.2.1") and admitted("192.0.2.2")
    assert client_of("2001:db8:1:2::a", "s1", "client") == "session:s1:client"  # a token's leg, as before


def test_an_ipv6_clients_share_is_its_64_behind_a_proxy() -> None:
    """A real server behind a trusted proxy: eight addresses of one /64 fill one client's eight streams,
    a ninth address of that /64 waits (429); an address of another /64 does not."""
    async def scenario() -> tuple[int, int]:
        server = await start_server("127.0.0.1", 0, 0, trust_proxy="127.0.0.1")
        held: list[aiohttp.ClientResponse] = []
        try:
            async with aiohttp.ClientSession() as http:
                async def download(address: str) -> int:
                    response = await http.get(f"{server.url}/v1/throughput/download?bytes=50000000",
                                              headers={"X-Forwarded-For": address})
                    held.append(response)  # not read: the stream keeps its slot
                    return response.status

                for index in range(8):
                    assert await download(f"2001:db8:1:2::{index + 1:x}") == 200
                same_64, other_64 = await download("2001:db8:1:2:ffff:ffff:ffff:ffff"), await download("2001:db8:1:3::1")
                for response in held:
                    response.close()
                return same_64, other_64
        finally:
            await server.close()

    assert asyncio.run(scenario()) == (429, 200)


def test_a_third_call_from_the_same_client_waits_its_turn_and_then_runs() -> None:
    """Two A/V sessions per client: the third probe is told 429 + Retry-After, says so in one
    sentence, waits, and completes once a call has ended."""
    messages: list[str] = []

    async def scenario():
        server = await start_server("127.0.0.1", 0, 0)
        server.media.share.expected_hold_s = 2.0  # these calls' length (the default, 10 s, is a check's call)
        try:
            first = [asyncio.ensure_future(AvProbe(server.url, AvProbeSettings(duration_s=2.0)).run())
                     for _ in range(2)]
            while len(server.media.sessions) < 2:  # until both calls hold the client's share
                await asyncio.sleep(0.05)
            started_s = time.monotonic()
            third = await AvProbe(server.url, AvProbeSettings(duration_s=0.5, on_busy=messages.append)).run()
            return await asyncio.gather(*first), third, time.monotonic() - started_s
        finally:
            await server.close()

    first, second, waited_s = asyncio.run(scenario())
    assert all(call.status == Status.OK for call in first), [call.error for call in first]
    assert second.status == Status.OK, second.error
    assert messages and messages[0].startswith("the clinic's test server is busy, retrying in ")
    assert waited_s >= 1.0


# --- serve --require-token -------------------------------------------------------------------------

TOKEN_CASES = {
    "missing": None,
    "malformed": "Bearer not-a-token",
    "wrong scheme": "Basic dXNlcjpwYXNz",
    "bad signature": "Bearer " + create_token(b"x" * 32, "s1", "client", 7 * 86400),
    "expired": "Bearer " + create_token(SECRET, "s1", "client", 60, now_s=time.time() - 3600),
}
VALID = {  # made at collection: valid for the longest a token may be, not for the minutes a suite takes to get here
    "client": "Bearer " + create_token(SECRET, "s1", "client", 7 * 86400),
    "check": "Bearer " + create_token(SECRET, "check-42", "check", 7 * 86400),
}
ENDPOINTS = [
    ("POST", "/v1/udp/key", None),
    ("POST", "/v1/av/offer", {"type": "offer", "sdp": "v=0"}),
    ("POST", "/v1/av/sessions/0123456789abcdef/report", {}),
    ("GET", "/v1/throughput/download?bytes=1000", None),
    ("POST", "/v1/throughput/upload/0123456789abcdef0123", b"x" * 100),
    ("GET", "/v1/throughput/upload/0123456789abcdef0123", None),
    ("GET", "/v1/throughput/download/0123456789abcdef0123", None),
    ("POST", "/v1/checks", {"devices": {}}),
    ("GET", "/v1/checks/0123456789abcdef0123456789abcdef", None),
]


def request_all(require_token: bool, authorization: str | None) -> dict[str, tuple[int, dict]]:
    async def scenario() -> dict[str, tuple[int, dict]]:
        server = await start_server("127.0.0.1", 0, 0, secret=SECRET, require_token=require_token)
        answers: dict[str, tuple[int, dict]] = {}
        headers = {"Authorization": authorization} if authorization else {}
        try:
            async with aiohttp.ClientSession(headers=headers) as http:
                for method, path, body in ENDPOINTS:
                    kwargs = {"json": body} if isinstance(body, dict) else {"data": body} if body else {}
                    async with http.request(method, server.url + path, **kwargs) as response:
                        await response.read()
                        answers[path] = (response.status, dict(response.headers))
                async with http.get(server.url + "/v1/info") as response:
                    answers["/v1/info"] = (response.status, await response.json())
        finally:
            await server.close()
        return answers

    return asyncio.run(scenario())


@pytest.mark.parametrize("case", TOKEN_CASES)
def test_require_token_refuses_every_measuring_endpoint_without_a_valid_token(case: str) -> None:
    answers = request_all(require_token=True, authorization=TOKEN_CASES[case])
    for method, path, _ in ENDPOINTS:
        status, headers = answers[path]
        assert status == 401, (method, path, status)
        assert headers.get("WWW-Authenticate") == "Bearer"
    status, info = answers["/v1/info"]
    assert status == 200 and info["token_required"] is True
    assert "udp_key" not in info  # no key for the UDP reflector either: it answers no datagram of theirs


@pytest.mark.parametrize("role", VALID)
def test_require_token_lets_a_valid_token_of_any_measuring_role_through(role: str) -> None:
    answers = request_all(require_token=True, authorization=VALID[role])
    for method, path, _ in ENDPOINTS:
        assert answers[path][0] != 401, (method, path, answers[path][0])
    assert answers["/v1/throughput/download?bytes=1000"][0] == 200
    assert answers["/v1/info"][1]["udp_key"]


def test_without_require_token_anyone_measures_but_a_wrong_token_is_still_refused() -> None:
    anonymous = request_all(require_token=False, authorization=None)
    assert anonymous["/v1/throughput/download?bytes=1000"][0] == 200 and anonymous["/v1/info"][1]["udp_key"]
    wrong = request_all(require_token=False, authorization=TOKEN_CASES["bad signature"])
    assert wrong["/v1/throughput/download?bytes=1000"][0] == 401


def test_a_check_token_cannot_post_to_a_sessions_hub() -> None:
    async def scenario() -> int:
        server = await start_server("127.0.0.1", 0, 0, secret=SECRET)
        try:
            async with aiohttp.ClientSession(headers={"Authorization": VALID["check"]}) as http:
                async with http.post(server.url + "/v1/sessions/check-42/events", json=[]) as response:
                    return response.status
        finally:
            await server.close()

    assert asyncio.run(scenario()) == 403


def offer_to_a_node_short_of_cpu(offer: dict) -> tuple[int, str | None, dict]:
    """(status, Retry-After, body) of POST /v1/av/offer to an in-process node whose every CPU sample is short."""
    async def scenario() -> tuple[int, str | None, dict]:
        server = await start_server("127.0.0.1", 0, 0)
        cpu = server.media.cpu
        cpu.limits = ShortOfCpu(loop_cpu_pct=0.0)  # FAKE limits: every sample counts as short of CPU
        cpu.sample()
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(server.url + "/v1/av/offer", json=offer) as response:
                    return response.status, response.headers.get("Retry-After"), await response.json()
        finally:
            await server.close()

    return asyncio.run(scenario())


def test_no_new_call_while_the_servers_cpu_has_no_headroom() -> None:
    # well formed: a busy node's 429 comes after a bad offer's 400
    offer = {"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}
    status, retry_after, body = offer_to_a_node_short_of_cpu(offer)
    assert status == 429 and retry_after == "5" and "CPU" in body["error"]


def test_a_bad_offer_is_told_it_is_bad_even_by_a_node_short_of_cpu() -> None:
    """Busy means "try again"; a malformed offer can never succeed, so its 400 comes first (it was a 429, and
    tests/test_av_probe.py's bad offers failed whenever their neighbours kept the node short of CPU)."""
    status, _, body = offer_to_a_node_short_of_cpu({"type": "offer", "sdp": "v=0"})
    assert status == 400 and body["reason"] == "bad_offer", body
