"""Pick, create and load vector backends by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simqa.errors import SimqaError
from simqa.vectors.base import VectorIndex
from simqa.vectors.flat import FlatIndex
from simqa.vectors.hnsw import HNSWIndex, HNSWSQ8Index
from simqa.vectors.ivf import IVFPQIndex, default_nlist

BACKENDS: dict[str, type[VectorIndex]] = {
    cls.kind: cls for cls in (FlatIndex, HNSWIndex, HNSWSQ8Index, IVFPQIndex)
}

#: exact search stays fast enough (a few ms a query) up to about this many vectors
FLAT_MAX = 20_000
HNSW_M = 32


def create(kind: str, dim: int, **params: Any) -> VectorIndex:
    """A new empty index of the named kind, with build/search parameters ``params``."""
    backend = create_class(kind)
    try:
        return backend(dim, **params)
    except TypeError as exc:
        raise SimqaError(f"bad parameters for a {kind} index: {exc}") from None


def load(directory: Path, config: dict[str, Any], mmap: bool = True) -> VectorIndex:
    """Load the index stored in ``directory`` as described by its manifest ``config``."""
    return create_class(config["kind"]).load(Path(directory), config, mmap=mmap)


def create_class(kind: str) -> type[VectorIndex]:
    if kind not in BACKENDS:
        choices = ", ".join(BACKENDS)
        raise SimqaError(f"unknown index type {kind!r}; choose one of {choices}")
    return BACKENDS[kind]


def estimate_bytes(kind: str, n: int, dim: int, params: dict[str, Any] | None = None) -> int:
    """Rough resident size of an index of ``n`` vectors (codes, links and ids)."""
    params = params or {}
    if kind == "flat":
        return n * (4 * dim + 16)
    if kind in ("hnsw", "hnsw_sq8"):
        code = 4 * dim if kind == "hnsw" else dim
        links = 2 * int(params.get("M", HNSW_M)) * 4 * 1.1  # level 0 has 2M links; upper ~10%
        return int(n * (code + links + 24))
    if kind == "ivf_pq":
        refine = {"flat": 4 * dim, "fp16": 2 * dim, "sq8": dim}[params.get("refine", "flat")]
        return int(n * (dim / 4 + refine + 24))
    raise SimqaError(f"unknown index type {kind!r}")


def choose(
    n_vectors: int, dim: int, memory_budget_bytes: int | None = None
) -> tuple[str, dict[str, Any], str]:
    """The backend for a corpus of this size, its parameters, and why (shown by ``simqa info``)."""
    size = f"{n_vectors:,} vectors x {dim} dims"

    def fits(kind: str, params: dict[str, Any]) -> bool:
        return (
            memory_budget_bytes is None
            or estimate_bytes(kind, n_vectors, dim, params) <= memory_budget_bytes
        )

    def mib(kind: str, params: dict[str, Any]) -> str:
        return f"~{estimate_bytes(kind, n_vectors, dim, params) / 2**20:,.0f} MiB"

    if n_vectors <= FLAT_MAX and fits("flat", {}):
        return (
            "flat",
            {},
            (
                f"{size}: exact search reads {mib('flat', {})} per query, fast enough at this "
                "size, and needs no tuning"
            ),
        )
    ivf = {"nlist": default_nlist(n_vectors)}
    why = "too many for exact search"
    if n_vectors <= FLAT_MAX:
        why = "exact search exceeds the memory budget"
    # IVF fast-scan + re-rank beat HNSW (faiss's and hnswlib's) at recall@10 >= 0.95 on the
    # real MedQuAD vectors by 4.5x, the 8-bit re-rank at 0.3x hnswlib's memory
    # (benchmarks/results/vectors_47k.json); HNSW stays available (--index-type hnsw / hnsw_sq8).
    for refine, how in (
        ("flat", "an exact float32 re-rank"),
        ("fp16", "a float16 re-rank (float32 exceeds the memory budget)"),
        ("sq8", "an 8-bit re-rank (float32 and float16 exceed the memory budget)"),
    ):
        params = {**ivf, "refine": refine}
        if fits("ivf_pq", params):
            return (
                "ivf_pq",
                params,
                (
                    f"{size}: {why}; IVF with {params['nlist']:,} lists of 4-bit PQ codes "
                    f"scanned with SIMD, then {how} ({mib('ivf_pq', params)})"
                ),
            )
    params = {**ivf, "refine": "sq8"}
    return (
        "ivf_pq",
        params,
        (
            f"{size}: even the smallest layout ({mib('ivf_pq', params)}) exceeds the memory "
            "budget; using IVF fast-scan PQ with an 8-bit re-rank anyway"
        ),
    )
