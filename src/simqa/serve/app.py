"""The app factory: one FastAPI app over one open index, built once per worker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

import simqa.serve.errors as errors
from simqa.index import Index, open_index
from simqa.serve.bodylimit import BodyLimit
from simqa.serve.caching import Conditional
from simqa.serve.cors import CrossOrigin
from simqa.serve.deps import fresh_index
from simqa.serve.routes import consultations, info, metrics, pages, search
from simqa.serve.routing import Routes
from simqa.serve.settings import MAX_BODY_BYTES, Settings
from simqa.serve.shutdown import on_stop_signal
from simqa.serve.templating import page_templates
from simqa.serve.timing import ServerTiming
from simqa.serve.writer import Writer

#: uvicorn's own logger: what is said about starting and stopping goes where its lines go
log = logging.getLogger("uvicorn.error")

DESCRIPTION = """\
The Similar Q&A box of a health Q&A site, over HTTP: the consultations whose questions are
closest to an indexed consultation (`/v1/similar/{id}`) or to a question (`/v1/search`),
as JSON hits (the keys of `simqa query --format json`) or, with `format=html`, as the
section to embed in a page.

Writes (`POST /v1/consultations`, `DELETE /v1/consultations/{id}`) need
`Authorization: Bearer TOKEN` and are off unless the server was started with a write token.
Errors are `{"error": "one line"}` with a 4xx status.

Every read (`GET` of a box, a search, a consultation, a page) carries a strong `ETag` that
changes when the index does; send it back in `If-None-Match` to get `304` without the body.
Metrics for Prometheus are at `/metrics`.
"""


def create_app(
    index: Index | str | Path,
    write_token: str | None = None,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    settings: Settings | None = None,
) -> FastAPI:
    """The app serving ``index`` (an open Index, or a name or path to open now).

    Writes are accepted only with ``write_token``; request bodies over ``max_body_bytes``
    get 413. ``settings`` (``Settings``) gives the rest (caching, CORS, metrics); when it
    is given, its token and body limit are the ones used. The model is loaded before the
    first request is accepted.
    """
    if settings is None:
        settings = Settings.of(write_token=write_token, max_body_bytes=max_body_bytes)
    if not isinstance(index, Index):  # every request refreshes it (deps.live_index)
        index = open_index(index, refresh_every=None)
    measured = None
    if settings.metrics:
        from simqa.serve.metrics import Metrics

        measured = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        index.search("warm up the model", 1)  # load the encoder before serving
        if measured is not None:
            measured.watch_encoder(index.encoder)
            measured.index_served(index)
        on_stop_signal(lambda: begin_stop(app))
        try:
            yield
        finally:
            if app.state.writer is not None:
                app.state.writer.close()
            index.close()
            if measured is not None:
                measured.worker_exit()

    from importlib.metadata import version

    __version__ = version("simqa")
    app = FastAPI(
        title="simqa",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.index = index
    app.state.settings = settings
    app.state.write_token = settings.token
    app.state.writer = Writer(index.root) if settings.token else None
    app.state.max_body_bytes = settings.max_body_bytes
    app.state.templates = page_templates()
    app.state.metrics = measured
    app.state.stopping = False
    errors.install(app)
    # the first added runs last: body limit, caching, timing, cross-origin, then metrics
    # outermost, so that a 304, a preflight and a 413 are counted like any answer
    routes = Routes(app.router)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(
        Conditional, refresh=lambda: fresh_index(app), current=lambda: app.state.index,
        routes=routes, cache_control=settings.cache_control,
    )  # fmt: skip
    app.add_middleware(ServerTiming)
    if settings.cors_origins:
        app.add_middleware(
            CrossOrigin, origins=settings.cors_origins, writes=settings.cors_writes,
            routes=routes,
        )  # fmt: skip
    if measured is not None:
        from simqa.serve.metrics import Measure

        app.add_middleware(Measure, metrics=measured, routes=routes)
    modules = [search, consultations, info, pages]
    if measured is not None:
        modules.append(metrics)
    for module in modules:
        app.include_router(module.router)
    return app


def begin_stop(app: FastAPI) -> None:
    """A stop signal arrived: health says so and writes not yet started are refused."""
    if app.state.stopping:
        return
    app.state.stopping = True
    log.info("stopping: requests in flight finish, writes not yet started get 503")
    if app.state.writer is not None:
        app.state.writer.stop()


def app_from_env() -> FastAPI:
    """The factory each ``uvicorn --workers`` process calls (settings from the environment)."""
    settings = Settings.from_env()
    return create_app(settings.index, settings=settings)
