"""What the server answers from, and whether it is up."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from simqa.serve.deps import live_index

router = APIRouter(tags=["info"])


@router.get("/v1/info")
def info(request: Request) -> JSONResponse:
    """The index's description (as ``simqa info --json``, without server paths)."""
    details = live_index(request).info()
    details.pop("path", None)
    details["writes"] = request.app.state.write_token is not None
    details["max_body_bytes"] = request.app.state.max_body_bytes
    return JSONResponse(details)


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """200 once the index and the model are loaded, with the record count it answers from."""
    index = live_index(request)
    return JSONResponse({"status": "ok", "records": len(index)})
