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
from starlette.types import ASGIApp, Receive, Scope, Send

from simqa.serve.routing import Routes, is_write, route_of

#: how long a browser may keep a preflight's answer (seconds)
PREFLIGHT_MAX_AGE = 600
EXPOSED = ("ETag", "Server-Timing")


class CrossOrigin:
    """One CORS policy for reads and one for writes, chosen by route and method (for a
    preflight, the method it asks about)."""

    def __init__(
        self, app: ASGIApp, *, origins: Sequence[str], writes: bool, routes: Routes
    ) -> None:
        self.routes = routes
        self.reads = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=("GET", "POST"),
            allow_headers=("Content-Type", "If-None-Match"),
            expose_headers=EXPOSED,
            max_age=PREFLIGHT_MAX_AGE,
        )
        self.writes = CORSMiddleware(
            app,
            allow_origins=origins if writes else (),
            allow_methods=("POST", "DELETE"),
            allow_headers=("Authorization", "Content-Type"),
            expose_headers=EXPOSED,
            max_age=PREFLIGHT_MAX_AGE,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.reads(scope, receive, send)
            return
        method = scope["method"]
        if method == "OPTIONS":
            method = Headers(scope=scope).get("access-control-request-method", "").upper()
        policy = self.writes if is_write(method, route_of(scope, self.routes)) else self.reads
        await policy(scope, receive, send)
