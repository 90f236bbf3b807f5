"""The narrow interface every vector backend implements.

The vector index knows only int64 ids and float32 unit vectors; records live in the
store. A new backend (another faiss layout, a distributed service) is one new module
implementing this class and one line in ``factory.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


class VectorIndex(ABC):
    """Inner-product search over L2-normalised vectors, addressed by int64 ids."""

    kind: ClassVar[str]
    #: file name of the index inside an index folder
    filename: ClassVar[str] = "vectors.faiss"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under the given ids (ids must not be present yet)."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; return how many were present."""

    def update(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the vectors of ids (present or not): remove, then add."""
        ids, vectors = self.check(ids, vectors, self.dim)
        self.remove(ids)
        self.add(ids, vectors)

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, widen: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each of shape (n, k), best first; missing slots have id -1.

        ``queries`` is one vector or a matrix of them; a matrix is searched in one call
        (faiss spreads it over threads), so batch queries rather than loop. ``widen`` > 1
        makes an approximate index look that many times further (more lists, a longer
        graph walk): what a filtered search needs when only a share of the vectors count.
        Safe to call from several threads at once.
        """

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the index into ``directory`` (the caller makes the write atomic)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, config: dict[str, Any], mmap: bool = True) -> VectorIndex:
        """Read an index written by ``save`` with the ``config`` it had.

        With ``mmap`` the codes stay in the file's pages (fast open, shared page cache);
        the first add or remove then copies them into memory.
        """

    @abstractmethod
    def __len__(self) -> int:
        """Number of live vectors."""

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this object with ``load``; stored in the manifest."""
        return {"kind": self.kind, "dim": self.dim, **self.build_params(), **self.search_params()}

    def build_params(self) -> dict[str, Any]:
        """Construction-time choices (graph degree, list count...); none for exact search."""
        return {}

    def search_params(self) -> dict[str, Any]:
        """Query-time knobs (efSearch, nprobe...); none for exact search."""
        return {}

    def set_search_params(self, **params: Any) -> None:
        """Change query-time knobs; backends without any accept none."""
        if params:
            raise ValueError(f"{self.kind} index has no search parameters {sorted(params)}")

    def search_grid(self, k: int) -> list[dict[str, Any]]:
        """Candidate search parameters for tuning at top-``k``, cheapest first.

        Every knob makes search slower and more accurate as it grows, so a tuner may skip
        any candidate whose values are all <= those of one that already missed the target.
        Exact search has no knobs: [].
        """
        return []

    def without(self, ids: np.ndarray) -> VectorIndex:
        """A search-only view of this index that never returns ``ids``: how a version hides
        the rows its delta segments deleted from a base that stays unchanged on disk. It
        shares the faiss index (nothing is copied but a live mask); ``len`` counts what
        it can return. Backends serving an index's base implement it (a server-backed one
        deletes in place and needs none)."""
        raise NotImplementedError(f"a {self.kind} index cannot serve as an index's base")

    def needs_compaction(self) -> bool:
        """True when removed-but-kept vectors waste enough to rebuild (see ``compact``)."""
        return False

    def compact(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Rebuild from the live vectors given by the caller; a no-op for real removals."""
        return None

    @staticmethod
    def check(ids: np.ndarray, vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Coerce ids/vectors to the dtypes faiss wants, checking shapes."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim == 1 and len(ids) == 1:
            vectors = vectors.reshape(1, -1)
        if vectors.ndim != 2 or vectors.shape[1] != dim or len(ids) != vectors.shape[0]:
            raise ValueError(f"expected {len(ids)} vectors of dimension {dim}, got {vectors.shape}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate ids in one add")
        return ids, vectors
