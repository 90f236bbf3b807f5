"""What one Milvus row holds: a consultation, its vector and the fields filters read.

A query server keeps no local state, so the row carries everything a hit shows (the whole
record, as JSON text) and everything a filter tests, folded the way the embedded index
compares them: department and source case-insensitively, tags as their topics (``Leg``
for a page's ``Leg(Neurology)``), the ask date as ISO text. Filters become Milvus boolean
expressions evaluated next to the vectors, so a filtered search needs no second store.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient

from simqa.errors import SimqaError
from simqa.index.store import Filter
from simqa.records import Consultation, iso_date

#: Milvus caps a VARCHAR at 65,535 bytes; the whole record is stored as one JSON text
RECORD_BYTES = 65_535
KEY_BYTES = 512
MAX_TAGS = 256
#: the fields a search returns: enough to rebuild the record and dedupe the box
HIT_FIELDS = ["id", "record"]
_TOPIC_DEPARTMENT = re.compile(r"\s*\([^()]*\)$")  # as simqa.index.store: Leg(Neurology) -> Leg


def vid_of(record_id: str) -> int:
    """The row key of a record id: a 63-bit hash, so any writer on any machine finds a
    record's row without a lookup table (a clash between two ids is refused on write)."""
    digest = hashlib.blake2b(record_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def collection_schema(dim: int, description: str) -> Any:
    """The collection's fields; ``description`` carries the model and dimension (JSON)."""
    schema = MilvusClient.create_schema(
        auto_id=False, enable_dynamic_field=False, description=description
    )
    schema.add_field("vid", DataType.INT64, is_primary=True)
    schema.add_field("id", DataType.VARCHAR, max_length=KEY_BYTES)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("department", DataType.VARCHAR, max_length=KEY_BYTES)
    schema.add_field("source", DataType.VARCHAR, max_length=KEY_BYTES)
    schema.add_field("ask_iso", DataType.VARCHAR, max_length=32)
    schema.add_field(
        "tags",
        DataType.ARRAY,
        element_type=DataType.VARCHAR,
        max_capacity=MAX_TAGS,
        max_length=KEY_BYTES,
    )
    schema.add_field("text_hash", DataType.VARCHAR, max_length=64)
    schema.add_field("record", DataType.VARCHAR, max_length=RECORD_BYTES)
    return schema


def fold(text: str) -> str:
    return text.strip().casefold()


def topics(tags: list[str]) -> list[str]:
    """A record's distinct tag topics, folded (what ``--tag`` and Related FAQ count)."""
    unique = {fold(_TOPIC_DEPARTMENT.sub("", t)) for t in tags}
    return sorted(t for t in unique if t)


def to_row(record: Consultation, vector: np.ndarray, fields: str) -> dict[str, Any]:
    """The row of one record, or a SimqaError naming what Milvus could not hold."""
    text = json.dumps(record.to_dict(), ensure_ascii=False)
    tags = topics(record.tags)
    problems = []
    if len(text.encode("utf-8")) > RECORD_BYTES:
        problems.append(f"is {len(text.encode()):,} bytes as JSON (Milvus holds {RECORD_BYTES:,})")
    if len(tags) > MAX_TAGS:
        problems.append(f"has {len(tags)} tags (at most {MAX_TAGS})")
    values = [record.id, record.department, record.source, *tags]
    if any(len(v.encode("utf-8")) > KEY_BYTES for v in values):
        problems.append(f"has an id, department, source or tag over {KEY_BYTES} bytes")
    if problems:
        raise SimqaError(f"consultation {record.id!r} {' and '.join(problems)}")
    return {
        "vid": vid_of(record.id),
        "id": record.id,
        "vector": np.asarray(vector, dtype=np.float32).tolist(),
        "department": fold(record.department),
        "source": fold(record.source),
        "ask_iso": iso_date(record.ask_date),
        "tags": tags,
        "text_hash": record.content_hash(fields),
        "record": text,
    }


def from_row(row: dict[str, Any]) -> Consultation:
    return Consultation.from_dict(json.loads(row["record"]))


def literal(text: str) -> str:
    """A string literal for a Milvus expression (quotes and backslashes escaped)."""
    return json.dumps(text, ensure_ascii=False)


def expression(where: Filter) -> str | None:
    """The Milvus expression keeping what ``where`` keeps in the embedded index's SQLite:
    department and source compared case-insensitively, a tag among the topics, ask dates
    compared on as many characters as the bound has (``2013-02`` keeps all of February)."""
    if not where:
        return None
    parts = []
    if where.department:
        parts.append(f"department == {literal(fold(where.department))}")
    if where.source:
        parts.append(f"source == {literal(fold(where.source))}")
    if where.tag:
        parts.append(f"array_contains(tags, {literal(fold(where.tag))})")
    if where.since:  # an ISO text starts at or after 2013-02 iff it sorts at or after it
        parts.append(f'ask_iso != "" and ask_iso >= {literal(where.since)}')
    if where.until:  # ... and at or before it iff it sorts before 2013-02 followed by '~'
        parts.append(f'ask_iso != "" and ask_iso <= {literal(where.until + "~")}')
    return " and ".join(f"({p})" for p in parts)
