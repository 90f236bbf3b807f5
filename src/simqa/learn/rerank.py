"""A cross-encoder reranker: reads query and candidate together and reorders the top-k.

No cross-encoder ships offline, so ``train_reranker`` makes one from the packaged
all-MiniLM-L6-v2 weights (a fresh one-logit head on the same transformer) and trains it with
binary cross-entropy on labelled pairs: each training pair's positive (label 1), its
labelled hard negative where the data has one, and negatives mined with the bi-encoder
from the other training texts (label 0: what the first retrieval confuses is what the
reranker must tell apart). Sources and protocol checks are those of ``simqa.learn.tune``.

    >>> reranker = Reranker("indexes/models/rerank")          # doctest: +SKIP
    >>> order, scores = reranker.rerank("chest pain at night", ["...", "..."])  # doctest: +SKIP
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simqa.encode.models import TRAINING_RECORD
from simqa.errors import SimqaError
from simqa.learn.training_pairs import Log, TrainPair, collect, mine_negatives, write_pairs
from simqa.learn.tune import (
    _cleanup,
    _final_loss,
    _seed_everything,
    _train_args,
    _write_record,
    run_trainer,
)

#: what ``Index.search``-style callers rerank by default
DEFAULT_TOP_K = 20


class Reranker:
    """A trained cross-encoder; ``scores`` are logits (higher = more alike), comparable
    across queries, so ``rerank`` can also blend them with the first retrieval's scores."""

    def __init__(self, path: str | Path, batch_size: int = 32, max_length: int | None = None):
        path = Path(path).expanduser()
        if not (path / "config.json").is_file():
            raise SimqaError(f"{path} is not a reranker directory (made by simqa tune --reranker)")
        import torch
        from sentence_transformers import CrossEncoder
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        self.path = str(path.resolve())
        self.batch_size = batch_size
        self.model = CrossEncoder(
            self.path, device="cpu", max_length=max_length, activation_fn=torch.nn.Identity()
        )

    def score_pairs(self, lefts: Sequence[str], rights: Sequence[str]) -> np.ndarray:
        """Logit for each (left, right) pair."""
        if len(lefts) != len(rights):
            raise ValueError("need as many left as right texts")
        if not lefts:
            return np.zeros(0, dtype=np.float32)
        scores = self.model.predict(
            list(zip(lefts, rights, strict=True)), batch_size=self.batch_size,
            show_progress_bar=False, convert_to_numpy=True,
        )
        return np.asarray(scores, dtype=np.float32).reshape(-1)

    def rerank(
        self,
        query: str,
        texts: Sequence[str],
        first_scores: Sequence[float] | None = None,
        weight: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(order, scores): positions of ``texts`` best first, and each one's final score.

        The final score is the reranker's logit plus ``weight`` times ``first_scores`` (the
        first retrieval's cosine), so ``weight=0`` is the reranker alone.
        """
        scores = self.score_pairs([query] * len(texts), list(texts))
        if weight and first_scores is not None:
            scores = scores + weight * np.asarray(first_scores, dtype=np.float32)
        order = np.argsort(-scores, kind="stable")
        return order, scores[order]


def rerank_hits(
    reranker: Reranker, query: str, hits: Sequence[Any], weight: float = 0.0,
    fields: str = "title+question",
) -> list[Any]:
    """``Index.search`` hits in the reranker's order; each keeps its cosine ``score`` (so
    ``min_score`` still means the same), only the order changes. ``fields`` should be what
    the index embedded (its manifest's ``embed_fields``)."""
    if len(hits) < 2:
        return list(hits)
    texts = [h.record.embedding_text(fields) for h in hits]
    order, _ = reranker.rerank(query, texts, [h.score for h in hits], weight)
    return [hits[i] for i in order]


def reranker_examples(
    pairs: Sequence[TrainPair], mined: Sequence[str | None], seed: int = 0
) -> tuple[list[str], list[str], list[float]]:
    """(lefts, rights, labels): each positive, its labelled negative, its mined negative.

    Half the rows, drawn with ``seed``, are swapped round (candidate first), since a
    reranker meets either side as the query; swapping costs nothing, unlike doubling.
    """
    rng = random.Random(seed)
    rows: list[tuple[str, str, float]] = []
    for pair, hard in zip(pairs, mined, strict=True):
        rows.append((pair.anchor, pair.positive, 1.0))
        for negative in (pair.negative, hard):
            if negative is not None and negative != pair.positive:
                rows.append((pair.anchor, negative, 0.0))
    rows = [(b, a, y) if rng.random() < 0.5 else (a, b, y) for a, b, y in rows]
    rng.shuffle(rows)
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def train_reranker(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    model: str | None = None,
    evaluating: Sequence[str | Path] = (),
    epochs: float = 1.0,
    batch_size: int = 32,
    max_length: int = 256,
    learning_rate: float = 5e-5,
    warmup_ratio: float = 0.1,
    max_pairs: int | None = None,
    mine: bool = True,
    seed: int = 0,
    save_pairs: str | Path | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Train a cross-encoder from ``model``'s weights (default the packaged MiniLM).

    Returns the training record also written to ``out/simqa_training.json``.
    """
    say = log or (lambda _m: None)
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()) and not (out / TRAINING_RECORD).exists():
        raise SimqaError(f"{out} exists and is not a model made by simqa tune; choose another")
    pairs, files, counts = collect(sources, evaluating, log)
    random.Random(seed).shuffle(pairs)
    if max_pairs is not None:
        pairs = pairs[: max(2, max_pairs)]
    started = time.perf_counter()
    _seed_everything(seed)
    mined: list[str | None] = [None] * len(pairs)
    if mine:
        mined = mine_negatives(pairs, model=model, log=say)
    if save_pairs is not None:
        with_mined = [
            TrainPair(p.anchor, p.positive, p.negative or m) for p, m in zip(pairs, mined,
                                                                           strict=True)
        ]
        write_pairs(with_mined, save_pairs)
    lefts, rights, labels = reranker_examples(pairs, mined, seed)
    say(f"training the reranker on {len(labels):,} labelled pairs "
        f"({int(sum(labels)):,} positive)")
    loss_value, steps, base_name = _fit_cross_encoder(
        model, lefts, rights, labels, out, epochs=epochs, batch_size=batch_size,
        max_length=max_length, learning_rate=learning_rate, warmup_ratio=warmup_ratio, seed=seed,
        log=say,
    )
    seconds = round(time.perf_counter() - started, 1)
    record = {
        "kind": "cross-encoder",
        "base_model": base_name,
        "loss": "BinaryCrossEntropyLoss",
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "max_length": max_length,
        "learning_rate": learning_rate,
        "warmup_ratio": warmup_ratio,
        "pairs": len(pairs),
        "examples": len(labels),
        "positives": int(sum(labels)),
        "mined_negatives": sum(m is not None for m in mined),
        "pairs_per_file": counts,
        "files": files,
        "steps": steps,
        "final_loss": loss_value,
        "seconds": seconds,
    }
    record = _write_record(out, record)
    say(f"trained the reranker for {steps} steps in {seconds:.0f}s; saved to {out}")
    return record


def _fit_cross_encoder(
    model: str | None, lefts: list[str], rights: list[str], labels: list[float], out: Path, *,
    epochs: float, batch_size: int, max_length: int, learning_rate: float, warmup_ratio: float,
    seed: int, log: Log,
) -> tuple[float | None, int, str]:
    from datasets import Dataset
    from sentence_transformers import CrossEncoder, CrossEncoderTrainer
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from sentence_transformers.cross_encoder.training_args import CrossEncoderTrainingArguments
    from transformers.utils import logging as hf_logging

    from simqa.encode.models import resolve_model

    hf_logging.set_verbosity_error()
    name, location = resolve_model(model)
    try:
        cross = CrossEncoder(
        location, num_labels=1, max_length=max_length, device="cpu", local_files_only=True
    )
    except (OSError, ValueError) as exc:
        raise SimqaError(f"cannot load {model or name!r} as a cross-encoder offline "
                         f"({type(exc).__name__})") from None
    dataset = Dataset.from_dict({"query": lefts, "text": rights, "label": labels})
    args = _train_args(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        warmup_ratio=warmup_ratio, seed=seed, cls=CrossEncoderTrainingArguments,
    )
    trainer = CrossEncoderTrainer(
        model=cross, args=args, train_dataset=dataset, loss=BinaryCrossEntropyLoss(cross),
    )
    result = run_trainer(trainer, log)
    _cleanup(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cross.save(str(out))
    return _final_loss(trainer, result), int(result.global_step), name
