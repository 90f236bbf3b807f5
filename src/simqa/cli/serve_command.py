"""``simqa serve``: the box over HTTP."""

from __future__ import annotations

from typing import Annotated

import typer

from simqa.cli.options import IndexOpt


def serve(
    index: IndexOpt = "default",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes, one index each.")] = 1,
    write_token: Annotated[
        str | None,
        typer.Option(
            envvar="SIMQA_WRITE_TOKEN",
            help="Accept writes with Authorization: Bearer TOKEN (off without one).",
        ),
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
) -> None:
    """Serve the Similar Q&A box over HTTP (API at /v1, docs at /docs) and a page at /."""
    from simqa.serve import serve as run_server

    run_server(
        index, host=host, port=port, workers=workers, write_token=write_token,
        access_log=access_log,
    )

