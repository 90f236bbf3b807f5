"""Start uvicorn: one worker in this process, or several, each building its own app."""

from __future__ import annotations

import os

import uvicorn

from simqa.index import index_path, open_index
from simqa.serve.settings import TOKEN_VAR, Settings


def serve(
    index: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    write_token: str | None = None,
    access_log: bool = True,
) -> None:
    """Serve ``index`` until interrupted. A missing or broken index fails here, in one
    line, before any worker starts."""
    settings = Settings(str(index_path(index).resolve()), write_token)
    open_index(settings.index).close()
    os.environ.pop(TOKEN_VAR, None)
    os.environ.update(settings.to_env())  # what the workers read (uvicorn --workers N)
    uvicorn.run(
        "simqa.serve.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level="info",
    )
