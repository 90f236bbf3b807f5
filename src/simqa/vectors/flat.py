"""Exact inner-product search: the reference every other backend is measured against."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from simqa.vectors.base import VectorIndex
from simqa.vectors.faissio import as_queries, read_index, writable


class FlatIndex(VectorIndex):
    """faiss ``IndexFlatIP`` behind an id map: exact, supports removal, fine up to ~100k.

    Search reads every vector once, so its speed is bounded by memory bandwidth.
    """

    kind = "flat"

    def __init__(self, dim: int, index: faiss.Index | None = None, mapped: bool = False) -> None:
        super().__init__(dim)
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.mapped = mapped
        #: search parameters hiding the ids a ``without`` view leaves out (None: none)
        self._hide: Any = None
        self._hidden = 0

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

    def search(
        self, queries: np.ndarray, k: int, widen: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = as_queries(queries, self.dim)  # exact: nothing to widen
        if self._hide is None:
            return self.index.search(queries, k)
        return self.index.search(queries, k, params=self._hide)

    def without(self, ids: np.ndarray) -> FlatIndex:
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        ids = ids[ids >= 0]
        view = copy.copy(self)
        if self._hide is not None:  # a view of a view hides both sets
            ids = np.union1d(ids, self._hide.hidden_ids)
        present = faiss.vector_to_array(self.index.id_map) if len(ids) else ids
        view._hidden = int(np.isin(ids, present).sum()) if len(ids) else 0
        if not view._hidden:
            view._hide, view._hidden = None, 0
            return view
        bitmap = np.zeros(int(ids[-1]) // 8 + 1, dtype=np.uint8)
        np.bitwise_or.at(bitmap, ids // 8, (1 << (ids % 8)).astype(np.uint8))
        hidden = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        params = faiss.SearchParameters()
        params.sel = faiss.IDSelectorNot(hidden)
        # the Python objects must outlive the C++ pointers
        params.refs, params.hidden_ids = (bitmap, hidden, params.sel), ids
        view._hide = params
        return view

    def save(self, directory: Path) -> None:
        faiss.write_index(self.index, str(Path(directory) / self.filename))

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], mmap: bool = True) -> FlatIndex:
        index, mapped = read_index(Path(directory) / cls.filename, mmap)
        return cls(config["dim"], index, mapped)

    def __len__(self) -> int:
        return int(self.index.ntotal) - self._hidden
