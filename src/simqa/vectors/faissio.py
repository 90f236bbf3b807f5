"""faiss file I/O and threading shared by every backend.

Opening a large index should not copy it into memory: faiss can map the code arrays
of flat, HNSW and IVF indexes straight from the file (``IO_FLAG_MMAP_IFC``). A mapped
index is read-only - faiss aborts the whole process when a mapped array is resized -
so ``writable`` turns it into an owned copy before any add or remove.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

#: zero-copy mapping of code arrays (flat codes, HNSW links, IVF lists); the older
#: ``IO_FLAG_MMAP`` only covers on-disk IVF lists and fails on ordinary ones.
MMAP_FLAGS = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY


def read_index(path: Path, mmap: bool = True) -> tuple[faiss.Index, bool]:
    """Read a faiss index, mapped from disk where the type allows; return (index, mapped)."""
    if mmap:
        try:
            return faiss.read_index(str(path), MMAP_FLAGS), True
        except RuntimeError:
            pass  # a type faiss cannot map: read it into memory instead
    return faiss.read_index(str(path)), False


def writable(index: faiss.Index) -> faiss.Index:
    """An in-memory copy of a mapped index that add/remove may modify.

    ``faiss.clone_index`` keeps mapped arrays as views, so round-trip through bytes.
    """
    return faiss.deserialize_index(faiss.serialize_index(index))


def set_threads(n: int | None) -> int:
    """Let faiss use ``n`` threads (None or 0: all cores); return the number in force."""
    import os

    faiss.omp_set_num_threads(int(n) if n else (os.cpu_count() or 1))
    return int(faiss.omp_get_max_threads())


def as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    """Queries as a C-contiguous float32 (n, dim) matrix; a single vector becomes one row."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries.reshape(1, -1)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ValueError(f"expected queries of dimension {dim}, got shape {queries.shape}")
    return queries
