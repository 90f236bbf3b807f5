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
#: above this, HNSW build time and memory grow past IVF fast-scan's
HNSW_MAX = 2_000_000
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
    hnsw = {"M": HNSW_M, "efConstruction": 80}
    ivf = {"nlist": default_nlist(n_vectors), "refine": "flat"}
    why_not_flat = "too many for exact search"
    if n_vectors <= FLAT_MAX:
        why_not_flat = "exact search exceeds the memory budget"
    if n_vectors <= HNSW_MAX:
        if fits("hnsw", hnsw):
            why = f"{size}: {why_not_flat}; HNSW graph over float32 ({mib('hnsw', hnsw)})"
            return "hnsw", hnsw, why
        if fits("hnsw_sq8", hnsw):
            return (
                "hnsw_sq8",
                hnsw,
                (
                    f"{size}: {why_not_flat} and float32 HNSW exceeds the memory budget; "
                    f"HNSW over 8-bit codes ({mib('hnsw_sq8', hnsw)})"
                ),
            )
    for refine in ("flat", "fp16", "sq8"):
        params = {**ivf, "refine": refine}
        if fits("ivf_pq", params):
            where = "millions of vectors" if n_vectors > HNSW_MAX else "a tight memory budget"
            return (
                "ivf_pq",
                params,
                (
                    f"{size}: {where}; IVF with {params['nlist']:,} lists of 4-bit PQ codes "
                    f"(fast-scan) and a {refine} re-rank ({mib('ivf_pq', params)})"
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
