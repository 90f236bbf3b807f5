"""Consultations themselves: read one; add, update or delete with the write token.

Writes go through the server's ``Writer`` (``simqa.serve.writer``): a process of its own
that holds the index's writer lock and returns once the new version is durable and
published, so the event loop, and every read, goes on meanwhile. Writes queued behind
one another are published together; many ids are deleted in one request (and one version)
with ``POST /v1/consultations/delete``.
"""

from __future__ import annotations

import json
from dataclasses import fields

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from simqa.errors import SimqaError, UnknownConsultation
from simqa.records import Consultation
from simqa.serve.deps import live_index, require_writer
from simqa.serve.schemas import ERRORS, WriteOut

router = APIRouter(prefix="/v1/consultations", tags=["consultations"], responses=ERRORS)

WRITE_ERRORS = {
    401: {"description": "no Authorization: Bearer TOKEN"},
    403: {"description": "wrong token, or writes disabled (no --write-token)"},
    413: {"description": "body over the size limit"},
}
_RECORDS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["id"],
        "properties": {
            f.name: {"type": "array", "items": {"type": "string"}}
            if f.name == "tags"
            else {"type": "array", "items": {"type": "object"}}
            if f.name == "other_replies"
            else {"type": "string"}
            for f in fields(Consultation)
        },
    },
}


@router.get("/{record_id:path}")
def get(record_id: str, request: Request) -> JSONResponse:
    """One consultation, every field (the record as ingested)."""
    return JSONResponse(live_index(request).get(record_id).to_dict())


@router.post(
    "",
    response_model=WriteOut,
    responses=WRITE_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _RECORDS_SCHEMA}},
            "description": "A JSON list of consultations (the JSONL fields); an id that is "
            "already indexed is updated.",
        }
    },
)
async def add(request: Request) -> JSONResponse:
    """Add or update consultations; returns when the write is durable and published."""
    require_writer(request)  # before the body is read: no token, no parsing
    records = await run_in_threadpool(parse_records, await request.body())
    result = await request.app.state.writer.add(records)
    live_index(request)  # this worker answers from the new version from now on
    return JSONResponse(result)


@router.post(
    "/delete",
    response_model=WriteOut,
    responses=WRITE_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["ids"],
                        "properties": {"ids": {"type": "array", "items": {"type": "string"}}},
                    }
                }
            },
            "description": 'The ids to take down: {"ids": ["a", "b"]}.',
        }
    },
)
async def delete_many(request: Request) -> JSONResponse:
    """Take many consultations down in one write (one new version); says how many were
    deleted and which ids were not there."""
    require_writer(request)
    ids = await run_in_threadpool(parse_ids, await request.body())
    result = await request.app.state.writer.delete_many(ids)
    live_index(request)
    return JSONResponse({"deleted": result["deleted"], "missing": result.get("missing", [])})


@router.delete("/{record_id:path}", response_model=WriteOut, responses=WRITE_ERRORS)
async def delete(record_id: str, request: Request) -> JSONResponse:
    """Take a consultation down: it leaves the records and the vectors in one write."""
    require_writer(request)
    live_index(request).get(record_id)  # an unknown id is a 404, not an empty new version
    removed = await request.app.state.writer.delete([record_id])
    if not removed:  # another writer deleted it meanwhile
        raise UnknownConsultation(f"no consultation with id {record_id!r} in this index")
    live_index(request)
    return JSONResponse({"deleted": removed})


def parse_records(body: bytes) -> list[Consultation]:
    """A JSON list of records, each read as ``simqa build`` reads a JSONL line."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SimqaError(f"malformed JSON: {exc}") from None
    if not isinstance(data, list) or not data:
        raise SimqaError("expected a non-empty JSON list of consultations")
    records = []
    for number, item in enumerate(data):
        if not isinstance(item, dict):
            raise SimqaError(f"record {number}: expected an object, got {type(item).__name__}")
        try:
            records.append(Consultation.from_dict(item))
        except (ValueError, TypeError, AttributeError) as exc:
            raise SimqaError(f"record {number}: {exc}") from None
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise SimqaError("the same id appears twice in one request")
    return records


#: ids one delete request may name
MAX_DELETE_IDS = 10_000


def parse_ids(body: bytes) -> list[str]:
    """``{"ids": [...]}``: a non-empty list of consultation ids."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SimqaError(f"malformed JSON: {exc}") from None
    ids = data.get("ids") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not ids:
        raise SimqaError('expected {"ids": [...]}, a non-empty list of consultation ids')
    if len(ids) > MAX_DELETE_IDS:
        raise SimqaError(f"{len(ids):,} ids in one request; the limit is {MAX_DELETE_IDS:,}")
    if not all(isinstance(i, str) and i for i in ids):
        raise SimqaError("every id must be a non-empty string")
    return list(dict.fromkeys(ids))
