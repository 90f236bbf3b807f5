"""What the server answers from, and whether it is up."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from simqa.serve.deps import live_index

router = APIRouter(tags=["info"])


@router.get("/v1/info")
def info(request: Request) -> JSONResponse:
    """The index's description (as ``simqa info --json``, without server paths), and the
    server's effective settings (without the write token)."""
    details = live_index(request).info()
    details.pop("path", None)
    details["writes"] = request.app.state.write_token is not None
    details["max_body_bytes"] = request.app.state.max_body_bytes
    details["settings"] = request.app.state.settings.public()
    return JSONResponse(details)


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """200 once the index and the model are loaded, with the record count it answers from;
    503 once the server is stopping (a load balancer sends no more)."""
    index = live_index(request)
    if request.app.state.stopping:
        return JSONResponse({"status": "stopping", "records": len(index)}, 503)
    return JSONResponse({"status": "ok", "records": len(index)})
