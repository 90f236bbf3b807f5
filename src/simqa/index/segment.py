"""The parts a version is made of: one immutable base and the delta segments written since.

::

    vNNNNNN/manifest.json       the version: model, counts, its segments (oldest first), checksums
            records.sqlite      the base's records
            vectors.faiss       the base's approximate index (+ vectors.ids.npy, vectors.live.npy)
            embeddings.npy      the base's vectors, by vector id (embedding_ids.npy)
            density.npy         the base's neighbour densities (hub penalty only)
            names.npz           the base's name postings (``index.names``; made at first use
                                for a base without it)
            delta-<hex>.sqlite  one per write since the base: the records it added or updated,
                                the vectors of the new ones (searched exactly), the vector ids
                                of older rows it deleted or replaced, new densities

A write hard-links every file of the version before it and adds one delta segment, so it
costs the change, not the index. Vector ids only grow (``Manifest.next_vid``): a delta's
new ids are above every older one, so a vector id names one row in one segment for good,
and a row's id survives compaction (which folds the deltas into a new base). A record
updated without a change to its embedded text keeps its vector id and vector; its newer
row *restates* the vector id, shadowing the older row.

Loaded parts are shared by every version (and every ``Index``) of a process that links the
same files: a new version costs its new delta, not a reload of the base.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import numpy as np

import simqa.vectors as vector_indexes
from simqa.errors import IndexCorrupt
from simqa.index.store import RecordStore
from simqa.records import Consultation
from simqa.vectors.base import VectorIndex

RECORDS = "records.sqlite"
DENSITY = "density.npy"
EMBEDDINGS = "embeddings.npy"
EMBEDDING_IDS = "embedding_ids.npy"
DELTA_PREFIX = "delta-"
DELTA_SUFFIX = ".sqlite"

#: what a delta segment holds besides the records and tags tables of ``index.store``
_DELTA_SCHEMA = """
CREATE TABLE vectors (vid INTEGER PRIMARY KEY, embedding BLOB NOT NULL, density REAL);
CREATE TABLE deletes (vid INTEGER PRIMARY KEY);
CREATE TABLE densities (vid INTEGER PRIMARY KEY, density REAL NOT NULL);
"""

_EMPTY_IDS = np.zeros(0, dtype=np.int64)


def delta_name() -> str:
    """A new delta segment's file name, unique within the index."""
    return f"{DELTA_PREFIX}{uuid.uuid4().hex[:16]}{DELTA_SUFFIX}"


class Base:
    """A base's vectors, densities and vector index (its records are read per version)."""

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        self.config = config
        self.emb_ids = np.load(directory / EMBEDDING_IDS)  # 8 MB at 1M: searched often
        self.emb = np.load(directory / EMBEDDINGS, mmap_mode="r")
        density = directory / DENSITY
        self.density = np.load(density, mmap_mode="r") if density.exists() else None
        if len(self.emb_ids) != len(self.emb) or (
            self.density is not None and len(self.density) != len(self.emb_ids)
        ):
            raise IndexCorrupt(f"index at {directory}: stored vectors and their ids disagree")
        self.dim = int(self.emb.shape[1]) if self.emb.ndim == 2 else int(config.get("dim", 0))
        self._vectors: VectorIndex | None = None
        self._lock = threading.Lock()
        #: figures computed once per base (tag and column counts of all its rows)
        self.memo: dict[Any, Any] = {}

    def vectors(self, directory: Path) -> VectorIndex:
        """The vector index, mapped from ``directory`` (a folder holding this base) at first use."""
        with self._lock:
            if self._vectors is None:
                index = vector_indexes.load(directory, self.config)
                if len(index) != len(self.emb_ids):
                    raise IndexCorrupt(f"index at {directory}: stored vectors and index disagree")
                self._vectors = index
            return self._vectors

    def has(self, vids: np.ndarray) -> np.ndarray:
        """Which of ``vids`` are rows of this base."""
        return member(self.emb_ids, vids)

    def rows(self, vids: np.ndarray) -> np.ndarray:
        """Row numbers of stored vectors by vector id (every id must be present)."""
        rows = np.minimum(np.searchsorted(self.emb_ids, vids), max(len(self.emb_ids) - 1, 0))
        if len(vids) and not np.array_equal(self.emb_ids[rows], vids):
            raise IndexCorrupt("a consultation of the index has no stored vector")
        return rows


class Delta:
    """One delta segment's vectors, densities and deletions, loaded (its records stay in
    SQLite): ``ids`` / ``vectors`` of its new rows, sorted; ``rows`` every row's vector id
    (new and restated); ``deletes`` the older vector ids it removes; ``overrides`` the new
    densities of older vectors near what it changed."""

    def __init__(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        rows: np.ndarray,
        deletes: np.ndarray,
        density: np.ndarray | None = None,
        overrides: tuple[np.ndarray, np.ndarray] | None = None,
        record_ids: frozenset[str] | None = None,
    ) -> None:
        self.ids, self.vectors, self.rows, self.deletes = ids, vectors, rows, deletes
        self.density = density
        self.overrides = overrides or (_EMPTY_IDS, np.zeros(0, dtype=np.float32))
        #: the record ids of its rows: a look-up by id visits only the segments holding it
        self.record_ids = record_ids
        #: what is made once per loaded segment (its name postings, ``index.names``)
        self.memo: dict[Any, Any] = {}

    @classmethod
    def load(cls, path: Path, dim: int) -> Delta:
        uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
        db = sqlite3.connect(uri, uri=True)
        try:
            got = db.execute("SELECT vid, embedding, density FROM vectors ORDER BY vid").fetchall()
            pairs_ = db.execute("SELECT vid, id FROM records ORDER BY vid").fetchall()
            rows = _ints(pairs_)
            deletes = _ints(db.execute("SELECT vid FROM deletes ORDER BY vid").fetchall())
            pairs = db.execute("SELECT vid, density FROM densities ORDER BY vid").fetchall()
        except sqlite3.Error as exc:
            raise IndexCorrupt(f"delta segment {path} cannot be read: {exc}") from None
        finally:
            db.close()
        ids = _ints(got)
        vectors = np.frombuffer(b"".join(g[1] for g in got), dtype=np.float32)
        if vectors.size != len(ids) * dim:
            raise IndexCorrupt(f"delta segment {path}: vectors of the wrong size")
        vectors = vectors.reshape(len(ids), dim)
        density = None
        if got and got[0][2] is not None:
            density = np.array([g[2] for g in got], dtype=np.float32)
        overrides = (_ints(pairs), np.array([p[1] for p in pairs], dtype=np.float32))
        record_ids = frozenset(p[1] for p in pairs_)
        return cls(ids, vectors, rows, deletes, density, overrides, record_ids)

    @property
    def restated(self) -> np.ndarray:
        """Vector ids of older rows this segment restates (updated without a new vector)."""
        return self.rows[~member(self.ids, self.rows)]


def write_delta(
    path: Path,
    rows: Iterable[tuple[int, Consultation, str]],
    delta: Delta,
) -> None:
    """Write a delta segment: ``rows`` (vector id, record, text hash) and ``delta``'s
    vectors, densities, deletions and density overrides. No journal: the file is in a
    staging folder until it is published, and thrown away with it if anything fails."""
    store = RecordStore(path)  # the records schema, in a staging folder
    try:
        store.db.executescript(_DELTA_SCHEMA)
        store.insert_rows(rows)
        density = delta.density
        with store.db as conn:
            conn.executemany(
                "INSERT INTO vectors (vid, embedding, density) VALUES (?, ?, ?)",
                (
                    (int(v), np.asarray(vec, dtype=np.float32).tobytes(),
                     None if density is None else float(density[i]))
                    for i, (v, vec) in enumerate(zip(delta.ids, delta.vectors, strict=True))
                ),
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO deletes (vid) VALUES (?)", ((int(v),) for v in delta.deletes)
            )
            ids, values = delta.overrides
            conn.executemany(
                "INSERT INTO densities (vid, density) VALUES (?, ?)",
                ((int(v), float(d)) for v, d in zip(ids, values, strict=True)),
            )
    finally:
        store.close()


# --- sharing loaded parts between versions ---------------------------------------------------

_T = TypeVar("_T")
_LOADED: weakref.WeakValueDictionary[tuple, Any] = weakref.WeakValueDictionary()
_LOADED_LOCK = threading.Lock()


def shared(paths: Iterable[Path], make: Callable[[], _T]) -> _T:
    """The object ``make`` loads from these files, shared while anyone holds it: keyed by
    the files' identity (device, inode, size, mtime), which hard links keep."""
    key = tuple(
        (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) for st in (os.stat(p) for p in paths)
    )
    with _LOADED_LOCK:
        found = _LOADED.get(key)
    if found is not None:
        return found
    made = make()
    with _LOADED_LOCK:
        return _LOADED.setdefault(key, made)


def load_base(directory: Path, config: dict[str, Any]) -> Base:
    return shared(
        (directory / EMBEDDING_IDS, directory / RECORDS), lambda: Base(directory, config)
    )


def load_delta(path: Path, dim: int) -> Delta:
    return shared((path,), lambda: Delta.load(path, dim))


def _ints(rows: list) -> np.ndarray:
    return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))


def member(sorted_ids: np.ndarray, vids: np.ndarray) -> np.ndarray:
    """Which of ``vids`` are in the sorted array ``sorted_ids``."""
    vids = np.asarray(vids, dtype=np.int64)
    if not len(sorted_ids) or not len(vids):
        return np.zeros(len(vids), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, vids), len(sorted_ids) - 1)
    return sorted_ids[at] == vids
