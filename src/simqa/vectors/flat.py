"""Exact inner-product search: the reference every other backend is measured against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from simqa.vectors.base import VectorIndex


class FlatIndex(VectorIndex):
    """faiss ``IndexFlatIP`` behind an id map: exact, supports removal, fine up to ~100k."""

    kind = "flat"

    def __init__(self, dim: int, index: faiss.Index | None = None) -> None:
        super().__init__(dim)
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = self.check(ids, vectors, self.dim)
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        return int(self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        return self.index.search(queries, k)

    def save(self, directory: Path) -> None:
        faiss.write_index(self.index, str(directory / self.filename))

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any]) -> FlatIndex:
        index = faiss.read_index(str(directory / cls.filename))
        return cls(config["dim"], index)

    def __len__(self) -> int:
        return int(self.index.ntotal)
