"""One published version of an index, opened read-only: what a search reads.

A version is a base and the delta segments written since (``index.segment``); a snapshot
presents them as one index. Its vectors are searched as the base's approximate index
(hiding the rows the deltas deleted) merged by score with an exact search of the deltas'
vectors; its records answer from the newest segment holding each row. A snapshot never
changes after it is opened, so the threads of a server share it without locks (each
thread reads SQLite through a connection of its own), and an ``Index`` moves to a newer
version by swapping one snapshot for another.

While a snapshot (or anything reading through it) is alive it holds a shared lock on its
version's folder, so no sweep removes the folder under it; letting it go (``close``, or
the last reference dropped) releases the lock and removes the versions nobody holds any
more.
"""

from __future__ import annotations

import heapq
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import faiss
import numpy as np

import simqa.index.layout as layout
from simqa.errors import IndexCorrupt, SimqaError
from simqa.index.manifest import Manifest
from simqa.index.names import VersionNames, base_phrases, delta_phrases
from simqa.index.segment import (
    DENSITY,
    EMBEDDING_IDS,
    EMBEDDINGS,
    RECORDS,
    Base,
    Delta,
    load_base,
    load_delta,
    member,
)
from simqa.index.store import Filter, RecordStore
from simqa.records import Consultation
from simqa.vectors.base import VectorIndex

__all__ = [
    "DENSITY", "EMBEDDINGS", "EMBEDDING_IDS", "EXACT_SUBSET_MAX", "RECORDS", "Snapshot",
    "exact_search", "one_thread",
]  # fmt: skip

#: a filter keeping at most this many records is searched exactly over them (a few ms);
#: a larger one searches the vector index for more candidates until enough pass
EXACT_SUBSET_MAX = 20_000

_EMPTY = np.zeros(0, dtype=np.int64)


class Snapshot:
    """The manifest, records, vectors and densities of one version: a base and its deltas."""

    def __init__(self, version_dir: Path, *, verify: bool = False, fd: int | None = None) -> None:
        """Open the version in ``version_dir``, holding ``fd`` (its folder's shared lock,
        from ``layout.open_version``; None: take one here). ``verify`` reads every checksum;
        otherwise sizes and headers are checked."""
        if fd is None:
            fd = _lock_folder(version_dir)
        stores: list[RecordStore] = []
        self._lease = _Lease(fd, stores, version_dir.parent)
        try:
            self.manifest = Manifest.load(version_dir)
            self.manifest.verify(version_dir, checksums=verify)
            base = load_base(version_dir, self.manifest.vector_index)
            deltas = [load_delta(version_dir / n, base.dim) for n in self.manifest.segments]
            stores.append(RecordStore(version_dir / RECORDS, readonly=True))
            stores.extend(
                RecordStore(version_dir / n, readonly=True) for n in self.manifest.segments
            )
        except SimqaError:
            self._lease.close()
            raise
        except Exception as exc:  # faiss, sqlite and numpy each raise their own kinds
            self._lease.close()
            raise IndexCorrupt(f"index at {version_dir} cannot be read: {exc}") from None
        self._assemble(version_dir, base, deltas, stores)

    @classmethod
    def open(cls, root: Path, *, verify: bool = False) -> Snapshot:
        """The live version of the index at ``root``."""
        version_dir, fd = layout.open_version(root)
        return cls(version_dir, verify=verify, fd=fd)

    def with_delta(self, delta: Delta, store: RecordStore | None = None) -> Snapshot:
        """This version with one more (unpublished) delta on top: what a writer searches to
        compute the densities of what it adds. Shares this snapshot's files and lock."""
        view = object.__new__(Snapshot)
        view.manifest = self.manifest
        view._lease = self._lease
        view._assemble(self.dir, self.base, [*self.deltas, delta], [*self.stores, store],
                       densities=delta.density is not None)  # fmt: skip
        return view

    def _assemble(
        self,
        version_dir: Path,
        base: Base,
        deltas: list[Delta],
        stores: list,
        densities: bool = True,
    ) -> None:
        """Work out, once, what the deltas hide and add: the deleted vector ids, each
        segment's shadowed rows, the deltas' live vectors and the density overrides
        (``densities=False``: none, for a writer's view before it computed its own)."""
        self.dir, self.base, self.deltas, self.stores = version_dir, base, deltas, stores
        m = self.manifest
        self.hub_weight = float(m.hub_penalty.get("weight", 0.0)) if m.hub_penalty else 0.0
        self.has_density = densities and bool(self.hub_weight) and base.density is not None
        dead = np.unique(np.concatenate([d.deletes for d in deltas])) if deltas else _EMPTY
        self.dead = dead
        # a row is hidden when deleted, or restated by a newer segment
        hidden: list[np.ndarray] = [_EMPTY] * (len(deltas) + 1)
        newer = _EMPTY
        for i in range(len(deltas), -1, -1):
            hidden[i] = np.union1d(dead, newer) if len(newer) else dead
            if i:
                newer = np.union1d(newer, deltas[i - 1].rows)
        self.hidden = hidden
        in_base = base.has(hidden[0])
        self.base_dead = dead[base.has(dead)]
        self.base_hidden = hidden[0][in_base]
        count = len(base.emb_ids) - len(self.base_hidden)
        live_ids, live_vecs, live_density = [], [], []
        for i, d in enumerate(deltas, start=1):
            count += len(d.rows) - int(np.isin(d.rows, hidden[i]).sum())
            keep = ~np.isin(d.ids, dead)
            live_ids.append(d.ids[keep])
            live_vecs.append(d.vectors[keep])
            if self.has_density:
                if d.density is None and len(d.ids):
                    raise IndexCorrupt(f"index at {version_dir}: a delta segment lacks densities")
                density = d.density if d.density is not None else np.zeros(0, np.float32)
                live_density.append(density[keep])
        self.count = count
        dim = base.dim
        self.d_ids = np.concatenate(live_ids) if live_ids else _EMPTY
        self.d_vecs = (
            np.ascontiguousarray(np.concatenate(live_vecs), dtype=np.float32)
            if live_vecs else np.zeros((0, dim), dtype=np.float32)
        )  # fmt: skip
        self.d_density = np.concatenate(live_density) if live_density else None
        self.overrides = (_EMPTY, np.zeros(0, dtype=np.float32))
        if self.has_density:
            self._fold_overrides()
        self.vectors = VersionVectors(
            version_dir, base, self.base_dead, self.d_ids, self.d_vecs, self._lease
        )
        self.store = VersionRecords(
            base, deltas, stores, hidden, dead, count, self.base_hidden, self._lease
        )
        self._all_ids: np.ndarray | None = None
        self._emb: np.ndarray | None = None
        self._tag_counts: dict[str, int] | None = None
        self._names: VersionNames | None = None
        self._names_lock = threading.Lock()

    def _fold_overrides(self) -> None:
        """Densities recomputed by later writes win: into the deltas' array, or kept as
        sorted (vector id, density) pairs over the base."""
        newest: dict[int, float] = {}
        for d in self.deltas:
            ids, values = d.overrides
            newest.update(zip(ids.tolist(), values.tolist(), strict=True))
        if not newest:
            return
        ids = np.fromiter(newest, dtype=np.int64, count=len(newest))
        values = np.fromiter(newest.values(), dtype=np.float32, count=len(newest))
        order = np.argsort(ids)
        ids, values = ids[order], values[order]
        in_delta = member(self.d_ids, ids)
        if in_delta.any():
            self.d_density = self.d_density.copy()
            self.d_density[np.searchsorted(self.d_ids, ids[in_delta])] = values[in_delta]
        self.overrides = (ids[~in_delta], values[~in_delta])

    def close(self) -> None:
        """Let the version go now (else when the last object reading it is dropped)."""
        self._lease.close()

    # --- vectors -------------------------------------------------------------------------

    def candidates(
        self,
        queries: np.ndarray,
        want: int,
        exact_over: np.ndarray | None = None,
        widen: float = 1.0,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """See ``VersionVectors.candidates``."""
        return self.vectors.candidates(queries, want, exact_over, widen, allowed)

    def vectors_of(self, vids: np.ndarray) -> np.ndarray:
        """The stored vectors of live vector ids, as a float32 matrix in the order given."""
        return self.vectors.vectors_of(vids)

    def density_of(self, vids: np.ndarray) -> np.ndarray:
        """The neighbour densities of live vector ids (the hub penalty must be on)."""
        vids = np.asarray(vids, dtype=np.int64).reshape(-1)
        out = np.empty(len(vids), dtype=np.float32)
        in_delta = member(self.d_ids, vids)
        if in_delta.any():
            out[in_delta] = self.d_density[np.searchsorted(self.d_ids, vids[in_delta])]
        rest = ~in_delta
        if rest.any():
            out[rest] = self.base.density[self.base.rows(vids[rest])]
            ids, values = self.overrides
            if len(ids):
                changed = member(ids, vids) & rest
                out[changed] = values[np.searchsorted(ids, vids[changed])]
        return out

    def all_ids(self) -> np.ndarray:
        """Every live vector id, sorted (base rows first: the deltas' ids are all newer)."""
        if self._all_ids is None:
            ids = self.base.emb_ids
            if len(self.base_dead):
                keep = np.ones(len(ids), dtype=bool)
                keep[self.base.rows(self.base_dead)] = False
                ids = ids[keep]
            self._all_ids = np.concatenate([ids, self.d_ids]) if len(self.d_ids) else ids
        return self._all_ids

    # what code written against single-file versions reads: every live vector, in id order

    @property
    def emb_ids(self) -> np.ndarray:
        return self.all_ids()

    @property
    def emb(self) -> np.ndarray:
        """Every live stored vector in ``emb_ids`` order: the base's mapped file while no
        delta is on top, else a copy."""
        if not len(self.base_dead) and not len(self.d_ids):
            return self.base.emb
        if self._emb is None:
            self._emb = self.vectors_of(self.all_ids())
        return self._emb

    def rows(self, vids: np.ndarray) -> np.ndarray:
        """Row numbers of live vector ids in ``emb`` (every id must be present)."""
        ids = self.all_ids()
        rows = np.minimum(np.searchsorted(ids, vids), max(len(ids) - 1, 0))
        if len(vids) and not np.array_equal(ids[rows], vids):
            raise IndexCorrupt(f"index at {self.dir}: a consultation has no stored vector")
        return rows

    @property
    def density(self) -> np.ndarray | None:
        """Every live vector's density in ``emb_ids`` order (None: the penalty is off)."""
        return self.density_of(self.all_ids()) if self.has_density else None

    def tag_counts(self) -> dict[str, int]:
        """Live records per topic, counted once per snapshot (it never changes)."""
        if self._tag_counts is None:
            self._tag_counts = self.store.tag_counts()
        return self._tag_counts

    def names(self) -> VersionNames:
        """The names its live records hold (``index.names``), made at first use: the base's
        once per loaded base, each delta's once per segment, this version's view from them."""
        if self._names is None:
            with self._names_lock:
                if self._names is None:
                    fields = self.manifest.embed_fields
                    parts = [(base_phrases(self.base, self.dir, self.stores[0], fields),
                              self.hidden[0])]  # fmt: skip
                    for delta, store, hidden in zip(
                        self.deltas, self.stores[1:], self.hidden[1:], strict=True
                    ):
                        parts.append((delta_phrases(delta, store, fields), hidden))
                    self._names = VersionNames(parts, self.count)
        return self._names

    # --- what a writer and ``simqa info`` read ------------------------------------------

    @property
    def delta_records(self) -> int:
        """Live records whose rows are in the deltas."""
        return self.count - (len(self.base.emb_ids) - len(self.base_hidden))

    def files_bytes(self) -> int:
        return sum(int(f["bytes"]) for f in self.manifest.files.values())


class VersionVectors:
    """A version's vectors as one index: the base's approximate index, hiding the rows the
    deltas deleted, merged by score with an exact search of the deltas' live vectors."""

    def __init__(
        self,
        version_dir: Path,
        base: Base,
        base_dead: np.ndarray,
        d_ids: np.ndarray,
        d_vecs: np.ndarray,
        lease: _Lease,
    ) -> None:
        self.dir, self.base, self.base_dead = version_dir, base, base_dead
        self._lease = lease  # the version stays open while this is read
        self.d_ids, self.d_vecs = d_ids, d_vecs
        self._base_index: VectorIndex | None = None

    def __len__(self) -> int:
        return len(self.base.emb_ids) - len(self.base_dead) + len(self.d_ids)

    @property
    def base_index(self) -> VectorIndex:
        """The base's vector index, hiding the rows the deltas deleted (made at first use)."""
        if self._base_index is None:
            self._base_index = self.base.vectors(self.dir).without(self.base_dead)
        return self._base_index

    def search(
        self, queries: np.ndarray, k: int, widen: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.candidates(queries, k, None, widen)

    def candidates(
        self,
        queries: np.ndarray,
        want: int,
        exact_over: np.ndarray | None = None,
        widen: float = 1.0,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(cosines, vector ids) of the ``want`` best candidates per query, best first:
        exactly among the ids ``exact_over`` when given, else the base's vector index
        (looking ``widen`` times further than its tuned setting) merged with an exact search
        of the deltas' vectors (those among ``allowed`` only, when given)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries.reshape(1, -1)
        if exact_over is not None:
            return exact_search(queries, self.vectors_of(exact_over), exact_over, want)
        if len(queries) == 1:  # one query: threads cost more than they save (busy server)
            with one_thread():
                scores, ids = self.base_index.search(queries, want, widen)
        else:
            scores, ids = self.base_index.search(queries, want, widen)
        if not len(self.d_ids):
            return scores, ids
        if allowed is None:
            d_scores, d_ids = exact_search(queries, self.d_vecs, self.d_ids, want)
        else:
            over = np.intersect1d(allowed, self.d_ids, assume_unique=True)
            rows = np.searchsorted(self.d_ids, over)
            d_scores, d_ids = exact_search(queries, self.d_vecs[rows], over, want)
        scores = np.concatenate([scores, d_scores], axis=1)
        ids = np.concatenate([ids, d_ids], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :want]
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)

    def vectors_of(self, vids: np.ndarray) -> np.ndarray:
        """The stored vectors of live vector ids, as a float32 matrix in the order given."""
        vids = np.asarray(vids, dtype=np.int64).reshape(-1)
        in_delta = member(self.d_ids, vids)
        if not in_delta.any():
            return np.asarray(self.base.emb[self.base.rows(vids)], dtype=np.float32)
        out = np.empty((len(vids), self.base.dim), dtype=np.float32)
        out[in_delta] = self.d_vecs[np.searchsorted(self.d_ids, vids[in_delta])]
        rest = ~in_delta
        if rest.any():
            out[rest] = self.base.emb[self.base.rows(vids[rest])]
        return out


class VersionRecords:
    """A version's records as one store: each row from the newest segment holding it,
    deleted and shadowed rows left out; the ``RecordStore`` reading methods."""

    def __init__(
        self,
        base: Base,
        deltas: list[Delta],
        stores: list[RecordStore],
        hidden: list[np.ndarray],
        dead: np.ndarray,
        count: int,
        base_hidden: np.ndarray,
        lease: _Lease,
    ) -> None:
        self._lease = lease  # the version stays open while this is read (an iterator, say)
        self.base, self.deltas, self.stores, self.hidden = base, deltas, stores, hidden
        self.dead, self.count, self.base_hidden = dead, count, base_hidden
        # every delta row's vector id, sorted, with the newest delta holding it (1-based)
        rows = [d.rows for d in deltas]
        owners = [np.full(len(r), i, dtype=np.int32) for i, r in enumerate(rows, start=1)]
        self._rows = np.concatenate(rows) if rows else _EMPTY
        self._owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int32)
        if len(self._rows):
            order = np.lexsort((self._owner, self._rows))
            self._rows, self._owner = self._rows[order], self._owner[order]
            last = np.append(self._rows[1:] != self._rows[:-1], True)  # newest of each vid
            self._rows, self._owner = self._rows[last], self._owner[last]

    def _segments(self) -> list[tuple[RecordStore, np.ndarray]]:
        """(store, rows it must hide) of the base, then each delta, oldest first."""
        return list(zip(self.stores, self.hidden, strict=True))

    def _holding(self, record_ids: list[str]) -> list[RecordStore]:
        """The stores that may hold rows of these record ids, newest first: the deltas
        that have one (their ids are in memory), then the base."""
        wanted = set(record_ids)
        stores = [
            store
            for store, delta in zip(reversed(self.stores[1:]), reversed(self.deltas), strict=True)
            if delta.record_ids is None or not wanted.isdisjoint(delta.record_ids)
        ]
        return [*stores, self.stores[0]]

    def __len__(self) -> int:
        return self.count

    def get(self, record_id: str) -> tuple[int, Consultation, str] | None:
        """(vid, record, text hash) for a record id, or None."""
        dead = self.dead
        for store in self._holding([record_id]):
            found = store.get(record_id)
            if found is not None and not member(dead, np.array([found[0]]))[0]:
                return found
        return None

    def get_many(self, record_ids: list[str]) -> dict[str, tuple[int, Consultation, str]]:
        """``get`` of many ids: (vid, record, text hash) by id, for those there are."""
        dead = self.dead
        out: dict[str, tuple[int, Consultation, str]] = {}
        todo = list(dict.fromkeys(record_ids))
        for store in self._holding(todo):
            if not todo:
                break
            for rid, found in store.get_many(todo).items():
                if not member(dead, np.array([found[0]]))[0]:
                    out[rid] = found
            todo = [r for r in todo if r not in out]
        return out

    def fetch(self, vids) -> dict[int, tuple[Consultation, str]]:
        """Records and text hashes by vid; unknown and deleted vids are left out."""
        vids = np.unique(np.asarray(list(vids) if not isinstance(vids, np.ndarray) else vids,
                                    dtype=np.int64))  # fmt: skip
        vids = vids[~member(self.dead, vids)]
        found: dict[int, tuple[Consultation, str]] = {}
        owner = np.zeros(len(vids), dtype=np.int32)  # 0: the base
        if len(self._rows) and len(vids):
            at = np.minimum(np.searchsorted(self._rows, vids), len(self._rows) - 1)
            here = self._rows[at] == vids
            owner[here] = self._owner[at[here]]
        for segment in np.unique(owner).tolist():
            found.update(self.stores[segment].fetch(vids[owner == segment].tolist()))
        return found

    def vids_where(self, where: Filter) -> np.ndarray:
        """Sorted vector ids of the live records a filter keeps."""
        parts = []
        for store, hidden in self._segments():
            vids = store.vids_where(where)
            parts.append(vids[~member(hidden, vids)] if len(hidden) else vids)
        return np.sort(np.concatenate(parts)) if len(parts) > 1 else parts[0]

    def tag_counts(self) -> dict[str, int]:
        """Live records per topic (casefolded)."""
        return self._counted("tags", lambda store, only: store.tag_counts(only))

    def counts_by(self, column: str) -> dict[str, int]:
        """Live record counts per source or department."""
        counts = self._counted(column, lambda store, only: store.counts_by(column, only))
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def _counted(self, what: str, count) -> dict[str, int]:
        """A count over the base's rows (made once per base), less its hidden rows, plus
        each delta's live rows."""
        s = self
        memo = s.base.memo
        if what not in memo:
            memo[what] = count(s.stores[0], None)
        totals = dict(memo[what])
        if len(s.base_hidden):
            for key, n in count(s.stores[0], s.base_hidden).items():
                totals[key] -= n
        for store, delta, hidden in zip(s.stores[1:], s.deltas, s.hidden[1:], strict=True):
            live = delta.rows[~member(hidden, delta.rows)] if len(hidden) else delta.rows
            if len(live):
                for key, n in count(store, live).items():
                    totals[key] = totals.get(key, 0) + n
        return {key: n for key, n in totals.items() if n > 0}

    def iter_records(self) -> Iterator[tuple[int, Consultation]]:
        """(vid, record) of every live record, in vector id order."""

        def live(store: RecordStore, hidden: np.ndarray) -> Iterator[tuple[int, Consultation]]:
            skip = set(hidden.tolist())
            for vid, record in store.iter_records():
                if vid not in skip:
                    yield vid, record

        streams = [live(store, hidden) for store, hidden in self._segments()]
        if len(streams) == 1:
            yield from streams[0]
        else:
            yield from heapq.merge(*streams, key=lambda pair: pair[0])

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
    """Brute-force top-``want`` by inner product, padded with id -1 like faiss.

    faiss's exhaustive search: one query runs on one thread in SIMD loops (a BLAS call
    would spread a 3 MB product over every core and wait for the busiest, ten times
    slower on a loaded server); a batch goes through BLAS."""
    n = len(ids)
    out_scores = np.full((len(queries), want), -np.inf, dtype=np.float32)
    out_ids = np.full((len(queries), want), -1, dtype=np.int64)
    if n == 0 or want == 0:
        return out_scores, out_ids
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    take = min(want, n)
    if len(queries) == 1:
        with one_thread():
            scores, rows = faiss.knn(queries, vectors, take, faiss.METRIC_INNER_PRODUCT)
    else:
        scores, rows = faiss.knn(queries, vectors, take, faiss.METRIC_INNER_PRODUCT)
    found = rows >= 0
    out_scores[:, :take] = np.where(found, scores, -np.inf)
    out_ids[:, :take] = np.where(found, np.asarray(ids)[np.where(found, rows, 0)], -1)
    return out_scores, out_ids


def _lock_folder(version_dir: Path) -> int:
    import fcntl
    import os

    try:
        fd = os.open(version_dir, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise IndexCorrupt(f"version folder {version_dir} is missing") from None
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


class _Lease:
    """A version held open: its folder's shared lock and its SQLite connections, let go
    when the snapshot and every object reading through it (its records and vectors, an
    iterator over them) are gone, or at ``close``."""

    def __init__(self, fd: int, stores: list[RecordStore], root: Path) -> None:
        self._finalizer = weakref.finalize(self, _let_go, fd, stores, root)

    def close(self) -> None:
        self._finalizer()


def _let_go(fd: int, stores: list[RecordStore], root: Path) -> None:
    """Close a version's connections and release its folder; then remove the superseded
    versions no reader holds (this one, if it was the last reader of an old version)."""
    for store in stores:
        with suppress(Exception):
            store.close()
    layout.release(fd)
    with suppress(Exception):
        layout.sweep(root)
