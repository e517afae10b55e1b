"""Session tokens: the format of docs/session-hub.md, every refusal reason, and nothing but TokenError on junk."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netcheck.config import load_config
from netcheck.errors import ConfigError, UsageError
from netcheck.tokens import (
    CLOCK_SKEW_S, MAX_TOKEN_CHARS, TokenClaims, TokenError, create_token, verify_token,
)

SECRET = b"test-secret-0123456789abcdef"
NOW_S = 1_800_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: bytes, secret: bytes = SECRET) -> str:
    """A token made by hand, as another implementation of the contract would make it."""
    head = f"v1.{b64(payload)}"
    return f"{head}.{b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())}"


def reason(token: str, session_id: str = "s1", secret: bytes = SECRET, now_s: float = NOW_S) -> str:
    with pytest.raises(TokenError) as refused:
        verify_token(secret, token, session_id, now_s=now_s)
    return refused.value.reason


def test_round_trip_and_the_documented_format() -> None:
    token = create_token(SECRET, "s1", "therapist", 7200, now_s=NOW_S)
    claims = verify_token(SECRET, token, "s1", now_s=NOW_S + 10)
    assert claims == TokenClaims("s1", "therapist", NOW_S + 7200)
    version, payload, signature = token.split(".")
    assert version == "v1" and "=" not in token
    assert base64.urlsafe_b64decode(payload + "==").decode() == '{"sid":"s1","role":"therapist","exp":1800007200}'
    assert token == signed(b'{"sid":"s1","role":"therapist","exp":1800007200}')  # interoperable by hand
    assert len(signature) == 43


def test_every_refusal_reason() -> None:
    token = create_token(SECRET, "s1", "client", 60, now_s=NOW_S)
    assert reason(token, secret=b"another-secret-0123456789") == "bad signature"
    assert reason(token, session_id="s2") == "other session"
    assert reason(token, now_s=NOW_S + 60 + CLOCK_SKEW_S + 1) == "expired"
    for junk in ("", "v1", "v1..", "v2" + token[2:], token + ".x", token.replace(".", "!", 1), "ä" * 10,
                 "v1.a=b.c", "v1.abc.d e"):
        assert reason(junk) == "malformed", junk


def test_expiry_allows_30_s_of_clock_skew_and_no_more() -> None:
    token = create_token(SECRET, "s1", "client", 60, now_s=NOW_S)
    assert verify_token(SECRET, token, "s1", now_s=NOW_S + 60 + CLOCK_SKEW_S).accepted_until_s == NOW_S + 90
    assert reason(token, now_s=NOW_S + 60 + CLOCK_SKEW_S + 0.001) == "expired"


def test_signature_is_checked_before_expiry_and_session() -> None:
    forged = create_token(b"not-the-server-secret-123", "s2", "therapist", 60, now_s=NOW_S - 10**6)
    assert reason(forged) == "bad signature"


def test_changing_any_one_character_is_refused() -> None:
    token = create_token(SECRET, "session-42", "client", 3600, now_s=NOW_S)
    for index, char in enumerate(token):
        for replacement in {"A", "a", "0", "_", "-", "."} - {char}:
            tampered = token[:index] + replacement + token[index + 1:]
            assert reason(tampered, "session-42") in ("malformed", "bad signature"), tampered


def test_signed_but_malformed_payloads_are_malformed() -> None:
    for payload in (b"[]", b"not json", b'{"sid":"s1","role":"admin","exp":1}', b'{"sid":"s1","role":"client"}',
                    b'{"sid":"s 1","role":"client","exp":1900000000}', b'{"sid":"s1","role":"client","exp":true}',
                    b'{"sid":"s1","role":"client","exp":"1900000000"}', b"\xff\xfe"):
        assert reason(signed(payload)) == "malformed", payload
    extra_key = signed(b'{"sid":"s1","role":"client","exp":1900000000,"x":1}')
    assert verify_token(SECRET, extra_key, "s1", NOW_S).role == "client"  # later versions may add claims


def test_length_bound() -> None:
    longest = create_token(SECRET, "x" * 128, "therapist", 7 * 86400, now_s=NOW_S)
    assert len(longest) <= MAX_TOKEN_CHARS
    padded_payload = json.dumps({"sid": "s1", "role": "client", "exp": 1900000000, "pad": "x" * 1000}).encode()
    assert reason(signed(padded_payload)) == "malformed"  # validly signed, but over 1024 characters


@pytest.mark.parametrize(("session_id", "role", "ttl_s"), [
    ("", "client", 3600), ("x" * 129, "client", 3600), ("a/b", "client", 3600), ("é", "client", 3600),
    ("s1", "admin", 3600), ("s1", "client", 59), ("s1", "client", 7 * 86400 + 1), ("s1", "client", float("nan")),
])
def test_create_refuses_bad_input_as_usage_errors(session_id: str, role: str, ttl_s: float) -> None:
    with pytest.raises(UsageError):
        create_token(SECRET, session_id, role, ttl_s, now_s=NOW_S)


def test_create_refuses_an_empty_secret() -> None:
    with pytest.raises(UsageError):
        create_token(b"", "s1", "client", 3600)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=1200) | st.from_regex(r"v1\.[A-Za-z0-9_-]{0,300}\.[A-Za-z0-9_-]{0,60}", fullmatch=True),
       st.text(max_size=20))
def test_verify_raises_only_token_error_on_arbitrary_text(token: str, session_id: str) -> None:
    with pytest.raises(TokenError) as refused:
        verify_token(SECRET, token, session_id)
    assert refused.value.reason in TokenError.REASONS


def test_secret_from_environment_or_a_private_file(tmp_path: Path) -> None:
    env = {"NETCHECK_HOME": str(tmp_path)}
    assert load_config(env).secret is None
    secret_file = tmp_path / "hub.secret"
    secret_file.write_bytes(b"file-secret-0123456789\n")
    secret_file.chmod(0o600)
    (tmp_path / "config.toml").write_text(f'secret_file = "{secret_file}"\n')
    assert load_config(env).secret == b"file-secret-0123456789"
    assert load_config({**env, "NETCHECK_SECRET": "env-secret-0123456789"}).secret == b"env-secret-0123456789"
    assert "file-secret" not in repr(load_config(env))


@pytest.mark.parametrize(("mode", "content", "message"), [
    (0o644, b"file-secret-0123456789", "secret_file: "),
    (0o600, b"short", "secret_file: the secret must be at least 16 bytes"),
])
def test_bad_secret_files_name_the_key(tmp_path: Path, mode: int, content: bytes, message: str) -> None:
    secret_file = tmp_path / "hub.secret"
    secret_file.write_bytes(content)
    secret_file.chmod(mode)
    (tmp_path / "config.toml").write_text(f'secret_file = "{secret_file}"\n')
    with pytest.raises(ConfigError, match=message):
        load_config({"NETCHECK_HOME": str(tmp_path)})


def test_a_short_secret_in_the_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NETCHECK_SECRET: the secret must be at least 16 bytes"):
        load_config({"NETCHECK_HOME": str(tmp_path), "NETCHECK_SECRET": "hunter2"})
