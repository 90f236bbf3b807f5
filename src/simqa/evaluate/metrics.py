"""Every evaluation number simqa reports, computed in one place under stable keys.

Keys (all in [0, 1], higher is better):

- ``recall@k``: fraction of queries with at least one positive among the first k results
  (the "is a right answer in the box" view; a query with two positives counts once).
- ``mrr``: mean of 1 / rank of the first positive; a query whose positives all rank
  below ``depth`` (100 in ``run``) contributes 0.
- ``ndcg@k``: binary-relevance nDCG over the first k results, ideal = all positives first.
- ``pos_above_neg``: over every (query, positive, hard negative) triple, the fraction where
  the positive scores strictly above the negative (ties count as failures).
- ``accuracy``: pair-classification accuracy of ``score >= threshold``, the threshold
  tuned on other labelled pairs with ``tune_threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def first_positive_ranks(ranked: np.ndarray, relevant: Sequence[Sequence[int]]) -> np.ndarray:
    """1-based rank of each query's first positive in its ranked list; 0 if none is there."""
    ranks = np.zeros(len(relevant), dtype=np.int64)
    for row, positives in enumerate(relevant):
        hits = np.flatnonzero(np.isin(ranked[row], np.asarray(positives, dtype=np.int64)))
        if hits.size:
            ranks[row] = hits[0] + 1
    return ranks


def ranking_metrics(
    ranked: np.ndarray,
    relevant: Sequence[Sequence[int]],
    ks: Sequence[int] = (1, 5, 10),
    ndcg_k: int = 10,
) -> dict[str, float]:
    """recall@k for each k, mrr and ndcg@ndcg_k from ranked pool indices (-1 = empty slot).

    ``ranked`` has one row per query, best first; ``relevant`` gives each query's
    positive pool indices.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    if ranked.ndim != 2 or len(ranked) != len(relevant):
        raise ValueError("ranked must have one row per query")
    if not len(relevant):
        raise ValueError("no queries to score")
    first = first_positive_ranks(ranked, relevant)
    out = {f"recall@{k}": float(np.mean((first > 0) & (first <= k))) for k in ks}
    out["mrr"] = float(np.mean(np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)))
    discounts = 1.0 / np.log2(np.arange(2, ndcg_k + 2))
    ndcg = np.zeros(len(relevant))
    for row, positives in enumerate(relevant):
        gains = np.isin(ranked[row, :ndcg_k], np.asarray(positives, dtype=np.int64))
        ideal = discounts[: min(len(set(positives)), ndcg_k)].sum()
        ndcg[row] = (gains * discounts[: gains.size]).sum() / ideal if ideal else 0.0
    out[f"ndcg@{ndcg_k}"] = float(ndcg.mean())
    return out


def pos_above_neg(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """Fraction of (positive, negative) score pairs where the positive is strictly higher."""
    positive_scores = np.asarray(positive_scores, dtype=np.float64)
    negative_scores = np.asarray(negative_scores, dtype=np.float64)
    if positive_scores.shape != negative_scores.shape or not positive_scores.size:
        raise ValueError("need as many positive as negative scores, at least one")
    return float(np.mean(positive_scores > negative_scores))


def accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Fraction of pairs where ``score >= threshold`` agrees with the 1/0 label."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape or not scores.size:
        raise ValueError("need one label per score, at least one")
    return float(np.mean((scores >= threshold) == labels))


def tune_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold maximising pair accuracy on these pairs, and that accuracy.

    Candidates are midpoints between consecutive distinct scores (plus one above and one
    below all), so the chosen threshold separates the tuning pairs as well as any can.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape or not scores.size:
        raise ValueError("need one label per score, at least one")
    if labels.all() or not labels.any():
        raise ValueError("tuning a threshold needs both positive and negative pairs")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    # predicting the top i pairs positive: correct = positives among them + negatives after
    tp = np.concatenate([[0], np.cumsum(y)])
    fp = np.concatenate([[0], np.cumsum(~y)])
    correct = tp + (fp[-1] - fp)
    # only cut between distinct scores: i = 0, n, or where s[i-1] > s[i]
    allowed = np.ones(len(s) + 1, dtype=bool)
    allowed[1:-1] = s[:-1] > s[1:]
    best = int(np.argmax(np.where(allowed, correct, -1)))
    if best == 0:
        threshold = s[0] + 1.0
    elif best == len(s):
        threshold = s[-1] - 1.0
    else:
        threshold = (s[best - 1] + s[best]) / 2.0
    return float(threshold), float(correct[best] / len(s))
