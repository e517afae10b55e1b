"""Who may use the measuring endpoints (UDP key, A/V, throughput, checks), and as whom.

Without `serve --require-token` anyone may measure, within the fair shares (admission.py); a
token, when sent, must be valid and makes its session the client. With `--require-token` every
measuring endpoint needs a valid token of any role (a clinic that sends check links). Tokens come
in an `Authorization: Bearer` header, never in a URL (URLs end up in access logs).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from netcheck.server.admission import client_of
from netcheck.server.refusal import Refusal
from netcheck.tokens import TokenClaims, TokenError, verify_token


@dataclass(frozen=True)
class Caller:
    client: str
    """Whose fair share a request takes (admission.client_of)."""
    claims: TokenClaims | None


class MeasuringAccess:
    def __init__(self, secret: bytes | None, require_token: bool = False) -> None:
        if require_token and not secret:
            raise ValueError("--require-token needs NETCHECK_SECRET (or secret_file) to verify tokens")
        self.secret = secret
        self.require_token = require_token

    def caller(self, request: web.Request) -> Caller:
        """The caller of `request`; raises a Refusal (401, one sentence) when refused."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if not scheme and not token:
            if self.require_token:
                raise _unauthorized("missing", "this server measures only with a check link's token: "
                                               "send Authorization: Bearer <token>")
            return Caller(client_of(request.remote, None), None)
        if scheme.lower() != "bearer" or not self.secret:
            raise (_unauthorized("malformed", "token refused: malformed") if self.secret else
                   _unauthorized("no_tokens", "this server takes no tokens (no NETCHECK_SECRET set)"))
        try:
            claims = verify_token(self.secret, token.strip(), None)
        except TokenError as error:
            raise _unauthorized(error.reason, str(error)) from None
        return Caller(client_of(request.remote, claims.session_id, claims.role), claims)


def _unauthorized(reason: str, message: str) -> Refusal:
    return Refusal(401, reason, message, headers={"WWW-Authenticate": "Bearer"})
