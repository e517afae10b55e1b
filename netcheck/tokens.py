"""Session tokens: who may post to or watch one session of the hub (docs/session-hub.md).

`v1.<payload>.<signature>`, both base64url without padding; the payload is compact JSON
`{"sid", "role", "exp"}` and the signature HMAC-SHA256(secret, "v1.<payload>"). Stateless on
purpose: the server keeps no token list, so a restart or a second server with the same secret
accepts the same tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from dataclasses import dataclass

from netcheck.errors import NetcheckError, UsageError

VERSION = "v1"
MAX_TOKEN_CHARS = 1024
SESSION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
LEGS = ("client", "therapist")
"""A session's legs, one per person: the roles whose tokens post (or a tab measures) a leg of the session.
The one list: the hub, the tabs, the checks, the report, the watch view and the CLI's panels take it from here."""
ROLES = (*LEGS, "check")
"""client and therapist post their leg of a session (and a therapist watches it); check only measures."""
MIN_TTL_S = 60.0
MAX_TTL_S = 7 * 86400.0
CLOCK_SKEW_S = 30.0
"""A token is still accepted this long after `exp`: the machine that made it may run a little fast."""

_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class TokenError(NetcheckError):
    """A token was refused; `reason` is one of REASONS, short enough for an HTTP 401 body."""

    REASONS = ("malformed", "bad signature", "expired", "other session")

    def __init__(self, reason: str) -> None:
        super().__init__(f"token refused: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class TokenClaims:
    session_id: str
    role: str
    """client or therapist: the hub takes an event's leg from here, never from the body."""
    expires_at_s: float
    """Unix seconds (`exp`)."""

    @property
    def accepted_until_s(self) -> float:
        """Unix seconds after which verify_token refuses this token (expiry plus the skew allowance)."""
        return self.expires_at_s + CLOCK_SKEW_S


def create_token(secret: bytes, session_id: str, role: str, ttl_s: float, now_s: float | None = None) -> str:
    """Sign a token for one session and role, valid `ttl_s` seconds (1 minute … 7 days) from `now_s`."""
    if not secret:
        raise UsageError("the secret must not be empty")
    check_session_id(session_id)
    if role not in ROLES:
        raise UsageError(f"role {role!r}: use client, therapist or check")
    if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:  # also refuses NaN
        raise UsageError(f"ttl {ttl_s:g} s outside 1 minute … 7 days")
    now_s = time.time() if now_s is None else now_s
    payload = json.dumps({"sid": session_id, "role": role, "exp": math.ceil(now_s + ttl_s)},
                         separators=(",", ":")).encode()
    signed = f"{VERSION}.{_b64encode(payload)}"
    return f"{signed}.{_signature(secret, signed)}"


def verify_token(secret: bytes, token: str, session_id: str | None, now_s: float | None = None) -> TokenClaims:
    """The token's claims if it is well formed, signed with `secret`, unexpired and for `session_id`
    (for any session when None: the measuring endpoints take any session's token).

    Order as in the contract: shape, constant-time signature check, expiry, then session.
    Nothing in the payload is looked at before the signature matched.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise TokenError("malformed")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION or not all(_B64URL.fullmatch(part) for part in parts[1:]):
        raise TokenError("malformed")
    signed = f"{parts[0]}.{parts[1]}"
    if not secret or not hmac.compare_digest(_signature(secret, signed).encode(), parts[2].encode()):
        raise TokenError("bad signature")
    claims = _claims(parts[1])
    now_s = time.time() if now_s is None else now_s
    if now_s > claims.accepted_until_s:
        raise TokenError("expired")
    if session_id is not None and claims.session_id != session_id:
        raise TokenError("other session")
    return claims


def check_session_id(session_id: str) -> str:
    """Session ids are opaque and URL-safe as they are: 1–128 of A–Z a–z 0–9 . _ -."""
    if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
        raise UsageError("session id must be 1–128 characters from A-Z a-z 0-9 . _ -")
    return session_id


def _claims(encoded_payload: str) -> TokenClaims:
    """Decode a signed payload. Only our own create_token (or a holder of the secret) gets here."""
    try:
        payload = json.loads(_b64decode(encoded_payload))
    except (ValueError, RecursionError):
        raise TokenError("malformed") from None
    if not isinstance(payload, dict):
        raise TokenError("malformed")
    session_id, role, expires = payload.get("sid"), payload.get("role"), payload.get("exp")
    if (not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id) or role not in ROLES
            or isinstance(expires, bool) or not isinstance(expires, int)):
        raise TokenError("malformed")
    try:
        return TokenClaims(session_id, role, float(expires))
    except OverflowError:
        raise TokenError("malformed") from None


def _signature(secret: bytes, signed: str) -> str:
    return _b64encode(hmac.new(secret, signed.encode("ascii"), hashlib.sha256).digest())


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict base64url without padding (the alphabet was checked by the caller)."""
    if len(text) % 4 == 1:
        raise ValueError("impossible base64 length")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as error:
        raise ValueError(str(error)) from None
