"""The score under which simqa answers that nothing similar is known (``min_score``).

A cosine threshold only means something for the model that produced the scores, so each
index records its own in the manifest when it is built: the calibrated value below for
the packaged model, the value ``simqa tune --calibrate-on`` stored beside a fine-tuned
model, or whatever ``simqa build --min-score`` was given. ``simqa calibrate`` measures one
on labelled validation pairs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from simqa.errors import SimqaError

#: the best-accuracy cosine threshold of all-MiniLM-L6-v2 on the MEDIQA 2019 RQE
#: validation pairs (302 pairs, accuracy 0.828); reproduce with ``simqa calibrate`` on
#: mediqa2019/MEDIQA_Task2_RQE/MEDIQA2019-Task2-RQE-ValidationSet-AMIA2016.xml
CALIBRATED = {"all-MiniLM-L6-v2": 0.43}

#: passing this (or anything lower) keeps every hit
KEEP_ALL = -1.0


def default_min_score(model_name: str) -> float | None:
    """The calibrated threshold known for a model, or None when there is none."""
    if model_name in CALIBRATED:
        return CALIBRATED[model_name]
    record = Path(model_name) / "simqa_training.json"
    if record.is_file():
        try:
            value = json.loads(record.read_text(encoding="utf-8")).get("min_score")
        except (OSError, ValueError):
            return None
        return float(value) if isinstance(value, int | float) else None
    return None


def calibrate(
    pairs_path: str | Path, model: str | None = None, precision: float = 0.9
) -> dict[str, Any]:
    """Cosine thresholds from labelled pairs (a validation set, never an evaluated one).

    ``min_score`` (the threshold that classifies the pairs best) is what an index uses;
    ``precision_threshold`` is the lowest cosine at which at least ``precision`` of the
    pairs scoring above it are labelled similar (None if no threshold reaches it).
    """
    from simqa.evaluate import metrics
    from simqa.evaluate.embedcache import EmbeddingCache
    from simqa.evaluate.pairs import read_pairs

    pairset = read_pairs(pairs_path)
    kept = [p for p in pairset.pairs if p.left != p.right]
    labels = np.asarray([p.label for p in kept], dtype=bool)
    if labels.all() or not labels.any():
        raise SimqaError(f"{pairs_path}: calibrating needs both similar and different pairs")
    cache = EmbeddingCache()
    left = cache.encode(model, [p.left for p in kept])
    right = cache.encode(model, [p.right for p in kept])
    scores = np.einsum("ij,ij->i", left, right).astype(np.float64)
    threshold, accuracy = metrics.tune_threshold(scores, labels)
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(labels[order])
    shown = np.arange(1, len(order) + 1)
    reach = np.flatnonzero(hits / shown >= precision)
    # the largest prefix (lowest threshold) that still keeps the precision
    at = int(reach[-1]) if reach.size else -1
    return {
        "pairs": str(pairs_path),
        "sha256": pairset.checksum,
        "model": cache.model_name(model),
        "n_pairs": len(kept),
        "similar": int(labels.sum()),
        "min_score": round(threshold, 4),
        "accuracy": round(accuracy, 4),
        "precision": precision,
        "precision_threshold": round(float(scores[order][at]), 4) if at >= 0 else None,
        "recall_at_precision": round(float(hits[at] / labels.sum()), 4) if at >= 0 else None,
    }


def accuracy_at(pairs_path: str | Path, threshold: float, model: str | None = None) -> float:
    """Accuracy of ``cosine >= threshold`` on other labelled pairs (how a threshold transfers)."""
    from simqa.evaluate import metrics
    from simqa.evaluate.embedcache import EmbeddingCache
    from simqa.evaluate.pairs import read_pairs

    kept = [p for p in read_pairs(pairs_path).pairs if p.left != p.right]
    cache = EmbeddingCache()
    scores = np.einsum(
        "ij,ij->i",
        cache.encode(model, [p.left for p in kept]),
        cache.encode(model, [p.right for p in kept]),
    )
    return metrics.accuracy(scores, np.asarray([p.label for p in kept]), threshold)
