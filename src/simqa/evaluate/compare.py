"""Run every method on the same queries and pool, and report the same metrics for each.

Protocol: the pool is every distinct question of the set (queries, positives and
negatives), plus an index's questions with ``distractors``; each query's own text is
removed from its results; positives identical to their query are dropped (they would be
removed with it). A threshold for ``accuracy`` is tuned on a different file only.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import simqa.evaluate.levers  # noqa: F401  (registers rerank, truncate, hybrid-score)
import simqa.evaluate.metrics as metrics
from simqa.encode.models import trained_on
from simqa.errors import SimqaError
from simqa.evaluate.embedcache import EmbeddingCache
from simqa.evaluate.methods import DEFAULT_METHODS, Method, MethodContext, Pool, similarity
from simqa.evaluate.pairs import PairSet, read_pairs, same_file

#: how deep each method's list is read; the first positive below it adds 0 to mrr
MRR_DEPTH = 100

#: labelled sets that chose simqa's defaults: figures on them are not held-out results
CHOSE_SETTINGS = {
    "MEDIQA2019-Task2-RQE-ValidationSet-AMIA2016.xml": (
        "chose the hub penalty weight (0.5), the default min-score (0.36) and the "
        "fine-tuning pair count"
    ),
}


@dataclass
class Prepared:
    """The evaluated queries as pool indices."""

    texts: list[str]
    self_index: np.ndarray  # pool index of each query's own text, -1 if absent
    relevant: list[list[int]]
    triple_query: list[str]  # (query, positive, negative) triples, flattened
    triple_pos: np.ndarray
    triple_neg: np.ndarray
    dropped: int  # queries with no positive left


def prepare(pairset: PairSet, position: dict[str, int]) -> Prepared:
    texts, selves, relevant = [], [], []
    tq: list[str] = []
    tp: list[int] = []
    tn: list[int] = []
    dropped = 0
    for query in pairset.queries:
        positives = [position[p] for p in query.positives if p != query.text]
        if not positives:
            dropped += 1
            continue
        negatives = [position[n] for n in query.negatives if n != query.text]
        texts.append(query.text)
        selves.append(position.get(query.text, -1))
        relevant.append(positives)
        for p in positives:
            for n in negatives:
                tq.append(query.text)
                tp.append(p)
                tn.append(n)
    if not texts:
        raise SimqaError(f"{pairset.name}: no query has a positive to find")
    return Prepared(
        texts,
        np.asarray(selves, dtype=np.int64),
        relevant,
        tq,
        np.asarray(tp, dtype=np.int64),
        np.asarray(tn, dtype=np.int64),
        dropped,
    )


def drop_self(ids: np.ndarray, selves: np.ndarray, depth: int) -> np.ndarray:
    """Remove each row's own index, keeping order, and cut rows to ``depth``."""
    excluded = (ids == selves[:, None]) | (ids < 0)
    order = np.argsort(excluded, axis=1, kind="stable")
    kept = np.take_along_axis(ids, order, axis=1)
    kept = np.where(np.take_along_axis(excluded, order, axis=1), -1, kept)
    if kept.shape[1] < depth:
        kept = np.pad(kept, ((0, 0), (0, depth - kept.shape[1])), constant_values=-1)
    return kept[:, :depth]


def _pair_columns(
    pairset: PairSet, position: dict[str, int]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    kept = [p for p in pairset.pairs if p.left != p.right]
    return (
        [p.left for p in kept],
        np.asarray([position[p.right] for p in kept], dtype=np.int64),
        np.asarray([p.label for p in kept], dtype=bool),
    )


def evaluate(
    pairs_path: str | Path,
    *,
    model: str | None = None,
    methods: Sequence[str] | None = None,
    distractors: str | Path | None = None,
    tune_on: str | Path | None = None,
    k: int = 10,
    format: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    cache: EmbeddingCache | None = None,
) -> list[dict[str, Any]]:
    """Evaluate each method on the pairs file; one result dict per method (keys in metrics).

    ``limit`` evaluates a seeded sample of that many queries (the pool shrinks with it);
    ``tune_on`` names a labelled pairs file, never the evaluated one, on which the cosine
    threshold for ``accuracy`` is tuned. Pass one ``cache`` to several calls to embed each
    text once across them.
    """
    say = log or (lambda _msg: None)
    if not isinstance(k, int) or not 1 <= k <= MRR_DEPTH:
        raise SimqaError(f"k must be between 1 and {MRR_DEPTH}, got {k}")
    if tune_on is not None and same_file(tune_on, pairs_path):
        raise SimqaError(
            f"refusing to tune on {tune_on}: it is the evaluated file {pairs_path}; "
            "tune on a separate validation set"
        )
    pairset = read_pairs(pairs_path, format)
    if limit is not None:
        if limit < 1:
            raise SimqaError(f"limit must be at least 1, got {limit}")
        pairset = pairset.subset(limit, seed)
    validation = read_pairs(tune_on) if tune_on is not None else None
    if validation is not None and not ({p.label for p in validation.pairs} >= {0, 1}):
        raise SimqaError(f"{tune_on}: tuning a threshold needs both similar and different pairs")
    np.random.seed(seed)

    context = MethodContext(model, cache or EmbeddingCache())
    context.cache.bulk = []
    seconds_before = dict(context.cache.seconds)
    chosen = [context.get(spec) for spec in methods or DEFAULT_METHODS]  # bad specs fail now
    texts = list(pairset.candidates)
    files = {str(pairs_path): pairset.checksum}
    extra: dict[str, Any] = {}
    if distractors is not None:
        from simqa.evaluate.distractors import load_distractors

        found = load_distractors(distractors, context.cache)
        own = set(texts)
        added = [t for t in found.texts if t not in own]
        texts += added
        context.cache.bulk = added
        extra["distractors"] = {
            "index": found.index,
            "model": found.model,
            "questions": len(added),
            "sha256": found.checksum,
        }
        say(f"added {len(added):,} distractor questions from {found.index}")
    if validation is not None:
        files[str(tune_on)] = validation.checksum
    pool = Pool(texts)
    position = {t: i for i, t in enumerate(texts)}
    prepared = prepare(pairset, position)
    eval_left, eval_cols, eval_labels = _pair_columns(pairset, position)
    depth = max(MRR_DEPTH, k)
    ks = sorted({1, 5, 10, k})

    results = []
    if prepared.dropped:
        say(f"{prepared.dropped} queries have no positive to find and are left out")
    for method in chosen:
        refuse_trained_on(method, pairset.checksum, pairs_path)
        say(f"{method.name}: ranking {len(prepared.texts):,} queries in a pool of {len(pool):,}")
        started = time.perf_counter()
        ids, _scores = method.rank(prepared.texts, pool, depth + 1)
        ranked = drop_self(np.asarray(ids, dtype=np.int64), prepared.self_index, depth)
        row: dict[str, Any] = {
            "method": method.name,
            "queries": len(prepared.texts),
            "pool": len(pool),
        }
        row.update(metrics.ranking_metrics(ranked, prepared.relevant, ks=ks, ndcg_k=10))
        if k != 10:
            row.update(metrics.ranking_metrics(ranked, prepared.relevant, ks=[k], ndcg_k=k))
        if len(prepared.triple_query):
            pos = method.score(prepared.triple_query, pool, prepared.triple_pos)
            neg = method.score(prepared.triple_query, pool, prepared.triple_neg)
            row["pos_above_neg"] = metrics.pos_above_neg(pos, neg)
        if validation is not None and method.absolute_scores and len(eval_left):
            row.update(_accuracy(method, validation, eval_left, eval_cols, eval_labels, pool))
        row.update(
            {
                "model": method.model,
                "seconds": round(time.perf_counter() - started, 3),
                "seed": seed,
                "pairs": pairset.name,
                "format": pairset.format,
                "encoder": getattr(method, "encoder", None),
                "skipped_queries": prepared.dropped,
                "files": files,
                **extra,
            }
        )
        results.append(row)
    embed_seconds = {
        m: round(s - seconds_before.get(m, 0.0), 3) for m, s in context.cache.seconds.items()
    }
    chose = CHOSE_SETTINGS.get(Path(pairs_path).name)
    for method, row in zip(chosen, results, strict=True):
        encoder = getattr(method, "encoder", None)
        label = context.cache.label(method.model, encoder) if method.model and encoder else None
        row["embed_seconds"] = embed_seconds.get(label, 0.0) if label else 0.0
        row["machine"] = f"{platform.machine()} x{os.cpu_count()}"
        if chose:
            row["chose_settings"] = chose
    return results


def _accuracy(
    method: Method,
    validation: PairSet,
    left: list[str],
    cols: np.ndarray,
    labels: np.ndarray,
    pool: Pool,
) -> dict[str, float]:
    """Tune the score threshold on the validation pairs, then classify the evaluated pairs."""
    val_pool = Pool(list(validation.candidates))
    val_left, val_cols, val_labels = _pair_columns(
        validation, {t: i for i, t in enumerate(val_pool.texts)}
    )
    threshold, tuned = metrics.tune_threshold(
        similarity(method, val_left, val_pool, val_cols), val_labels
    )
    return {
        "accuracy": metrics.accuracy(similarity(method, left, pool, cols), labels, threshold),
        "threshold": round(threshold, 4),
        "tune_accuracy": tuned,
    }


def refuse_trained_on(method: Any, checksum: str, evaluated: str | Path) -> None:
    """Raise if a method's model (or reranker) was trained on the file being evaluated."""
    models = [getattr(method, "model", None), *getattr(method, "trained_models", ())]
    for model in models:
        for file, sha in trained_on(model).items():
            if sha == checksum:
                raise SimqaError(
                    f"refusing to evaluate {model} on {evaluated}: it was trained on that "
                    f"file ({file}); evaluate on held-out data"
                )
