"""``simqa serve``: the box over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    index: Annotated[
        str | None,
        typer.Option(
            "--index",
            "-i",
            help="Index name (a folder under ./indexes) or path. Default: default.",
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on. Default: 127.0.0.1.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on. Default: 8000.")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes, one index each. Default: 1.")
    ] = None,
    write_token: Annotated[
        str | None,
        typer.Option(
            help="Accept writes with Authorization: Bearer TOKEN (off without one; or "
            "SIMQA_WRITE_TOKEN)."
        ),
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option("--access-log/--no-access-log", help="Log every request. Default: on."),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(help="Refuse request bodies over this many bytes. Default: 8 MiB."),
    ] = None,
    cache_control: Annotated[
        str | None,
        typer.Option(
            help="Cache-Control of the reads' answers ('' for none). "
            "Default: max-age=30, must-revalidate."
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            help="An origin (https://site.example, or *) whose pages may "
            "read boxes from this server; repeat for more.",
        ),
    ] = None,
    cors_writes: Annotated[
        bool | None,
        typer.Option(
            "--cors-writes/--no-cors-writes", help="Let those origins write too. Default: off."
        ),
    ] = None,
    metrics: Annotated[
        bool | None,
        typer.Option("--metrics/--no-metrics", help="Prometheus metrics at /metrics. Default: on."),
    ] = None,
    shutdown_timeout: Annotated[
        float | None,
        typer.Option(help="On SIGTERM, seconds to let requests in flight finish. Default: 30."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A TOML settings file (the settings' names; or SIMQA_CONFIG). "
            "Flags win over SIMQA_* variables, which win over the file.",
        ),
    ] = None,
) -> None:
    """Serve the Similar Q&A box over HTTP (API at /v1, docs at /docs) and a page at /."""
    from simqa.serve import serve as run_server
    from simqa.serve.settings import Settings

    flags = {
        "index": index, "host": host, "port": port, "workers": workers,
        "write_token": write_token, "access_log": access_log, "max_body_bytes": max_body_bytes,
        "cache_control": cache_control, "cors_origins": cors_origin or None,
        "cors_writes": cors_writes, "metrics": metrics, "shutdown_timeout": shutdown_timeout,
    }  # fmt: skip
    run_server(settings=Settings.load(flags, config))
