"""Pages a person can use: a question box at ``/`` and each consultation at ``/c/{id}``,
both with the Similar Q&A box laid out as on the reference page. Server-rendered, no
JavaScript; every record text goes through Jinja's autoescaping."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from simqa.index.hits import MAX_QUERY_CHARS
from simqa.serve.deps import live_index
from simqa.serve.settings import MAX_K

router = APIRouter(include_in_schema=False)

#: hits in a page's box, as on the reference page
PAGE_K = 4


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)] = "",
    k: Annotated[int, Query(ge=1, le=MAX_K)] = PAGE_K,
) -> HTMLResponse:
    index = live_index(request)
    hits = index.search(q, k) if q.strip() else None
    return request.app.state.templates.TemplateResponse(
        request,
        "home.html",
        {"q": q, "hits": hits, "min_score": index.min_score(), "records": len(index)},
    )


@router.get("/c/{record_id:path}", response_class=HTMLResponse)
def consultation(request: Request, record_id: str) -> HTMLResponse:
    index = live_index(request)
    record = index.get(record_id)
    hits = index.similar(record_id, PAGE_K)
    return request.app.state.templates.TemplateResponse(
        request,
        "consultation.html",
        {"record": record, "hits": hits, "min_score": index.min_score()},
    )
