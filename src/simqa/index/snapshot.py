"""One published version of an index, opened read-only: what a search reads.

A snapshot never changes after it is opened, so the threads of a server can share it
without locks (the record store serialises its own short queries), and an ``Index``
moves to a newer version by swapping one snapshot for another.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

import simqa.vectors as vector_indexes
from simqa.errors import IndexCorrupt, SimqaError
from simqa.index.manifest import Manifest
from simqa.index.store import RecordStore

RECORDS = "records.sqlite"
DENSITY = "density.npy"
EMBEDDINGS = "embeddings.npy"
EMBEDDING_IDS = "embedding_ids.npy"
#: a filter keeping at most this many records is searched exactly over them (a few ms);
#: a larger one searches the vector index for more candidates until enough pass
EXACT_SUBSET_MAX = 20_000


class Snapshot:
    """The manifest, records, vector index, stored vectors and densities of one version."""

    def __init__(self, version_dir: Path, *, verify: bool = False) -> None:
        self.dir = version_dir
        self.manifest = Manifest.load(version_dir)
        self.manifest.verify(version_dir, checksums=verify)
        try:
            self.store = RecordStore(version_dir / RECORDS, readonly=True)
            self.vectors = vector_indexes.load(version_dir, self.manifest.vector_index)
            self.emb_ids = np.load(version_dir / EMBEDDING_IDS)  # 8 MB at 1M: searched often
            self.emb = np.load(version_dir / EMBEDDINGS, mmap_mode="r")
            self.hub_weight = float(self.manifest.hub_penalty.get("weight", 0.0))
            self.density = (
                np.load(version_dir / DENSITY, mmap_mode="r") if self.hub_weight else None
            )
        except SimqaError:
            raise
        except Exception as exc:  # faiss, sqlite and numpy each raise their own kinds
            raise IndexCorrupt(f"index at {version_dir} cannot be read: {exc}") from None
        if len(self.emb_ids) != len(self.emb) or len(self.emb_ids) != len(self.vectors):
            raise IndexCorrupt(f"index at {version_dir}: stored vectors and index disagree")

    def close(self) -> None:
        self.store.close()

    @functools.cache  # noqa: B019  (a snapshot never changes and lives as long as its index)
    def tag_counts(self) -> dict[str, int]:
        return self.store.tag_counts()

    def rows(self, vids: np.ndarray) -> np.ndarray:
        """Row numbers of stored vectors by vector id (every id must be present)."""
        rows = np.searchsorted(self.emb_ids, vids)
        rows = np.minimum(rows, max(len(self.emb_ids) - 1, 0))
        if len(vids) and not np.array_equal(self.emb_ids[rows], vids):
            raise IndexCorrupt(f"index at {self.dir}: a consultation has no stored vector")
        return rows

    def candidates(
        self, queries: np.ndarray, want: int, exact_over: np.ndarray | None, widen: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(cosines, vector ids) of the ``want`` best candidates per query, best first:
        exactly among the ids ``exact_over`` when given, else from the vector index
        looking ``widen`` times further than its tuned setting."""
        if exact_over is None:
            if len(queries) == 1:  # one query: threads cost more than they save (busy server)
                with one_thread():
                    return self.vectors.search(queries, want, widen)
            return self.vectors.search(queries, want, widen)
        vectors = np.asarray(self.emb[self.rows(exact_over)])
        return exact_search(queries, vectors, exact_over, want)


@contextmanager
def one_thread() -> Iterator[None]:
    """Search with one OpenMP thread in this thread only (OpenMP keeps the count per thread).

    A single IVF query spread over threads waits for whichever core is busy (a server's
    other requests), and gains little when none is; batches keep every thread."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def exact_search(
    queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, want: int
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-``want`` by inner product, padded with id -1 like faiss."""
    n = len(ids)
    out_scores = np.full((len(queries), want), -np.inf, dtype=np.float32)
    out_ids = np.full((len(queries), want), -1, dtype=np.int64)
    if n == 0:
        return out_scores, out_ids
    scores = np.asarray(queries, dtype=np.float32) @ vectors.T
    take = min(want, n)
    top = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < n else None
    if top is None:
        top = np.broadcast_to(np.arange(n), (len(queries), n))
    picked = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    out_scores[:, :take] = np.take_along_axis(picked, order, axis=1)
    out_ids[:, :take] = ids[np.take_along_axis(top, order, axis=1)]
    return out_scores, out_ids
