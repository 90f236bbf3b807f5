"""What the routes share: the worker's index (brought up to date per request), the box
parameters every search takes, and the write-token check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request

from simqa.index import Index
from simqa.serve.caching import VERSION_KEY, version_of
from simqa.serve.settings import MAX_K


def live_index(request: Request) -> Index:
    """The worker's index, switched to the newest published version first (a cheap check
    of the index's CURRENT pointer): a write by any worker is seen by the next request.
    The version it answers from is noted for the request's ETag (``caching``)."""
    index = fresh_index(request.app)
    request.scope[VERSION_KEY] = version_of(index)
    return index


def fresh_index(app: FastAPI) -> Index:
    """The app's index at the newest published version (the metrics follow it)."""
    index: Index = app.state.index
    if index.refresh() and app.state.metrics is not None:
        app.state.metrics.index_served(index)
        app.state.metrics.watch_encoder(index.encoder)  # a new model, if the index has one
    return index


FormatParam = Annotated[
    Literal["json", "html"],
    Query(description="json, or html: the Similar Q&A section, ready to embed in a page."),
]


@dataclass
class BoxParams:
    """How many hits and which ones: the same filters as ``simqa query``."""

    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many similar consultations.")] = 5
    department: Annotated[str | None, Query(max_length=200)] = None
    source: Annotated[str | None, Query(max_length=200)] = None
    tag: Annotated[str | None, Query(max_length=200)] = None
    since: Annotated[
        str | None, Query(max_length=40, description="Asked on or after (YYYY-MM-DD).")
    ] = None
    until: Annotated[
        str | None, Query(max_length=40, description="Asked on or before (YYYY-MM-DD).")
    ] = None
    min_score: Annotated[
        float | None,
        Query(ge=-1, le=1, description="Leave out hits below this cosine (default: the index's)."),
    ] = None
    verify: Annotated[
        Literal["flag", "drop", "off"],
        Query(
            description="flag: each hit says whether the verifier judges it the same "
            "question; drop: leave out those it judges different; off."
        ),
    ] = "flag"
    format: FormatParam = "json"

    def box_options(self) -> dict[str, Any]:
        """The verifier mode and the filters, as keyword arguments of ``Box.for_*``."""
        names = ("department", "source", "tag", "since", "until", "min_score", "verify")
        return {name: getattr(self, name) for name in names}


def require_writer(request: Request) -> None:
    """Writes need ``Authorization: Bearer TOKEN`` matching the server's write token
    (compared in constant time); with no token configured they are off."""
    expected: str | None = request.app.state.write_token
    if expected is None:
        raise HTTPException(403, "writes are disabled: start the server with --write-token")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(
            401,
            "this endpoint needs Authorization: Bearer TOKEN",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise HTTPException(403, "wrong write token")
