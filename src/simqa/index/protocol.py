"""The interface every index backend answers: the embedded one (``simqa.index.search.Index``,
FAISS + SQLite files) and Milvus (``simqa.milvus.index.MilvusIndex``).

The box, the CLI, the server and evaluation call only these, so a backend is chosen once,
by ``simqa.open_index`` / ``simqa.build`` from the index's location, and nothing above the
index knows which one answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, Unpack, runtime_checkable

import numpy as np

from simqa.index.hits import Filters, Hit
from simqa.index.manifest import Manifest
from simqa.lexicon import NameLever
from simqa.records import Consultation


@runtime_checkable
class SimilarIndex(Protocol):
    """An opened index: searches, reads, writes (each atomic) and what it holds."""

    #: the index folder (a name resolves under ``simqa.index.home()``)
    root: Path

    @property
    def manifest(self) -> Manifest:
        """Model, dimension, embedded fields, vector index, threshold: how it was built."""
        ...

    # --- the box's searches (best first; hits under the threshold left out) --------------

    def search(
        self,
        text: str,
        k: int = 5,
        *,
        names: NameLever | None = None,
        **filters: Unpack[Filters],
    ) -> list[Hit]: ...

    def search_many(
        self,
        texts: list[str],
        k: int = 5,
        *,
        names: NameLever | None = None,
        **filters: Unpack[Filters],
    ) -> list[list[Hit]]:
        """``names``: the names lever for long questions (``simqa.lexicon``; the box passes
        ``NAMES``). A backend without name postings answers by cosine alone (Milvus)."""
        ...

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int,
        *,
        texts: Sequence[str] | None = None,
        names: NameLever | None = None,
        **filters: Unpack[Filters],
    ) -> list[list[Hit]]: ...

    def similar(self, record_id: str, k: int = 5, **filters: Unpack[Filters]) -> list[Hit]: ...

    def similar_to(
        self, record: Consultation, k: int = 5, **filters: Unpack[Filters]
    ) -> list[Hit]: ...

    def similar_all(
        self, k: int = 4, batch_size: int = 256, **filters: Unpack[Filters]
    ) -> Iterator[tuple[str, list[Hit]]]: ...

    def min_score(self, given: float | None = None) -> float | None: ...

    # --- records -------------------------------------------------------------------------

    def get(self, record_id: str) -> Consultation: ...

    def records(self) -> Iterator[Consultation]: ...

    def records_by_vid(self) -> Iterator[tuple[int, Consultation]]: ...

    def tag_counts(self) -> Mapping[str, int]: ...

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]: ...

    def questions(self) -> tuple[list[str], np.ndarray]: ...

    def __len__(self) -> int: ...

    # --- writes and life cycle -----------------------------------------------------------

    def add(self, records: Iterable[Consultation], **options: Any) -> dict[str, int]: ...

    def delete(self, ids: Iterable[str], **options: Any) -> int: ...

    def apply(
        self, writes: Sequence[tuple[str, Any]], **options: Any
    ) -> list[dict[str, Any]]:
        """``("add", records)`` and ``("delete", ids)`` in order, each one's counts back."""
        ...

    def compact(
        self, *, force: bool = True, background: bool = False, **options: Any
    ) -> dict[str, Any]: ...

    def refresh(self) -> bool: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
