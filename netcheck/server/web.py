"""The browser check's static files: `GET /check` and `GET /web/<file>` from the package's `netcheck/web/`.

Only plain names ending in .html, .css or .js that are files directly in that folder are served:
no sub-folders, no dot-files, no `..`, nothing the name pattern does not allow. Every answer
carries a Content-Security-Policy that keeps the page to this server (no third party, so it works
on a clinic LAN without internet) and `Cache-Control: no-cache` (a clinic's update reaches the next
check). Only the node's own pages may frame it (`frame-ancestors 'self'`, `X-Frame-Options: SAMEORIGIN`):
a hostile site framing the panel under its own buttons (clickjacking) gets an empty frame;
`[serve] frame_ancestors` adds the clinic's call page when it frames the panel (`framed_by`).
Tokens never reach these routes: the page reads them from the URL fragment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import web

from netcheck.server.refusal import Refusal

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
CHECK_PAGE = "check.html"
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.(html|css|js)$")
"""The allow-list: a plain name and one of three extensions; no path separators, no dots before it."""
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",  # ES modules need a JavaScript MIME type (HTML spec)
}
OWN_FRAME_ANCESTORS = "frame-ancestors 'self'"
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
                           f"connect-src 'self'; worker-src 'self' blob:; {OWN_FRAME_ANCESTORS}")
MAX_FILE_BYTES = 1 << 20
"""The page's files are small; anything bigger is not one of them."""
NO_SUCH_FILE = Refusal(404, "not_found", "no such file", headers={"Cache-Control": "no-cache"})


def static_headers(content_type: str) -> dict[str, str]:
    return {"Content-Type": content_type, "Cache-Control": "no-cache",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def framed_by(origins: tuple[str, ...]) -> Any:
    """A middleware: every page (a response with the pages' policy) may also be framed by `origins`
    (config.parse_frame_ancestors checked them). X-Frame-Options goes: it cannot name another site, and a
    browser that knows frame-ancestors ignores it anyway."""
    framed = CONTENT_SECURITY_POLICY.replace(OWN_FRAME_ANCESTORS, " ".join((OWN_FRAME_ANCESTORS, *origins)))

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if response.headers.get("Content-Security-Policy") == CONTENT_SECURITY_POLICY:
            response.headers["Content-Security-Policy"] = framed
            response.headers.pop("X-Frame-Options", None)
        return response

    return middleware


CALL_PATHS = re.compile(r"^(/web/callstats\.js|/v1/sessions/[^/]+/legs/[a-z]+/call)$")
"""What a clinic's own video page fetches from the node (issue 25): the module and its posts."""
CALL_PREFLIGHT_HEADERS = {"Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers":
                          "Authorization, Content-Type", "Access-Control-Max-Age": "600"}


def call_cors(origins: tuple[str, ...]) -> Any:
    """A middleware (outermost, so refusals carry it too): the call module and its posts answer the
    clinic's video pages `origins` (parse.parse_call_origins) with CORS headers, and nobody else — their
    browsers then refuse the response. The token is a header, never a cookie: no credentials mode."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        origin = request.headers.get("Origin", "").lower()
        allowed = origin in origins and CALL_PATHS.match(request.path) is not None
        if allowed and request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204, headers=CALL_PREFLIGHT_HEADERS)
        else:
            response = await handler(request)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
        if CALL_PATHS.match(request.path):
            response.headers["Vary"] = "Origin"
        return response

    return middleware


def resolve(name: str, web_dir: Path = WEB_DIR) -> Path | None:
    """The file `name` names in `web_dir`, or None when the allow-list refuses it or it is not there."""
    if not FILE_NAME.match(name):
        return None
    path = web_dir / name
    try:
        if path.resolve().parent != web_dir.resolve() or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            return None
    except OSError:
        return None
    return path


class StaticPages:
    """Serves the check page and its files; register with `routes(app)`."""

    def __init__(self, web_dir: Path = WEB_DIR) -> None:
        self.web_dir = web_dir

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/check", self.check_page)
        app.router.add_get("/web/{name}", self.web_file)

    async def check_page(self, request: web.Request) -> web.Response:
        return self._serve(CHECK_PAGE)

    async def web_file(self, request: web.Request) -> web.Response:
        return self._serve(request.match_info["name"])

    def _serve(self, name: str) -> web.Response:
        """The file; a refusal is returned rather than raised, so that these routes also serve in an app
        without the refusals middleware (a test's)."""
        path = resolve(name, self.web_dir)
        if path is None:
            return NO_SUCH_FILE.response()
        try:
            body = path.read_bytes()
        except OSError:
            return NO_SUCH_FILE.response()
        return web.Response(body=body, headers=static_headers(CONTENT_TYPES[name.rsplit(".", 1)[1]]))
