"""The Similar Q&A box, built in one place: what the CLI, the HTTP API, the pages and the
library all show.

A box is the first ``k`` hits (the index's threshold applied, each question once, filters
exact), each flagged by the verifier where one is known for the index's model, and the
Related FAQ topics pooled from the consultation's own tags and its ``related.NEIGHBOURS``
nearest neighbours. It is made for a question, an indexed consultation (its stored vector:
nothing is encoded) or a consultation page that need not be indexed.

A question of more than 30 words is ranked with the names it mentions (issue 20's names
lever, ``simqa.lexicon.NAMES``): names of conditions and drugs few consultations hold add to
the cosine of the records holding them, which come into the box even where the vector
index would not reach them. Shorter questions, ids and pages are ranked by cosine alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack

from simqa.box.related import NEIGHBOURS, Topic, related_faq
from simqa.box.verify import verifier_for, verify_hits
from simqa.errors import SimqaError
from simqa.index.hits import Filters, Hit, check_k
from simqa.index.protocol import SimilarIndex
from simqa.lexicon import NAMES, NameLever
from simqa.records import Consultation


@dataclass
class Box:
    """One box: its hits, best first, and its Related FAQ topics.

    ``id`` names the consultation the box is for (indexed, or a page's), ``query`` the
    question; ``min_score`` is the threshold its hits passed (for "nothing similar").
    """

    hits: list[Hit]
    related: list[Topic] = field(default_factory=list)
    id: str | None = None
    query: str | None = None
    min_score: float | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"id" | "query", "hits": [...], "related_faq": [{topic, department}]}``: the
        same object from ``simqa query/similar --format json``, ``similar --all`` and /v1."""
        head: dict[str, Any] = {}
        if self.id is not None:
            head["id"] = self.id
        elif self.query is not None:
            head["query"] = self.query
        return {
            **head,
            "hits": [h.to_json() for h in self.hits],
            "related_faq": [t.to_json() for t in self.related],
        }

    @classmethod
    def for_question(
        cls,
        index: SimilarIndex,
        text: str,
        k: int = 5,
        *,
        verify: str = "flag",
        names: NameLever | None = NAMES,
        **filters: Unpack[Filters],
    ) -> Box:
        """The box for a free-text question (encoded once); ``names``: the names lever for
        long questions (None: cosine alone)."""
        return cls.for_questions(index, [text], k, verify=verify, names=names, **filters)[0]

    @classmethod
    def for_questions(
        cls,
        index: SimilarIndex,
        texts: Sequence[str],
        k: int = 5,
        *,
        verify: str = "flag",
        names: NameLever | None = NAMES,
        **filters: Unpack[Filters],
    ) -> list[Box]:
        """One box per question, with one model call for them all."""
        wide = max(check_k(k), NEIGHBOURS)
        found = index.search_many(list(texts), wide, names=names, **filters)
        return [
            cls._of(index, hits, None, k, verify, filters, query=text)
            for text, hits in zip(texts, found, strict=True)
        ]

    @classmethod
    def for_id(
        cls,
        index: SimilarIndex,
        record_id: str,
        k: int = 5,
        *,
        verify: str = "flag",
        **filters: Unpack[Filters],
    ) -> Box:
        """The box under an indexed consultation, from its stored vector (nothing encoded);
        the consultation itself and copies of its question are left out."""
        own = index.get(record_id)
        hits = index.similar(record_id, max(check_k(k), NEIGHBOURS), **filters)
        return cls._of(index, hits, own, k, verify, filters, id=own.id)

    @classmethod
    def for_page(
        cls,
        index: SimilarIndex,
        page: str | Path | Consultation,
        k: int = 5,
        *,
        verify: str = "flag",
        **filters: Unpack[Filters],
    ) -> Box:
        """The box for a consultation that need not be indexed: a page file (the layout of
        ``../shared/seeds/``) or a ``Consultation``; its own question is left out."""
        own = page if isinstance(page, Consultation) else read_page(page)
        hits = index.similar_to(own, max(check_k(k), NEIGHBOURS), **filters)
        return cls._of(index, hits, own, k, verify, filters, id=own.id)

    @classmethod
    def _of(
        cls,
        index: SimilarIndex,
        hits: list[Hit],
        own: Consultation | None,
        k: int,
        verify: str,
        filters: Filters,
        **label: str,
    ) -> Box:
        """The box of ``hits`` (``NEIGHBOURS`` deep, for the Related FAQ): the first ``k``
        verified, the topics of ``own`` (None for a question) and of every hit."""
        return cls(
            verify_hits(hits[:k], verifier_for(index, verify), verify),
            related_faq(own, hits, index.tag_counts()),
            min_score=index.min_score(filters.get("min_score")),
            **label,
        )


def read_page(path: str | Path) -> Consultation:
    """The (first) consultation of a page file; a file that holds none is an error."""
    from simqa.ingest import load

    records = list(load([path], format="page", strict=True))
    if not records:
        raise SimqaError(f"{path} holds no consultation page")
    return records[0]
