"""The Similar Q&A box: neighbours of an indexed consultation, or of free text."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from simqa.box.render import render
from simqa.errors import BadQuery
from simqa.index import Hit, Index
from simqa.index.hits import MAX_QUERY_CHARS
from simqa.serve.deps import BoxParams, FormatParam, live_index
from simqa.serve.schemas import ERRORS, BatchOut, SearchIn, SearchOut, SimilarOut

router = APIRouter(prefix="/v1", tags=["similar Q&A"], responses=ERRORS)


def _json(data: object) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), media_type="application/json")


def _box(index: Index, hits: list[Hit], params: BoxParams, key: str, value: str) -> Response:
    if params.format == "html":
        return HTMLResponse(render(hits, "html", min_score=index.min_score(params.min_score)))
    return _json({key: value, "hits": [h.to_json() for h in hits]})


@router.get("/similar/{record_id:path}", response_model=SimilarOut)
def similar(record_id: str, request: Request, params: Annotated[BoxParams, Depends()]) -> Response:
    """The box under an indexed consultation: its stored vector, nothing encoded."""
    index = live_index(request)
    hits = index.similar(record_id, params.k, **params.filters())
    return _box(index, hits, params, "id", record_id)


@router.get("/search", response_model=SearchOut)
def search_get(
    request: Request,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS, description="The question.")],
    params: Annotated[BoxParams, Depends()],
) -> Response:
    """The consultations whose questions are closest to ``q``."""
    index = live_index(request)
    hits = index.search(q, params.k, **params.filters())
    return _box(index, hits, params, "query", q)


@router.post("/search", response_model=SearchOut | BatchOut)
def search_post(body: SearchIn, request: Request, format: FormatParam = "json") -> Response:
    """One query (``{"q": ...}``) or a batch (``{"queries": [...]}``: one model call)."""
    index = live_index(request)
    params = BoxParams(**body.model_dump(exclude={"q", "queries"}), format=format)
    if body.q is not None:
        hits = index.search(body.q, params.k, **params.filters())
        return _box(index, hits, params, "query", body.q)
    if format == "html":
        raise BadQuery("format=html answers one query (q), not a batch")
    batches = index.search_many(body.queries or [], params.k, **params.filters())
    return _json(
        {
            "results": [
                {"query": q, "hits": [h.to_json() for h in hits]}
                for q, hits in zip(body.queries or [], batches, strict=True)
            ]
        }
    )
