"""The vector side of a Milvus collection, behind simqa's ``VectorIndex`` interface.

Implementing the same interface as the embedded faiss backends lets ``simqa build`` tune
a Milvus index with the very code that tunes faiss (``vectors.tuning``): the cheapest
search setting whose recall@10 against exact search reaches the target on the corpus's
own vectors, with a held-out half reporting what to expect.

Index types: FLAT (exact; what Milvus Lite always uses) for small corpora, IVF_FLAT for
larger ones: its lists hold the float32 vectors, so probing every list is exact search,
which is how a narrow filter finishes exactly; HNSW and IVF_SQ8 on request.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from simqa.errors import SimqaError
from simqa.milvus.client import Connection
from simqa.vectors.base import VectorIndex
from simqa.vectors.factory import FLAT_MAX
from simqa.vectors.ivf import default_nlist

#: Milvus's limit on top-k (and on the HNSW ef it accepts)
MAX_TOPK = 16_384
TYPES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW")
_GRIDS = {
    "IVF_FLAT": ("nprobe", (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024)),
    "IVF_SQ8": ("nprobe", (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024)),
    "HNSW": ("ef", (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)),
}


def choose(n: int, lite: bool, index_type: str | None) -> tuple[str, dict[str, Any], str]:
    """The Milvus index type for ``n`` vectors, its build parameters, and why."""
    if index_type is not None:
        kind = index_type.upper()
        if kind not in TYPES:
            raise SimqaError(
                f"unknown Milvus index type {index_type!r}; choose one of {', '.join(TYPES)}"
            )
        if lite and kind != "FLAT":
            raise SimqaError("Milvus Lite searches exactly (FLAT) only; leave out --index-type")
        return kind, _build_params(kind, n), f"chosen with --index-type {index_type}"
    if lite:
        return "FLAT", {}, "Milvus Lite: exact search (the only index type it has)"
    if n <= FLAT_MAX:
        return "FLAT", {}, f"{n:,} vectors: exact search is fast enough and needs no tuning"
    params = _build_params("IVF_FLAT", n)
    return (
        "IVF_FLAT",
        params,
        (
            f"{n:,} vectors: IVF with {params['nlist']:,} lists of float32 vectors (probing "
            "every list is exact, so narrow filters finish exactly)"
        ),
    )


def _build_params(kind: str, n: int) -> dict[str, Any]:
    if kind in ("IVF_FLAT", "IVF_SQ8"):
        return {"nlist": int(min(65_536, default_nlist(n)))}
    if kind == "HNSW":
        return {"M": 32, "efConstruction": 200}
    return {}


class MilvusVectors(VectorIndex):
    """Inner-product search in one Milvus collection (vectors addressed by ``vid``)."""

    kind = "milvus"

    def __init__(
        self,
        conn: Connection,
        collection: str,
        dim: int,
        index_type: str = "FLAT",
        build: dict[str, Any] | None = None,
        search: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(dim)
        self.conn, self.collection = conn, collection
        self.index_type = index_type
        self.build = dict(build or {})
        self.params = dict(search or {})

    def index_params(self) -> Any:
        """What ``create_index`` needs for this index type."""
        params = self.conn.client.prepare_index_params()
        params.add_index(
            field_name="vector", index_type=self.index_type, metric_type="IP", params=self.build
        )
        return params

    # --- searching ------------------------------------------------------------------------

    def request(self, k: int, widen: float = 1.0) -> dict[str, Any]:
        """Search parameters looking ``widen`` times further than the tuned setting."""
        params: dict[str, Any] = {}
        if self.index_type in ("IVF_FLAT", "IVF_SQ8"):
            nprobe = math.ceil(self.params.get("nprobe", 16) * widen)
            params["nprobe"] = int(min(self.build["nlist"], nprobe))
        elif self.index_type == "HNSW":
            params["ef"] = int(min(MAX_TOPK, max(k, math.ceil(self.params.get("ef", 64) * widen))))
        return {"metric_type": "IP", "params": params}

    def exhaustive(self, widen: float) -> bool:
        """True when a search at ``widen`` compares the query with every (kept) vector."""
        if self.index_type == "FLAT":
            return True
        if self.index_type == "IVF_FLAT":
            return self.request(1, widen)["params"]["nprobe"] >= self.build["nlist"]
        return False

    def max_widen(self) -> float:
        """The widening past which searching further changes nothing."""
        if self.index_type in ("IVF_FLAT", "IVF_SQ8"):
            return self.build["nlist"] / max(1, self.params.get("nprobe", 16))
        if self.index_type == "HNSW":
            return MAX_TOPK / max(1, self.params.get("ef", 64))
        return 1.0

    def raw(
        self,
        queries: np.ndarray,
        k: int,
        widen: float = 1.0,
        expr: str | None = None,
        output_fields: list[str] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Milvus's own hits per query: ``{"id", "distance", "entity"}`` dicts, best first."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        out: list[list[dict[str, Any]]] = []
        for start in range(0, len(queries), 1024):  # keeps each request's size bounded
            batch = queries[start : start + 1024]
            out.extend(
                self.conn.call(
                    "search",
                    self.collection,
                    data=batch.tolist(),
                    limit=min(k, MAX_TOPK),
                    filter=expr or "",
                    output_fields=output_fields or [],
                    search_params=self.request(k, widen),
                    anns_field="vector",
                )
            )
        return [list(hits) for hits in out]

    def search(
        self, queries: np.ndarray, k: int, widen: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        hits = self.raw(queries, k, widen)
        scores = np.full((len(hits), k), -np.inf, dtype=np.float32)
        ids = np.full((len(hits), k), -1, dtype=np.int64)
        for i, row in enumerate(hits):
            for j, hit in enumerate(row[:k]):
                scores[i, j], ids[i, j] = hit["distance"], hit["id"]
        return scores, ids

    # --- tuning ---------------------------------------------------------------------------

    def search_grid(self, k: int) -> list[dict[str, Any]]:
        if self.index_type not in _GRIDS:
            return []
        knob, values = _GRIDS[self.index_type]
        top = self.build.get("nlist", MAX_TOPK)
        grid = [v for v in values if v < top and v >= (k if knob == "ef" else 1)]
        return [{knob: v} for v in [*grid, top if knob == "nprobe" else values[-1]]]

    def search_params(self) -> dict[str, Any]:
        return dict(self.params)

    def set_search_params(self, **params: Any) -> None:
        self.params.update(params)

    def build_params(self) -> dict[str, Any]:
        return {"index_type": self.index_type, "build": dict(self.build)}

    # --- writes go through simqa.milvus.write (rows carry records, not only vectors) -------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        raise SimqaError("a Milvus index is written with simqa.milvus.write")

    def remove(self, ids: np.ndarray) -> int:
        raise SimqaError("a Milvus index is written with simqa.milvus.write")

    def save(self, directory: Path) -> None:
        return None  # the vectors live in Milvus; the manifest records this object's config

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], mmap: bool = True) -> VectorIndex:
        raise SimqaError("open a Milvus index with simqa.milvus.MilvusIndex.open")

    def __len__(self) -> int:
        rows = self.conn.call("query", self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])
