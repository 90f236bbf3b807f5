"""Removal for faiss indexes that cannot remove: ids of our own, and tombstones.

HNSW graphs cannot unlink a node and ``IndexRefine`` has no ``remove_ids``, so these
backends number vectors 0..n-1 inside faiss, keep the int64 id of each position, and
mark removed positions dead. Search hands faiss an ``IDSelectorBitmap`` of the live
positions (HNSW still walks through dead nodes, so the graph stays connected, but never
returns them) and checks the answer again, so a removed id can never come back. When
dead positions pass ``COMPACT_AT`` of the index, ``compact`` rebuilds it.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from simqa.vectors.base import VectorIndex
from simqa.vectors.faissio import as_queries, read_index, writable

#: rebuild when this share of stored positions is dead
COMPACT_AT = 0.2


class TombstoneIndex(VectorIndex):
    """Base for backends whose faiss index only appends; subclasses build ``self.index``."""

    ids_file: ClassVar[str] = "vectors.ids.npy"
    live_file: ClassVar[str] = "vectors.live.npy"

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.index: faiss.Index = self._new_index()
        self.mapped = False
        self._ids = np.zeros(0, dtype=np.int64)  # position -> id
        self._live = np.zeros(0, dtype=bool)  # position -> not removed
        self._n_live = 0
        self._params: Any = None  # cached faiss SearchParameters
        self._bitmap: np.ndarray | None = None  # keeps the selector's memory alive

    # -- what a subclass provides -------------------------------------------------
    @abstractmethod
    def _new_index(self) -> faiss.Index:
        """An empty faiss index with this object's build parameters."""

    @abstractmethod
    def _search_parameters(self, selector: faiss.IDSelector | None) -> Any:
        """faiss SearchParameters carrying the current knobs and the live selector."""

    def _train(self, vectors: np.ndarray) -> None:
        """Train the codec on the first vectors added (no-op for untrained codecs)."""

    # -- updates ----------------------------------------------------------------
    def _writable(self) -> None:
        if self.mapped:
            self.index, self.mapped = writable(self.index), False

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = self.check(ids, vectors, self.dim)
        if len(ids) == 0:
            return
        if np.isin(ids, self._ids[self._live]).any():
            raise ValueError("some ids are already in the index; use update")
        self._writable()
        if not self.index.is_trained:
            self._train(vectors)
        self.index.add(vectors)
        self._ids = np.concatenate([self._ids, ids])
        self._live = np.concatenate([self._live, np.ones(len(ids), dtype=bool)])
        self._n_live += len(ids)
        self._params = None

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0 or self._n_live == 0:
            return 0
        hit = np.isin(self._ids, ids) & self._live
        n = int(hit.sum())
        if n:
            self._live[hit] = False
            self._n_live -= n
            self._params = None
        return n

    def needs_compaction(self) -> bool:
        return len(self._live) > 0 and (len(self._live) - self._n_live) > COMPACT_AT * len(
            self._live
        )

    def compact(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Rebuild the faiss index from the caller's copy of the live vectors.

        Trained codecs (SQ ranges, IVF centroids, PQ codebooks) are kept: ``reset`` only
        drops the stored codes and graph.
        """
        ids, vectors = self.check(ids, vectors, self.dim)
        self._writable()
        self.index.reset()
        self._ids = np.zeros(0, dtype=np.int64)
        self._live = np.zeros(0, dtype=bool)
        self._n_live = 0
        self._params = None
        self.add(ids, vectors)

    # -- search -------------------------------------------------------------------
    def _current_params(self) -> Any:
        if self._params is None:
            selector = None
            if self._n_live < len(self._live):
                self._bitmap = np.packbits(self._live, bitorder="little")
                selector = faiss.IDSelectorBitmap(len(self._bitmap), faiss.swig_ptr(self._bitmap))
            self._params = self._search_parameters(selector)
        return self._params

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = as_queries(queries, self.dim)
        if self._n_live == 0 or k <= 0:
            return (
                np.full((len(queries), max(k, 0)), -np.inf, dtype=np.float32),
                np.full((len(queries), max(k, 0)), -1, dtype=np.int64),
            )
        scores, pos = self.index.search(queries, k, params=self._current_params())
        found = pos >= 0
        # second line of defence: a dead position never leaves this method
        found[found] = self._live[pos[found]]
        ids = np.where(found, self._ids[np.where(found, pos, 0)], -1)
        if not found.all():
            scores = np.where(found, scores, -np.inf).astype(np.float32)
            order = np.argsort(~found, axis=1, kind="stable")  # keep found ones first
            scores = np.take_along_axis(scores, order, axis=1)
            ids = np.take_along_axis(ids, order, axis=1)
        return scores, ids

    # -- persistence --------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        faiss.write_index(self.index, str(directory / self.filename))
        np.save(directory / self.ids_file, self._ids)
        np.save(directory / self.live_file, np.packbits(self._live, bitorder="little"))

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], mmap: bool = True) -> TombstoneIndex:
        directory = Path(directory)
        params = {key: value for key, value in config.items() if key not in ("kind", "dim")}
        obj = cls(config["dim"], **params)
        obj.index, obj.mapped = read_index(directory / cls.filename, mmap)
        obj._ids = np.load(directory / cls.ids_file)
        packed = np.load(directory / cls.live_file)
        obj._live = np.unpackbits(packed, count=len(obj._ids), bitorder="little").astype(bool)
        obj._n_live = int(obj._live.sum())
        if len(obj._ids) != obj.index.ntotal:
            from simqa.errors import IndexCorrupt

            raise IndexCorrupt(f"{directory}: vector ids and faiss index disagree in length")
        return obj

    def __len__(self) -> int:
        return self._n_live

    @property
    def n_stored(self) -> int:
        """Positions in the faiss index, dead ones included."""
        return len(self._ids)
