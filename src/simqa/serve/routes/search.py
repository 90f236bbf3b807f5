"""The Similar Q&A box over HTTP: under an indexed consultation, or for free text.

Every route returns ``simqa.Box``: as its JSON (``Box.to_json``, what ``simqa query
--format json`` prints) or, with ``format=html``, the section ``simqa.render`` lays out.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from simqa.box.box import Box
from simqa.box.render import render
from simqa.errors import BadQuery
from simqa.index.hits import MAX_QUERY_CHARS
from simqa.serve.deps import BoxParams, FormatParam, live_index
from simqa.serve.schemas import ERRORS, BatchOut, SearchIn, SearchOut, SimilarOut

router = APIRouter(prefix="/v1", tags=["similar Q&A"], responses=ERRORS)


def _json(data: object) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), media_type="application/json")


def _answer(box: Box, params: BoxParams) -> Response:
    if params.format == "html":
        return HTMLResponse(render(box, "html"))
    return _json(box.to_json())


@router.get("/similar/{record_id:path}", response_model=SimilarOut)
def similar(record_id: str, request: Request, params: Annotated[BoxParams, Depends()]) -> Response:
    """The box under an indexed consultation: its stored vector, nothing encoded."""
    box = Box.for_id(live_index(request), record_id, params.k, **params.box_options())
    return _answer(box, params)


@router.get("/search", response_model=SearchOut)
def search_get(
    request: Request,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS, description="The question.")],
    params: Annotated[BoxParams, Depends()],
) -> Response:
    """The box for a question: the consultations whose questions are closest to ``q``."""
    box = Box.for_question(live_index(request), q, params.k, **params.box_options())
    return _answer(box, params)


@router.post("/search", response_model=SearchOut | BatchOut)
def search_post(body: SearchIn, request: Request, format: FormatParam = "json") -> Response:
    """One query (``{"q": ...}``) or a batch (``{"queries": [...]}``: one model call)."""
    index = live_index(request)
    params = BoxParams(**body.model_dump(exclude={"q", "queries"}), format=format)
    if body.q is not None:
        return _answer(Box.for_question(index, body.q, params.k, **params.box_options()), params)
    if format == "html":
        raise BadQuery("format=html answers one query (q), not a batch")
    boxes = Box.for_questions(index, body.queries or [], params.k, **params.box_options())
    return _json({"results": [box.to_json() for box in boxes]})
