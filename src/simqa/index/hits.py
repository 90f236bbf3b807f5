"""What a search returns (``Hit``), what it may be narrowed by, and the checks on a query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from simqa.errors import BadQuery
from simqa.records import Consultation, normalise

MAX_QUERY_CHARS = 20_000
MAX_K = 1_000


class Filters(TypedDict, total=False):
    """What every search method can narrow its hits by. A filter never hides a match:
    the hits are those exact search over the matching records would rank first."""

    department: str | None
    source: str | None
    #: one topic among the record's tags (case-insensitive)
    tag: str | None
    #: ask date bounds, inclusive, as 2013-02-10, 2013-02 or 2013 (undated records drop out)
    since: str | None
    until: str | None
    #: hits scoring below it are dropped (None: the index's calibrated ``min_score``;
    #: ``threshold.KEEP_ALL`` keeps every hit); none left means nothing similar is known
    min_score: float | None


@dataclass
class Hit:
    """One similar consultation and how close its question is to the query (cosine).

    ``rank_score`` is what hits are ordered by: the cosine less the index's hub penalty.
    """

    id: str
    score: float
    record: Consultation
    rank_score: float = float("nan")

    def __post_init__(self) -> None:
        if self.rank_score != self.rank_score:  # not given: the cosine itself
            self.rank_score = self.score

    def to_json(self) -> dict[str, Any]:
        """The documented, stable JSON shape of a hit."""
        r = self.record
        return {
            "id": r.id,
            "score": round(float(self.score), 4),
            "rank_score": round(float(self.rank_score), 4),
            "title": r.title,
            "question": r.question,
            "reply": r.reply,
            "doctor": r.doctor,
            "department": r.department,
            "ask_date": r.ask_date,
            "reply_date": r.reply_date,
            "tags": list(r.tags),
            "url": r.url,
            "source": r.source,
        }


def question_key(record: Consultation, fields: str) -> str:
    """What makes two hits the same question to a reader: the embedded fields, case and
    spacing ignored (the uncased model gives such copies one vector). A box shows each once.
    Runs for every candidate a box looks at, so it avoids regular expressions."""
    parts = {"title": (record.title or record.question,),
             "question": (record.question or record.title,)}.get(
        fields, (record.title, record.question))  # fmt: skip
    return " ".join(" ".join(parts).split()).casefold()


def check_query(text: str) -> str:
    """The normalised query, or BadQuery naming what is wrong with it."""
    if not isinstance(text, str):
        raise BadQuery("query must be text")
    if len(text) > MAX_QUERY_CHARS:
        raise BadQuery(
            f"query is {len(text):,} characters; the limit is {MAX_QUERY_CHARS:,} "
            "(the model reads only the first few hundred words anyway)"
        )
    query = normalise(text)
    if not query:
        raise BadQuery("query is empty")
    return query


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k > MAX_K:
        raise BadQuery(f"k must be between 1 and {MAX_K}, got {k}")
    return k
