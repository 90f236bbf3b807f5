"""Inverted lists of 4-bit PQ codes scanned with SIMD (fast-scan), then an exact re-rank.

For millions of vectors, or little memory: a query visits ``nprobe`` of ``nlist`` lists,
scores their compact PQ codes with in-register lookup tables, and re-scores the best
``k * k_factor`` candidates with stored vectors (``refine``: ``flat`` float32 for exact
scores, ``sq8`` for a quarter of the memory). Removals are tombstones.
"""

from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np

from simqa.errors import SimqaError
from simqa.vectors.tombstones import TombstoneIndex

NPROBE_GRID = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096)
K_FACTOR_GRID = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)
#: faiss wants ~39 training points per centroid; fewer gives poor lists
POINTS_PER_LIST = 39
#: cap the k-means training sample: more barely improves the centroids
MAX_TRAIN = 200_000
REFINES = ("flat", "fp16", "sq8")
#: k-means rounds for the lists: the re-rank absorbs the small loss against faiss's 25
KMEANS_ITERATIONS = 10


def default_nlist(n: int) -> int:
    """About 4*sqrt(n) lists, and never fewer than 39 training points per list."""
    return max(1, min(int(4 * math.sqrt(max(n, 1))), max(n // POINTS_PER_LIST, 1)))


class IVFPQIndex(TombstoneIndex):
    """faiss ``IndexIVFPQFastScan`` inside ``IndexRefine``; trained on the first batch added."""

    kind = "ivf_pq"

    def __init__(
        self,
        dim: int,
        nlist: int | None = None,
        pq_m: int | None = None,
        refine: str = "flat",
        nprobe: int = 16,
        k_factor: int = 4,
        seed: int = 0,
    ) -> None:
        if refine not in REFINES:
            raise SimqaError(f"unknown refine {refine!r}; choose one of {', '.join(REFINES)}")
        self.nlist = nlist
        # two dimensions per 4-bit sub-quantizer: dim/2 nibbles per vector
        self.pq_m = int(pq_m) if pq_m else (dim // 2 if dim % 2 == 0 else dim)
        if dim % self.pq_m:
            raise SimqaError(f"pq_m={self.pq_m} must divide the dimension {dim}")
        self.refine = refine
        self.nprobe = int(nprobe)
        self.k_factor = int(k_factor)
        self.seed = int(seed)
        super().__init__(dim)

    def _new_index(self) -> faiss.Index:
        if self.nlist is None:  # decided at the first add, from its size
            return _Untrained()
        quantizer = faiss.IndexFlatIP(self.dim)
        base = faiss.IndexIVFPQFastScan(
            quantizer, self.dim, int(self.nlist), self.pq_m, 4, faiss.METRIC_INNER_PRODUCT
        )
        base.own_fields = True
        quantizer.this.disown()
        base.cp.seed = self.seed
        base.cp.niter = KMEANS_ITERATIONS
        if self.refine == "flat":
            refine = faiss.IndexFlatIP(self.dim)
        else:
            qtype = {"fp16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}
            refine = faiss.IndexScalarQuantizer(
                self.dim, qtype[self.refine], faiss.METRIC_INNER_PRODUCT
            )
        index = faiss.IndexRefine(base, refine)
        index.own_fields = True
        index.own_refine_index = True
        base.this.disown()
        refine.this.disown()
        return index

    def _train(self, vectors: np.ndarray) -> None:
        n = len(vectors)
        if n < 16 * 2:
            raise SimqaError(
                f"an ivf_pq index needs at least 32 vectors to train, got {n}; use flat"
            )
        if self.nlist is None:
            self.nlist = default_nlist(n)
            self.index = self._new_index()
        sample = vectors
        limit = max(self.nlist * POINTS_PER_LIST, 16 * 256)
        limit = min(limit, MAX_TRAIN)
        if n > limit:
            rng = np.random.default_rng(self.seed)
            sample = vectors[np.sort(rng.choice(n, limit, replace=False))]
        self.index.train(np.ascontiguousarray(sample))

    def build_params(self) -> dict[str, Any]:
        return {"nlist": self.nlist, "pq_m": self.pq_m, "refine": self.refine, "seed": self.seed}

    def search_params(self) -> dict[str, Any]:
        return {"nprobe": self.nprobe, "k_factor": self.k_factor}

    def set_search_params(self, **params: Any) -> None:
        unknown = set(params) - {"nprobe", "k_factor"}
        if unknown:
            raise ValueError(f"{self.kind} index has no search parameters {sorted(unknown)}")
        if "nprobe" in params:
            self.nprobe = int(params["nprobe"])
        if "k_factor" in params:
            self.k_factor = int(params["k_factor"])
        self._reset_params()

    def search_grid(self, k: int) -> list[dict[str, Any]]:
        """All (nprobe, k_factor) pairs ordered by a cost model of one query.

        Scanning a fast-scan code costs ~3 ns; re-ranking one candidate means a random
        read of its stored vector and a dot product, ~50 ns + 0.3 ns per dimension.
        """
        nlist = self.nlist or default_nlist(max(self.n_stored, 1))
        per_list = max(self.n_stored, 1) / nlist
        grid = []
        for nprobe in NPROBE_GRID:
            if nprobe > nlist:
                break
            for k_factor in K_FACTOR_GRID:
                cost = nprobe * per_list * 3 + k * k_factor * (50 + 0.3 * self.dim)
                grid.append((cost, {"nprobe": nprobe, "k_factor": k_factor}))
        if nlist not in {p["nprobe"] for _, p in grid}:
            for k_factor in K_FACTOR_GRID:
                cost = nlist * per_list * 3 + k * k_factor * (50 + 0.3 * self.dim)
                grid.append((cost, {"nprobe": nlist, "k_factor": k_factor}))
        grid.sort(key=lambda item: item[0])
        return [params for _, params in grid]

    def _search_parameters(
        self, selector: faiss.IDSelector | None, k: int, widen: float = 1.0
    ) -> Any:
        base = faiss.SearchParametersIVF()
        base.nprobe = min(int(self.nlist or 1), math.ceil(self.nprobe * widen))
        if selector is not None:
            base.sel = selector
        params = faiss.IndexRefineSearchParameters()
        params.k_factor = float(self.k_factor)
        params.base_index_params = base
        params.refs = (base, selector)  # keep the Python objects alive with the C++ pointers
        return params

    @classmethod
    def load(cls, directory, config, mmap=True):  # type: ignore[override]
        obj = super().load(directory, config, mmap)
        if obj.nlist is None:  # saved before anything was added: nothing trained yet
            obj.index, obj.mapped = obj._new_index(), False
        return obj


class _Untrained(faiss.IndexFlatIP):
    """Stand-in before the first add fixes nlist: reports itself untrained."""

    def __init__(self) -> None:
        super().__init__(1)
        self.is_trained = False
