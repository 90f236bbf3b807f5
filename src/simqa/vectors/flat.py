"""Exact inner-product search: the reference every other backend is measured against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from simqa.vectors.base import VectorIndex
from simqa.vectors.faissio import as_queries, read_index, writable

#: from this many queries a matrix product beats scanning once per query
BATCH_MIN = 20
#: bytes of scores per block of a batched search
BLOCK_BYTES = 64 * 2**20


class FlatIndex(VectorIndex):
    """faiss ``IndexFlatIP`` behind an id map: exact, supports removal.

    A single query is a SIMD scan of every vector, so its speed is bounded by memory
    bandwidth. A batch is a matrix product in numpy, whose OpenBLAS is about twice as fast
    on this machine's CPUs as the one faiss ships (see benchmarks/RESULTS.md).
    """

    kind = "flat"

    def __init__(self, dim: int, index: faiss.Index | None = None, mapped: bool = False) -> None:
        super().__init__(dim)
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.mapped = mapped

    def _writable(self) -> None:
        if self.mapped:
            self.index, self.mapped = writable(self.index), False

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = self.check(ids, vectors, self.dim)
        if len(ids) == 0:
            return
        self._writable()
        present = faiss.vector_to_array(self.index.id_map) if len(self) else ids[:0]
        if np.isin(ids, present).any():
            raise ValueError("some ids are already in the index; use update")
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0 or len(self) == 0:
            return 0
        self._writable()
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = as_queries(queries, self.dim)
        n = len(self)
        if len(queries) < BATCH_MIN or n <= k:
            return self.index.search(queries, k)
        # a view of faiss's stored vectors (no copy, mapped or not) and of its id map
        flat = faiss.downcast_index(self.index.index)
        vectors = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)
        id_map = faiss.rev_swig_ptr(self.index.id_map.data(), n)
        scores = np.empty((len(queries), k), dtype=np.float32)
        ids = np.empty((len(queries), k), dtype=np.int64)
        block = max(1, BLOCK_BYTES // (4 * n))
        for start in range(0, len(queries), block):
            sims = queries[start : start + block] @ vectors.T
            top = np.argpartition(sims, n - k, axis=1)[:, n - k :]
            top_scores = np.take_along_axis(sims, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            scores[start : start + block] = np.take_along_axis(top_scores, order, axis=1)
            ids[start : start + block] = id_map[np.take_along_axis(top, order, axis=1)]
        return scores, ids

    def save(self, directory: Path) -> None:
        faiss.write_index(self.index, str(Path(directory) / self.filename))

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], mmap: bool = True) -> FlatIndex:
        index, mapped = read_index(Path(directory) / cls.filename, mmap)
        return cls(config["dim"], index, mapped)

    def __len__(self) -> int:
        return int(self.index.ntotal)
