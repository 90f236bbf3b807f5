"""Cross-origin use: pages on the origins the operator names may read boxes from this
server (Starlette's ``CORSMiddleware``), and only read them.

A write from another origin carries ``Authorization``, so a browser asks first (a
preflight); unless ``cors_writes`` is set, that preflight is refused and the browser never
sends the write. Reads allow GET and POST /v1/search (JSON), ``If-None-Match``, and expose
``ETag`` and ``Server-Timing`` to the page's script. No cookies are involved
(``allow_credentials`` stays off).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from simqa.serve.routing import Routes, is_write, route_of

#: the answer to a write's preflight when writes from other origins are off
REFUSED = JSONResponse(
    {"error": "writes are not allowed from another origin (start the server with --cors-writes)"},
    403,
    headers={"Vary": "Origin, Access-Control-Request-Method", "Cache-Control": "no-store"},
)
#: how long a browser may keep a preflight's answer (seconds)
PREFLIGHT_MAX_AGE = 600
EXPOSED = ("ETag", "Server-Timing")


class CrossOrigin:
    """One CORS policy for reads and one for writes, chosen by route and method (for a
    preflight, the method it asks about)."""

    def __init__(
        self, app: ASGIApp, *, origins: Sequence[str], writes: bool, routes: Routes
    ) -> None:
        self.app = app
        self.routes = routes
        self.reads = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=("GET", "POST"),
            allow_headers=("Content-Type", "If-None-Match"),
            expose_headers=EXPOSED,
            max_age=PREFLIGHT_MAX_AGE,
        )
        self.writes = (
            CORSMiddleware(
                app,
                allow_origins=origins,
                allow_methods=("POST", "DELETE"),
                allow_headers=("Authorization", "Content-Type"),
                expose_headers=EXPOSED,
                max_age=PREFLIGHT_MAX_AGE,
            )
            if writes
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.reads(scope, receive, send)
            return
        method = scope["method"]
        headers = Headers(scope=scope)
        preflight = method == "OPTIONS" and "access-control-request-method" in headers
        if preflight:
            method = headers["access-control-request-method"].upper()
        if not is_write(method, route_of(scope, self.routes)):
            await self.reads(scope, receive, send)
        elif self.writes is not None:
            await self.writes(scope, receive, send)
        elif preflight and "origin" in headers:  # the browser asks: no
            await REFUSED(scope, receive, send)
        else:  # no CORS headers: a browser keeps the answer from the page
            await self.app(scope, receive, send)
