"""Pick the cheapest search parameters that reach a recall target on this corpus.

Approximate indexes trade recall for speed through query-time knobs (efSearch, nprobe,
k_factor), and the right setting depends on the data. ``tune`` samples the corpus's
own vectors as queries, computes their exact top-k, and walks the backend's candidate
settings cheapest first until one reaches the target on one half of the sample; the
other half, never used for choosing, reports the recall to expect on new queries.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from simqa.vectors.base import VectorIndex

#: scores within this of the k-th exact score count as hits (ties, float rounding)
TIE_EPS = 1e-5


def recall_at_k(
    queries: np.ndarray,
    found_ids: np.ndarray,
    kth_score: np.ndarray,
    vectors: np.ndarray,
    ids: np.ndarray,
    k: int,
) -> np.ndarray:
    """Per-query recall@k that counts any id scoring as well as the exact k-th as a hit.

    Comparing id sets would punish an index for picking the other one of two equal
    vectors (the corpus has duplicate questions), so hits are judged by exact score.
    """
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    found_ids = found_ids[:, :k]
    pos = np.searchsorted(sorted_ids, found_ids)
    pos = np.clip(pos, 0, len(ids) - 1)
    valid = (found_ids >= 0) & (sorted_ids[pos] == found_ids)
    rows = order[pos]
    exact = np.einsum("qd,qkd->qk", queries, vectors[rows])
    hits = valid & (exact >= kth_score[:, None] - TIE_EPS)
    return hits.sum(axis=1) / k


def exact_topk(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k (scores, row numbers) by brute force."""
    return faiss.knn(queries, vectors, k, faiss.METRIC_INNER_PRODUCT)


def tune_search_params(
    index: VectorIndex,
    vectors: np.ndarray,
    ids: np.ndarray,
    target: float = 0.95,
    k: int = 10,
    sample: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Set ``index`` to the cheapest search parameters with recall@k >= target; report.

    ``vectors``/``ids`` are the index's live contents. Returns ``{"params", "recall",
    "heldout_recall", "target", "sample", "k", "reached"}``: recall is measured on the
    half of the sample used to choose, heldout_recall on the other half. A setting is
    accepted only when its recall minus one standard error still meets the target, so
    the held-out half usually meets it too. If no setting reaches the target the most
    accurate one is kept and ``reached`` is False.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    n = len(vectors)
    k = max(1, min(k, n - 1))
    m = min(sample, n)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(n, m, replace=False) if n else np.zeros(0, dtype=np.int64)
    half = (m + 1) // 2
    parts = {"tune": chosen[:half], "held": chosen[half:]}
    report: dict[str, Any] = {"target": target, "sample": int(m), "k": k}
    grid = index.search_grid(k)
    if not grid or n < 2:
        return {**report, "params": {}, "recall": 1.0, "heldout_recall": 1.0, "reached": True}

    # Leave each query out of its own answer: a real query is not in the corpus, and
    # finding yourself is the easy part of a graph search (it made tuning optimistic).
    kth = {}
    for name, rows in parts.items():
        if len(rows):
            scores, found = exact_topk(vectors[rows], vectors, k + 1)
            self_in_top = (found[:, :k] == rows[:, None]).any(axis=1)
            kth[name] = np.where(self_in_top, scores[:, k], scores[:, k - 1])

    def measure(name: str) -> np.ndarray:
        rows = parts[name]
        if len(rows) == 0:
            return np.ones(0)
        queries = vectors[rows]
        _, found = index.search(queries, k + 1)
        found = np.where(found == ids[rows][:, None], -2, found)  # drop the query itself
        found = np.take_along_axis(found, np.argsort(found == -2, axis=1, kind="stable"), axis=1)
        return recall_at_k(queries, found[:, :k], kth[name], vectors, ids, k)

    failed: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any]] = (-1.0, grid[-1])
    for params in grid:
        if any(all(params[key] <= f[key] for key in params) for f in failed):
            continue  # a setting at least as generous on every knob already missed
        index.set_search_params(**params)
        per_query = measure("tune")
        recall = float(per_query.mean())
        stderr = float(per_query.std(ddof=1) / np.sqrt(len(per_query))) if len(per_query) > 1 else 0
        if recall > best[0]:
            best = (recall, params)
        if recall - stderr >= target:
            held = measure("held")
            return {
                **report,
                "params": params,
                "recall": recall,
                "heldout_recall": float(held.mean()) if len(held) else recall,
                "reached": True,
            }
        failed.append(params)
    index.set_search_params(**best[1])
    held = measure("held")
    return {
        **report,
        "params": best[1],
        "recall": best[0],
        "heldout_recall": float(held.mean()) if len(held) else best[0],
        "reached": False,
    }
