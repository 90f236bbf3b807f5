"""Pages a person can use: a question box at ``/`` and each consultation at ``/c/{id}``,
both with the Similar Q&A box (``simqa.Box``, laid out by ``simqa.render`` with each hit
linking to its page here). Server-rendered, no JavaScript; every record text is escaped.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from simqa.box.box import Box
from simqa.box.render import render
from simqa.index.hits import MAX_QUERY_CHARS
from simqa.records import Consultation
from simqa.serve.deps import live_index
from simqa.serve.settings import MAX_K

router = APIRouter(include_in_schema=False)

#: hits in a page's box, as on the reference page
PAGE_K = 4


def page_of(record: Consultation) -> str:
    """Where this server shows a consultation."""
    return "/c/" + quote(record.id, safe="")


def box_section(box: Box) -> Markup:
    """The box as the page shows it (``render`` escapes every record text)."""
    return Markup(render(box, "html", link=page_of))


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)] = "",
    k: Annotated[int, Query(ge=1, le=MAX_K)] = PAGE_K,
) -> HTMLResponse:
    index = live_index(request)
    box = box_section(Box.for_question(index, q, k)) if q.strip() else None
    return request.app.state.templates.TemplateResponse(
        request, "home.html", {"q": q, "box": box, "records": len(index)}
    )


@router.get("/c/{record_id:path}", response_class=HTMLResponse)
def consultation(request: Request, record_id: str) -> HTMLResponse:
    index = live_index(request)
    record = index.get(record_id)
    box = box_section(Box.for_id(index, record_id, PAGE_K))
    return request.app.state.templates.TemplateResponse(
        request, "consultation.html", {"record": record, "box": box}
    )
