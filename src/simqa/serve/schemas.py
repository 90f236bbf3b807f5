"""The JSON shapes of the API, for the OpenAPI docs at /docs and for request bodies.

Responses are serialised straight from ``Box.to_json()`` (the object ``simqa query
--format json`` prints); these models document them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from simqa.index.hits import MAX_QUERY_CHARS
from simqa.serve.settings import MAX_BATCH, MAX_K


class HitOut(BaseModel):
    id: str
    score: float = Field(description="cosine similarity of the questions")
    rank_score: float = Field(
        description="what hits are ordered by: score less the hub penalty, plus a long "
        "question's names bonus"
    )
    title: str
    question: str
    reply: str
    doctor: str
    department: str
    ask_date: str
    reply_date: str
    tags: list[str]
    url: str
    source: str
    same_question: bool | None = Field(
        None, description="the verifier's verdict (with verify=flag, where one is known)"
    )
    same_question_probability: float | None = None


class TopicOut(BaseModel):
    topic: str
    department: str = Field(description='"" when the corpus names none')


class SimilarOut(BaseModel):
    id: str
    hits: list[HitOut]
    related_faq: list[TopicOut]


class SearchOut(BaseModel):
    query: str
    hits: list[HitOut]
    related_faq: list[TopicOut]


class BatchOut(BaseModel):
    results: list[SearchOut]


class SearchIn(BaseModel):
    """One query (``q``) or a batch (``queries``), with the same filters as GET /v1/search."""

    q: str | None = Field(None, max_length=MAX_QUERY_CHARS)
    queries: list[str] | None = Field(None, min_length=1, max_length=MAX_BATCH)
    k: int = Field(5, ge=1, le=MAX_K)
    department: str | None = Field(None, max_length=200)
    source: str | None = Field(None, max_length=200)
    tag: str | None = Field(None, max_length=200)
    since: str | None = Field(None, max_length=40)
    until: str | None = Field(None, max_length=40)
    min_score: float | None = Field(None, ge=-1, le=1)
    verify: Literal["flag", "drop", "off"] = "flag"

    @model_validator(mode="after")
    def _one_kind(self) -> SearchIn:
        if (self.q is None) == (self.queries is None):
            raise ValueError("give either q (one query) or queries (a list)")
        return self


class WriteOut(BaseModel):
    """What a write did; ``version`` is the index version that now answers."""

    model_config = {"extra": "allow"}


class ErrorOut(BaseModel):
    error: str = Field(description="what was wrong, in one line")


ERRORS = {
    code: {"model": ErrorOut, "description": text}
    for code, text in {
        400: "bad request (malformed JSON, empty query)",
        404: "unknown consultation",
        422: "a parameter out of range",
    }.items()
}
