"""Measure the min-score threshold of a model on labelled validation pairs.

``simqa calibrate`` and ``simqa tune --calibrate-on`` use it; the engine only reads the
result (``simqa.encode.threshold``), so it never depends on the evaluation code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

import simqa.evaluate.metrics as metrics
from simqa.encode.models import resolve_model
from simqa.encode.threshold import KEEP_SIMILAR
from simqa.errors import SimqaError
from simqa.evaluate.embedcache import EmbeddingCache
from simqa.evaluate.pairs import read_pairs


def calibrate(
    pairs_path: str | Path, model: str | None = None, keep: float = KEEP_SIMILAR
) -> dict[str, Any]:
    """The min-score threshold from labelled pairs (a validation set, never an evaluated one).

    ``min_score`` is the highest cosine (to 0.01, rounded down) that still keeps ``keep`` of
    the similar pairs: saying "nothing similar" should almost never hide a real match, so
    the threshold is set by the similar pairs, not by the best accuracy, which is reported
    beside it (``accuracy_threshold``) with the accuracy at each.
    """
    if not 0 < keep < 1:
        raise SimqaError(f"keep must be between 0 and 1, got {keep}")
    pairset, scores, labels = pair_cosines(pairs_path, model)
    if labels.all() or not labels.any():
        raise SimqaError(f"{pairs_path}: calibrating needs both similar and different pairs")
    similar = np.sort(scores[labels])
    # the share of similar pairs at or above the threshold is at least ``keep``
    threshold = math.floor(similar[math.floor((1 - keep) * len(similar))] * 100) / 100
    best, best_accuracy = metrics.tune_threshold(scores, labels)
    return {
        "pairs": str(pairs_path),
        "sha256": pairset.checksum,
        "model": resolve_model(model)[0],
        "n_pairs": len(labels),
        "similar": int(labels.sum()),
        "min_score": threshold,
        "keeps_similar": round(float((similar >= threshold).mean()), 4),
        "keeps_different": round(float((scores[~labels] >= threshold).mean()), 4),
        "accuracy": round(metrics.accuracy(scores, labels, threshold), 4),
        "accuracy_threshold": round(best, 4),
        "best_accuracy": round(best_accuracy, 4),
    }


def accuracy_at(pairs_path: str | Path, threshold: float, model: str | None = None) -> float:
    """Accuracy of ``cosine >= threshold`` on other labelled pairs (how a threshold transfers)."""
    _pairset, scores, labels = pair_cosines(pairs_path, model)
    return metrics.accuracy(scores, labels, threshold)


def pair_cosines(pairs_path: str | Path, model: str | None) -> tuple[Any, np.ndarray, np.ndarray]:
    """(pair set, cosine of each pair whose two texts differ, its label as bool)."""
    pairset = read_pairs(pairs_path)
    kept = [p for p in pairset.pairs if p.left != p.right]
    cache = EmbeddingCache()
    left = cache.encode(model, [p.left for p in kept])
    right = cache.encode(model, [p.right for p in kept])
    scores = np.einsum("ij,ij->i", left, right).astype(np.float64)
    return pairset, scores, np.asarray([p.label for p in kept], dtype=bool)
