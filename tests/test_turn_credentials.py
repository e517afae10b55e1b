"""TURN for browsers (issue 13): time-limited credentials a real coturn (`use-auth-secret`) accepts
and refuses once expired or signed with another secret; /v1/info hands them out only when
configured and only to a caller who may measure; `serve --browser-turn` refuses bad input in one line."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioice import stun, turn

from netcheck.errors import UsageError
from netcheck.server.app import TURN_LABEL, start_server
from netcheck.tokens import create_token
from netcheck.server.turn_credentials import (
    CREDENTIAL_TTL_S, BrowserTurn, browser_turn, parse_browser_turn_url, turn_credentials,
)
from tests.harness.coturn import Coturn
from tests.harness.servers import start_serve, stop, subprocess_env
from tests.test_cli import assert_one_line_error

TURN_SECRET = "coturn-static-auth-secret-0123456789"
SESSION_SECRET = b"s" * 32
ALLOCATE_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def coturn():
    with Coturn(auth_secret=TURN_SECRET) as server:
        yield server


async def allocate_over_tcp(server: Coturn, username: str, password: str) -> tuple[str, int] | int:
    """A TURN Allocate over TCP as the reach probe makes one: the relayed address, or the error code."""
    loop = asyncio.get_running_loop()
    inner, client = await loop.create_connection(
        lambda: turn.TurnClientTcpProtocol(server.address, username, password, 60, 60), *server.address)
    try:
        relayed = await asyncio.wait_for(client.connect(), ALLOCATE_TIMEOUT_S)
        await asyncio.wait_for(client.delete(), ALLOCATE_TIMEOUT_S)
        return relayed
    except stun.TransactionFailed as failure:
        return failure.response.error_code
    finally:
        if client.refresh_task is not None:
            client.refresh_task.cancel()
        inner.close()


# --- the credentials ---------------------------------------------------------------------------

def test_the_username_is_the_expiry_and_the_label_and_the_password_an_hmac_sha1() -> None:
    credentials = turn_credentials(TURN_SECRET, "check-42", now_s=1_700_000_000.7)
    assert credentials.username == f"{1_700_000_000 + CREDENTIAL_TTL_S}:check-42"
    assert credentials.expires_at_s == 1_700_000_600
    assert len(base64.b64decode(credentials.credential, validate=True)) == 20  # SHA-1
    assert TURN_SECRET not in repr(credentials) and credentials.credential not in repr(credentials)
    assert turn_credentials(TURN_SECRET, "check-42", 1_700_000_000.2) == credentials  # same second, same credential
    assert turn_credentials("another secret, as long as this", "check-42", 1_700_000_000).credential != credentials.credential


@pytest.mark.parametrize("label", ["", "a:b", "ü", "x" * 129])
def test_a_label_that_would_break_the_username_is_refused(label: str) -> None:
    with pytest.raises(ValueError):
        turn_credentials(TURN_SECRET, label, 0.0)


def test_credentials_are_accepted_by_coturn_and_refused_expired_or_from_another_secret(coturn: Coturn) -> None:
    now_s = time.time()
    fresh = turn_credentials(TURN_SECRET, TURN_LABEL, now_s)
    expired = turn_credentials(TURN_SECRET, TURN_LABEL, now_s - CREDENTIAL_TTL_S - 60)
    forged = turn_credentials("not-the-clinics-secret-0123456789", TURN_LABEL, now_s)

    async def scenario() -> list[tuple[str, int] | int]:
        return [await allocate_over_tcp(coturn, c.username, c.credential) for c in (fresh, expired, forged)]

    relayed, refused_expired, refused_forged = asyncio.run(scenario())
    low, high = coturn.relay_port_range
    assert isinstance(relayed, tuple) and relayed[0] == coturn.host and low <= relayed[1] <= high, relayed
    assert refused_expired == 401
    assert refused_forged == 401


# --- --browser-turn URLs --------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["turn:turn.clinic.example:3478?transport=tcp", "turns:turn.clinic.example:5349?transport=tcp",
                                 "turn:192.0.2.7:3478?transport=udp", "turn:[2001:db8::7]:3478", "turn:turn.clinic.example"])
def test_browser_turn_urls_a_browser_takes_are_accepted(url: str) -> None:
    assert parse_browser_turn_url(url) == url


@pytest.mark.parametrize(("url", "says"), [
    ("https://turn.clinic.example", "the scheme must be turn or turns"),
    ("stun:turn.clinic.example:3478", "the scheme must be turn or turns"),
    ("turn::3478", "no host"),
    ("turn:user@turn.clinic.example:3478", "is not a host name"),
    ("turn:[turn.clinic.example]:3478", "is not a host name"),
    ("turn:turn.clinic.example:0", "port '0' is not a number in 1..65535"),
    ("turn:turn.clinic.example:70000", "is not a number in 1..65535"),
    ("turn:turn.clinic.example:3478?transport=sctp", "?transport=udp or ?transport=tcp"),
    ("turn:turn.clinic.example:3478?user=x", "?transport=udp or ?transport=tcp"),
    ("turns:turn.clinic.example:5349?transport=udp", "TURN over TLS"),
])
def test_bad_browser_turn_urls_are_named(url: str, says: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_browser_turn_url(url)
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_browser_turn_needs_a_secret_and_nothing_is_configured_without_a_url() -> None:
    assert browser_turn((), None) is None
    with pytest.raises(UsageError, match="NETCHECK_TURN_SECRET"):
        browser_turn(("turn:turn.clinic.example:3478?transport=tcp",), None)


# --- /v1/info ------------------------------------------------------------------------------------

async def info(url: str, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/v1/info", headers=headers) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-store"
            return await response.json()


def test_info_has_no_ice_servers_without_browser_turn() -> None:
    async def scenario() -> dict[str, Any]:
        server = await start_server("127.0.0.1", 0, 0)
        try:
            return await info(server.url)
        finally:
            await server.close()

    assert "ice_servers" not in asyncio.run(scenario())


def test_info_hands_out_credentials_that_coturn_accepts(coturn: Coturn) -> None:
    settings = BrowserTurn((coturn.url("tcp"), coturn.url("udp")), TURN_SECRET)

    async def scenario() -> tuple[dict[str, Any], tuple[str, int] | int]:
        server = await start_server("127.0.0.1", 0, 0, browser_turn=settings)
        try:
            answer = await info(server.url)
        finally:
            await server.close()
        [ice_server] = answer["ice_servers"]
        return answer, await allocate_over_tcp(coturn, ice_server["username"], ice_server["credential"])

    started_s = time.time()
    answer, relayed = asyncio.run(scenario())
    [ice_server] = answer["ice_servers"]
    assert set(ice_server) == {"urls", "username", "credential"}  # RTCIceServer
    assert ice_server["urls"] == [coturn.url("tcp"), coturn.url("udp")]
    expiry, label = ice_server["username"].split(":")
    assert label == TURN_LABEL
    assert started_s + CREDENTIAL_TTL_S - 1 <= int(expiry) <= time.time() + CREDENTIAL_TTL_S
    assert isinstance(relayed, tuple), f"coturn refused the credentials /v1/info gave: {relayed}"
    assert TURN_SECRET not in json.dumps(answer)


def test_with_require_token_only_a_caller_with_a_valid_token_gets_ice_servers() -> None:
    settings = BrowserTurn(("turn:turn.clinic.example:3478?transport=tcp",), TURN_SECRET)
    valid = create_token(SESSION_SECRET, "check-7", "check", ttl_s=600)
    forged = create_token(b"f" * 32, "check-7", "check", ttl_s=600)

    async def scenario() -> list[dict[str, Any]]:
        server = await start_server("127.0.0.1", 0, 0, secret=SESSION_SECRET, require_token=True,
                                    browser_turn=settings)
        try:
            return [await info(server.url, token) for token in (None, forged, valid)]
        finally:
            await server.close()

    anonymous, with_forged_token, with_valid_token = asyncio.run(scenario())
    assert "ice_servers" not in anonymous and "udp_key" not in anonymous
    assert "ice_servers" not in with_forged_token
    [ice_server] = with_valid_token["ice_servers"]
    assert ice_server["username"].endswith(":check-7")  # the TURN server's log names the check's session


# --- netcheck serve --browser-turn ----------------------------------------------------------------

@pytest.mark.parametrize(("args", "env", "contains"), [
    (("--browser-turn", "https://turn.clinic.example"), {"NETCHECK_TURN_SECRET": TURN_SECRET},
     "--browser-turn 'https://turn.clinic.example': the scheme must be turn or turns"),
    (("--browser-turn", "turn:turn.clinic.example:99999?transport=tcp"), {"NETCHECK_TURN_SECRET": TURN_SECRET},
     "port '99999' is not a number in 1..65535"),
    (("--browser-turn", "turn:turn.clinic.example:3478?transport=tcp"), {},
     "--browser-turn needs the TURN server's static-auth-secret"),
    (("--browser-turn", "turn:turn.clinic.example:3478?transport=tcp"), {"NETCHECK_TURN_SECRET": "short"},
     "NETCHECK_TURN_SECRET: the TURN secret must be at least 16 bytes"),
])
def test_serve_refuses_bad_browser_turn_input_in_one_line(run_cli, args: tuple[str, ...], env: dict[str, str],
                                                         contains: str) -> None:
    assert_one_line_error(run_cli("serve", "--http-port", "0", "--udp-port", "0", *args, extra_env=env), 2, contains)


def test_serve_refuses_a_turn_secret_file_others_can_read(run_cli, netcheck_home: Path) -> None:
    secret_file = netcheck_home / "turn-secret"
    secret_file.write_text(TURN_SECRET)
    os.chmod(secret_file, 0o644)
    (netcheck_home / "config.toml").write_text(f"turn_secret_file = {str(secret_file)!r}\n")
    assert_one_line_error(run_cli("serve", "--http-port", "0", "--udp-port", "0", "--browser-turn",
                                  "turn:turn.clinic.example:3478?transport=tcp"), 2, "turn_secret_file: ")


def test_serve_with_browser_turn_and_a_0600_secret_file_hands_out_credentials(tmp_path: Path) -> None:
    secret_file = tmp_path / "turn-secret"
    secret_file.write_text(TURN_SECRET + "\n")
    os.chmod(secret_file, 0o600)
    (tmp_path / "config.toml").write_text(f"turn_secret_file = {str(secret_file)!r}\n")
    urls = ["turn:turn.clinic.example:3478?transport=tcp", "turns:turn.clinic.example:5349?transport=tcp"]
    running = start_serve(*[arg for url in urls for arg in ("--browser-turn", url)],
                          env=subprocess_env(NETCHECK_HOME=str(tmp_path)))
    try:
        with urllib.request.urlopen(f"{running.http_url}/v1/info", timeout=5) as response:
            answer = json.load(response)
    finally:
        stop(running.process)
    [ice_server] = answer["ice_servers"]
    assert ice_server["urls"] == urls
    expected = turn_credentials(TURN_SECRET, TURN_LABEL, int(ice_server["username"].split(":")[0]) - CREDENTIAL_TTL_S)
    assert ice_server["credential"] == expected.credential  # signed with the file's secret, newline stripped
