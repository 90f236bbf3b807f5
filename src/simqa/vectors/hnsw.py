"""Graph search (faiss HNSW) for corpora too large for exact search.

``hnsw`` keeps float32 vectors; ``hnsw_sq8`` stores them as 8-bit scalar codes (a
quarter of the memory, and less memory traffic per visited node) at a small cost in
accuracy. Both use the inner-product metric on unit vectors, so scores are cosines.
HNSW cannot delete nodes: removals are tombstones (see ``tombstones.py``).
"""

from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np

from simqa.vectors.tombstones import TombstoneIndex

#: efSearch values the tuner tries, smallest (fastest) first
EF_GRID = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096)


class HNSWIndex(TombstoneIndex):
    """faiss ``IndexHNSWFlat``: M links per node, efConstruction at build, efSearch at query."""

    kind = "hnsw"

    def __init__(self, dim: int, M: int = 32, efConstruction: int = 80, efSearch: int = 64) -> None:
        self.M = int(M)
        self.efConstruction = int(efConstruction)
        self.efSearch = int(efSearch)
        super().__init__(dim)

    def _new_index(self) -> faiss.Index:
        index = faiss.IndexHNSWFlat(self.dim, self.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.efConstruction
        return index

    def build_params(self) -> dict[str, Any]:
        return {"M": self.M, "efConstruction": self.efConstruction}

    def search_params(self) -> dict[str, Any]:
        return {"efSearch": self.efSearch}

    def set_search_params(self, **params: Any) -> None:
        unknown = set(params) - {"efSearch"}
        if unknown:
            raise ValueError(f"{self.kind} index has no search parameters {sorted(unknown)}")
        if "efSearch" in params:
            self.efSearch = int(params["efSearch"])
            self._reset_params()

    def search_grid(self, k: int) -> list[dict[str, Any]]:
        return [{"efSearch": ef} for ef in EF_GRID if ef >= k] or [{"efSearch": k}]

    def _search_parameters(
        self, selector: faiss.IDSelector | None, k: int, widen: float = 1.0
    ) -> Any:
        params = faiss.SearchParametersHNSW()
        # HNSW returns at most efSearch neighbours: never ask for fewer than k
        params.efSearch = max(k, math.ceil(self.efSearch * widen))
        if selector is not None:
            params.sel = selector
        params.selector_ref = selector  # the Python object must outlive the C++ pointer
        return params


class HNSWSQ8Index(HNSWIndex):
    """faiss ``IndexHNSWSQ`` with 8-bit codes: ~dim bytes per vector instead of 4*dim."""

    kind = "hnsw_sq8"
    #: widen the trained per-dimension range so vectors added later are rarely clipped
    RANGE_MARGIN = 0.05

    def _new_index(self) -> faiss.Index:
        index = faiss.IndexHNSWSQ(
            self.dim, faiss.ScalarQuantizer.QT_8bit, self.M, faiss.METRIC_INNER_PRODUCT
        )
        index.hnsw.efConstruction = self.efConstruction
        storage = faiss.downcast_index(index.storage)
        storage.sq.rangestat = faiss.ScalarQuantizer.RS_minmax
        storage.sq.rangestat_arg = self.RANGE_MARGIN
        return index

    def _train(self, vectors: np.ndarray) -> None:
        self.index.train(vectors)
