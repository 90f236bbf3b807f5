"""Caching by index version: a strong ``ETag`` on every read, ``304`` for a tag the client
already holds, ``Cache-Control`` as the operator sets it.

A read's answer depends on nothing but the code, the index version it was computed from
and the request (path and query; no header changes a body), and a published write is a new
version. So the tag is a hash of the server's code (``code_fingerprint``), the index
version (the folder ``CURRENT`` names and the manifest's created/updated stamps: a rebuild
that reuses a folder name still changes the tag) and the normalised request, prefixed with
the version's name (``"v000042-9f2c..."``). A request whose ``If-None-Match`` holds the
current tag gets ``304`` before the route runs: nothing is searched, encoded or read from
the records (``If-None-Match: *`` is answered once the route has found the answer exists).

A 200 carries the tag only if the index stayed on one version while it was computed (the
version ``deps.live_index`` moved to, and the one current when the answer starts); if a
write landed in between, the answer goes out untagged and the next request is tagged.
Errors and writes are ``no-store``. An index without versions (Milvus: its rows change
without a new folder) gets no tags.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simqa.serve.routing import READS, Routes, route_of

#: where ``deps.live_index`` leaves the version a request is answered from
VERSION_KEY = "simqa.version"
NO_STORE = "no-store"


def code_fingerprint() -> str:
    """simqa's version and a hash of its code and templates: a deploy that changes how a
    box is made or laid out changes every tag, even under the same version number."""
    import simqa

    package = Path(simqa.__file__).parent
    digest = hashlib.blake2b(version("simqa").encode(), digest_size=8)
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".html") and path.is_file():
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


_CODE = code_fingerprint()


def version_of(index: Any) -> str | None:
    """The index version the next search reads (name|created|updated), or None for an
    index without versions. In memory: no file is read."""
    snapshot = getattr(index, "snapshot", None)
    if snapshot is None:
        return None
    manifest = snapshot.manifest
    return f"{snapshot.dir.name}|{manifest.created}|{manifest.updated}"


def etag(version_key: str, scope: Scope) -> str:
    """The strong tag of the answer to ``scope``'s request from ``version_key``."""
    query = urlencode(
        sorted(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
    )
    digest = hashlib.blake2b(digest_size=12)
    for part in (_CODE, version_key, scope["path"], query):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return f'"{version_key.split("|", 1)[0]}-{digest.hexdigest()}"'


def matches(if_none_match: str, tag: str) -> bool:
    """If-None-Match's weak comparison (RFC 9110 13.1.2): ``*``, or the tag among the list
    with or without ``W/`` (a proxy that compresses may weaken a tag)."""
    if if_none_match.strip() == "*":
        return True
    for candidate in if_none_match.split(","):
        candidate = candidate.strip().removeprefix("W/")
        if candidate == tag:
            return True
    return False


class Conditional:
    """ETag, 304 and Cache-Control for the cacheable reads (``routing.READS``):
    ``refresh()`` brings the index to the newest version and returns it, ``current()``
    returns it as it is."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        refresh: Callable[[], Any],
        current: Callable[[], Any],
        routes: Routes,
        cache_control: str,
    ) -> None:
        self.app = app
        self.refresh = refresh
        self.current = current
        self.routes = routes
        self.cache_control = cache_control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope["method"] == "GET" and route_of(scope, self.routes) in READS
        asked = Headers(scope=scope).get("if-none-match") if cacheable else None
        if asked and asked.strip() != "*":
            # the index brought up to date first (a stat; a new version opens off the loop)
            current = await run_in_threadpool(self._refreshed_version)
            if current is not None and matches(asked, etag(current, scope)):
                await self._not_modified(etag(current, scope), send)
                return
        not_modified = False

        async def tagged(message: Message) -> None:
            nonlocal not_modified
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if cacheable and message["status"] == 200:
                    used = scope.get(VERSION_KEY)
                    if used is not None and used == version_of(self.current()):
                        tag = etag(used, scope)
                        if asked and matches(asked, tag):  # "*", or a write landed meanwhile
                            not_modified = True
                            await self._not_modified(tag, send)
                            return
                        headers["ETag"] = tag
                    if self.cache_control and "cache-control" not in headers:
                        headers["Cache-Control"] = self.cache_control
                elif "cache-control" not in headers:  # errors, writes, info, health, metrics
                    headers["Cache-Control"] = NO_STORE
            elif not_modified:  # the body computed is not sent
                return
            await send(message)

        await self.app(scope, receive, tagged)

    def _refreshed_version(self) -> str | None:
        return version_of(self.refresh())

    async def _not_modified(self, tag: str, send: Send) -> None:
        """A 304: the tag and Cache-Control a 200 would carry, no body."""
        headers = [(b"etag", tag.encode("latin-1"))]
        if self.cache_control:
            headers.append((b"cache-control", self.cache_control.encode("latin-1")))
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
