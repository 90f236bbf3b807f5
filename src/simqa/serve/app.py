"""The app factory: one FastAPI app over one open index, built once per worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

import simqa.serve.errors as errors
from simqa.index import Index, open_index
from simqa.serve.bodylimit import BodyLimit
from simqa.serve.routes import consultations, info, pages, search
from simqa.serve.settings import MAX_BODY_BYTES, Settings, check_token
from simqa.serve.templating import page_templates
from simqa.serve.timing import ServerTiming
from simqa.serve.writer import Writer

DESCRIPTION = """\
The Similar Q&A box of a health Q&A site, over HTTP: the consultations whose questions are
closest to an indexed consultation (`/v1/similar/{id}`) or to a question (`/v1/search`),
as JSON hits (the keys of `simqa query --format json`) or, with `format=html`, as the
section to embed in a page.

Writes (`POST /v1/consultations`, `DELETE /v1/consultations/{id}`) need
`Authorization: Bearer TOKEN` and are off unless the server was started with a write token.
Errors are `{"error": "one line"}` with a 4xx status.
"""


def create_app(
    index: Index | str | Path,
    write_token: str | None = None,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The app serving ``index`` (an open Index, or a name or path to open now).

    Writes are accepted only with ``write_token``; request bodies over ``max_body_bytes``
    get 413. The model is loaded before the first request is accepted.
    """
    check_token(write_token)
    if not isinstance(index, Index):  # every request refreshes it (deps.live_index)
        index = open_index(index, refresh_every=None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        index.search("warm up the model", 1)  # load the encoder before serving
        yield
        if app.state.writer is not None:
            app.state.writer.close()
        index.close()

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
    app.state.write_token = write_token
    app.state.writer = Writer(index.root) if write_token else None
    app.state.max_body_bytes = max_body_bytes
    app.state.templates = page_templates()
    errors.install(app)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(ServerTiming)
    for module in (search, consultations, info, pages):
        app.include_router(module.router)
    return app


def app_from_env() -> FastAPI:
    """The factory each ``uvicorn --workers`` process calls (settings from the environment)."""
    settings = Settings.from_env()
    return create_app(settings.index, settings.write_token, max_body_bytes=settings.max_body_bytes)
