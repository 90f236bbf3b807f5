"""Removal for faiss indexes that cannot remove: ids of our own, and tombstones.

HNSW graphs cannot unlink a node and ``IndexRefine`` has no ``remove_ids``, so these
backends number vectors 0..n-1 inside faiss, keep the int64 id of each position, and
mark removed positions dead. Search hands faiss an ``IDSelectorBitmap`` of the live
positions (HNSW still walks through dead nodes, so the graph stays connected, but never
returns them) and checks the answer again, so a removed id can never come back. When
dead positions pass ``COMPACT_AT`` of the index, ``compact`` rebuilds it.
"""

from __future__ import annotations

import copy
import os
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
        #: faiss SearchParameters by (k, widen); cleared whenever knobs or contents change
        self._params: dict[tuple[int, float], Any] = {}
        self._selector_cache: Any = None
        #: the folder this index was loaded from while its faiss index and ids are unchanged
        #: there (a delete only marks positions dead): ``save`` links those files, not rewrites
        self._source: Path | None = None
        #: (live ids sorted, their positions), for ``without``; made at its first use
        self._by_id: tuple[np.ndarray, np.ndarray] | None = None

    # -- what a subclass provides -------------------------------------------------
    @abstractmethod
    def _new_index(self) -> faiss.Index:
        """An empty faiss index with this object's build parameters."""

    @abstractmethod
    def _search_parameters(
        self, selector: faiss.IDSelector | None, k: int, widen: float = 1.0
    ) -> Any:
        """faiss SearchParameters carrying the knobs (widened ``widen`` times, enough for
        ``k`` results) and the live selector; a new object, never shared state changed."""

    def _train(self, vectors: np.ndarray) -> None:
        """Train the codec on the first vectors added (no-op for untrained codecs)."""

    def _reset_params(self) -> None:
        self._params = {}
        self._selector_cache = None
        self._by_id = None

    # -- updates ----------------------------------------------------------------
    def _writable(self) -> None:
        self._source = None  # every change to the faiss index or the ids comes through here
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
        self._reset_params()

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0 or self._n_live == 0:
            return 0
        hit = np.isin(self._ids, ids) & self._live
        n = int(hit.sum())
        if n:
            self._live[hit] = False
            self._n_live -= n
            self._reset_params()
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
        self._reset_params()
        self.add(ids, vectors)

    def without(self, ids: np.ndarray) -> TombstoneIndex:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        view = copy.copy(self)
        view._params, view._selector_cache, view._source = {}, None, None
        if not len(ids) or not self._n_live:
            return view
        if self._by_id is None:
            positions = np.flatnonzero(self._live)
            live_ids = self._ids[positions]
            if len(live_ids) > 1 and not np.all(live_ids[1:] > live_ids[:-1]):
                order = np.argsort(live_ids, kind="stable")
                live_ids, positions = live_ids[order], positions[order]
            self._by_id = (live_ids, positions)
        live_ids, positions = self._by_id
        at = np.minimum(np.searchsorted(live_ids, ids), len(live_ids) - 1)
        hit = positions[at[live_ids[at] == ids]]
        view._live = self._live.copy()
        view._live[hit] = False
        view._n_live = int(self._n_live - len(np.unique(hit)))
        view._by_id = None
        return view

    # -- search -------------------------------------------------------------------
    def _selector(self) -> faiss.IDSelector | None:
        if self._n_live == len(self._live):
            return None
        if self._selector_cache is None:
            bitmap = np.packbits(self._live, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
            selector.bitmap_ref = bitmap  # the array must outlive the C++ pointer
            self._selector_cache = selector
        return self._selector_cache

    def search(
        self, queries: np.ndarray, k: int, widen: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = as_queries(queries, self.dim)
        if self._n_live == 0 or k <= 0:
            return (
                np.full((len(queries), max(k, 0)), -np.inf, dtype=np.float32),
                np.full((len(queries), max(k, 0)), -1, dtype=np.int64),
            )
        cacheable = widen == 1.0 and len(self._params) < 256  # the engine asks a few sizes
        params = self._params.get((k, widen)) if cacheable else None
        if params is None:
            params = self._search_parameters(self._selector(), k, widen)
            if cacheable:
                self._params[(k, widen)] = params
        scores, pos = self.index.search(queries, k, params=params)
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
        if not self._link_unchanged(directory):
            faiss.write_index(self.index, str(directory / self.filename))
            np.save(directory / self.ids_file, self._ids)
        np.save(directory / self.live_file, np.packbits(self._live, bitorder="little"))

    def _link_unchanged(self, directory: Path) -> bool:
        """Hard-link the unchanged faiss index and ids from the folder they were loaded
        from (published files never change); False where that cannot be done."""
        if self._source is None:
            return False
        made = []
        try:
            for name in (self.filename, self.ids_file):
                os.link(self._source / name, directory / name)
                made.append(directory / name)
        except OSError:  # another file system, or one without hard links: write them
            for path in made:
                path.unlink(missing_ok=True)
            return False
        return True

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], mmap: bool = True) -> TombstoneIndex:
        directory = Path(directory)
        params = {key: value for key, value in config.items() if key not in ("kind", "dim")}
        obj = cls(config["dim"], **params)
        obj.index, obj.mapped = read_index(directory / cls.filename, mmap)
        obj._source = directory
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
