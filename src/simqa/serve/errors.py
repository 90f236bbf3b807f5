"""Every failure becomes a short answer: ``{"error": "one line"}`` with a 4xx status for
the API, a small HTML page for the pages; never a traceback, and the worker goes on."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

import simqa.errors as errors
from simqa.serve.writer import ShuttingDown, WriterGone

log = logging.getLogger("simqa.serve")

#: which status each kind of library error means over HTTP (first match wins)
STATUS: list[tuple[type[Exception], int]] = [
    (errors.UnknownConsultation, 404),
    (errors.BadQuery, 400),
    (errors.IndexBusy, 503),  # another writer held the lock too long: try again
    (WriterGone, 503),  # the writing process died: nothing published, send it again
    (ShuttingDown, 503),  # the server is stopping: nothing written, send it again
    (errors.IndexMissing, 503),
    (errors.IndexCorrupt, 503),
    (errors.ModelMismatch, 503),
]


def status_of(exc: errors.SimqaError) -> int:
    return next((code for kind, code in STATUS if isinstance(exc, kind)), 400)


def one_line(text: object) -> str:
    return " ".join(str(text).split())[:500]


def error_response(request: Request, status: int, message: str, **headers: str) -> Response:
    """JSON under /v1 and /healthz; a plain page for what a person reads."""
    message = one_line(message)
    path = request.url.path
    if path.startswith(("/v1/", "/healthz", "/docs", "/openapi")):
        return JSONResponse({"error": message}, status, headers=headers or None)
    templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message},
        status_code=status,
        headers=headers or None,
    )


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    problems = exc.errors()
    if not problems:
        return 422, "invalid request"
    first = problems[0]
    if first.get("type") == "json_invalid":
        return 400, f"malformed JSON: {first.get('ctx', {}).get('error', first.get('msg'))}"
    where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return 422, f"{where}: {message}{more}"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into a short answer."""

    @app.exception_handler(errors.SimqaError)
    async def _simqa(request: Request, exc: errors.SimqaError) -> Response:
        status = status_of(exc)
        headers = {"Retry-After": "1"} if status == 503 else {}
        return error_response(request, status, str(exc), **headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, *_validation_message(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such page: {request.url.path}"
        return error_response(request, exc.status_code, message, **(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal error (logged on the server)")
