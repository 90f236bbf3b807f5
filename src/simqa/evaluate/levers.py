"""Quality levers as ``simqa eval`` methods, so each one's effect is measured like a baseline.

- ``rerank:model=DIR[,base=SPEC,top=20,weight=0]``: a trained cross-encoder
  (``simqa tune --reranker``) reorders the first ``top`` results of ``base``; ``weight``
  adds that many times the base score (a cosine) to the reranker's logit.
- ``truncate:words=N[,chars=N,base=SPEC,side=both|query]``: embed only the first N words
  (or characters) of each text, or of the queries only; what is embedded for a long
  question is a lever of its own.
- ``hybrid-score:bm25=W[,base=SPEC,depth=100]``: score fusion, the dense cosine plus W times
  the BM25 score divided by the query's best BM25 score, over both methods' top ``depth``.

"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simqa.errors import SimqaError
from simqa.evaluate.methods import (
    Method,
    MethodContext,
    Pool,
    _no_more,
    _number,
    register_method,
)

# --- reranking ----------------------------------------------------------------------------


class RerankMethod:
    """``base`` ranks the pool; a cross-encoder reorders the first ``top`` of each list."""

    absolute_scores = False

    def __init__(
        self, name: str, base: Method, reranker: Any, top: int = 20, weight: float = 0.0
    ) -> None:
        self.name, self.base, self.reranker = name, base, reranker
        self.top, self.weight = top, weight
        self.model, self.encoder = base.model, base.encoder
        #: models whose training files ``simqa eval`` checks against the evaluated file
        self.trained_models = (reranker.path,)
        # shared by every spec on this reranker (weights, tops): each pair is scored once
        self._memo: dict[tuple[str, str], float] = _SCORES.setdefault(reranker.path, {})

    def _logits(self, lefts: list[str], rights: list[str]) -> np.ndarray:
        keys = list(zip(lefts, rights, strict=True))
        missing = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if missing:
            fresh = self.reranker.score_pairs([k[0] for k in missing], [k[1] for k in missing])
            self._memo.update(zip(missing, fresh.tolist(), strict=True))
        return np.asarray([self._memo[k] for k in keys], dtype=np.float64)

    def rank(self, queries: Sequence[str], pool: Pool, depth: int) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = self.base.rank(queries, pool, max(depth, self.top + 1))
        ids, scores = np.array(ids, dtype=np.int64), np.array(scores, dtype=np.float64)
        # one more than ``top``: the query's own text, dropped later, is usually first
        top = min(self.top + 1, ids.shape[1])
        rows, cols = np.nonzero(ids[:, :top] >= 0)
        logits = self._logits(
            [queries[r] for r in rows],
            [pool.texts[ids[r, c]] for r, c in zip(rows, cols, strict=True)],
        )
        fused = np.full((len(queries), top), -np.inf)
        fused[rows, cols] = logits + self.weight * scores[rows, cols]
        order = np.argsort(-fused, axis=1, kind="stable")
        ids[:, :top] = np.take_along_axis(ids[:, :top], order, axis=1)
        head = np.take_along_axis(fused, order, axis=1)
        # below the reranked head, keep the base order under the head's lowest score
        floor = np.nanmin(np.where(np.isfinite(head), head, np.nan), axis=1, initial=0.0)
        tail = floor[:, None] - 1.0 - np.arange(ids.shape[1] - top)[None, :]
        return ids[:, :depth], np.concatenate([head, tail], axis=1)[:, :depth]

    def score(self, queries: Sequence[str], pool: Pool, columns: np.ndarray) -> np.ndarray:
        logits = self._logits(list(queries), [pool.texts[c] for c in np.asarray(columns)])
        if self.weight:
            logits = logits + self.weight * self.base.score(queries, pool, columns)
        return logits


_RERANKERS: dict[str, Any] = {}
_SCORES: dict[str, dict[tuple[str, str], float]] = {}


def _rerank(spec: str, context: MethodContext, params: dict[str, str]) -> Method:
    from simqa.learn.rerank import Reranker

    path = params.pop("model", None)
    if not path:
        raise SimqaError(f"method {spec!r}: name the reranker, e.g. rerank:model=DIR")
    base = params.pop("base", "dense-exact")
    top = int(_number(params, "top", 20, spec))
    weight = _number(params, "weight", 0.0, spec)
    _no_more(params, spec)
    if top < 1:
        raise SimqaError(f"method {spec!r}: top must be at least 1")
    key = str(Path(path).expanduser().resolve())
    if key not in _RERANKERS:
        _RERANKERS[key] = Reranker(path)
    return RerankMethod(spec, context.get(base), _RERANKERS[key], top=top, weight=weight)


# --- what is embedded ---------------------------------------------------------------------


class Truncate:
    """``base`` on texts cut to their first ``words`` words or ``chars`` characters."""

    def __init__(
        self, name: str, base: Method, words: int | None, chars: int | None, side: str
    ) -> None:
        self.name, self.base, self.words, self.chars, self.side = name, base, words, chars, side
        self.model, self.absolute_scores = base.model, base.absolute_scores
        self.encoder = base.encoder
        self._pools: dict[str, Pool] = {}

    def cut(self, text: str) -> str:
        if self.words is not None:
            parts = text.split()
            if len(parts) > self.words:
                text = " ".join(parts[: self.words])
        if self.chars is not None and len(text) > self.chars:
            text = text[: self.chars].rsplit(" ", 1)[0] or text[: self.chars]
        return text

    def _pool(self, pool: Pool) -> Pool:
        if self.side == "query":
            return pool
        if pool.key not in self._pools:
            tag = f"{self.words}:{self.chars}:{pool.key}"
            self._pools[pool.key] = Pool(
                [self.cut(t) for t in pool.texts], hashlib.sha256(tag.encode()).hexdigest()
            )
        return self._pools[pool.key]

    def rank(self, queries: Sequence[str], pool: Pool, depth: int) -> tuple[np.ndarray, np.ndarray]:
        return self.base.rank([self.cut(q) for q in queries], self._pool(pool), depth)

    def score(self, queries: Sequence[str], pool: Pool, columns: np.ndarray) -> np.ndarray:
        return self.base.score([self.cut(q) for q in queries], self._pool(pool), columns)


def _truncate(spec: str, context: MethodContext, params: dict[str, str]) -> Method:
    base = params.pop("base", "dense-exact")
    words = int(_number(params, "words", 0, spec)) or None
    chars = int(_number(params, "chars", 0, spec)) or None
    side = params.pop("side", "both")
    _no_more(params, spec)
    if words is None and chars is None:
        raise SimqaError(f"method {spec!r}: give words=N or chars=N")
    if side not in {"both", "query"}:
        raise SimqaError(f"method {spec!r}: side is both or query")
    return Truncate(spec, context.get(base), words, chars, side)


# --- score fusion -------------------------------------------------------------------------


class HybridScore:
    """Cosine plus ``weight`` x BM25 / the query's best BM25, over both top-``depth`` lists."""

    absolute_scores = False

    def __init__(
        self, name: str, dense: Method, lexical: Method, weight: float, depth: int
    ) -> None:
        self.name, self.dense, self.lexical = name, dense, lexical
        self.weight, self.depth = weight, depth
        self.model, self.encoder = dense.model, dense.encoder
        self._best: dict[tuple[str, str], float] = {}

    def _norm(self, queries: Sequence[str], pool: Pool) -> np.ndarray:
        """Each query's best BM25 score in the pool (1 when it has none)."""
        wanted = [q for q in dict.fromkeys(queries) if (pool.key, q) not in self._best]
        if wanted:
            _, scores = self.lexical.rank(wanted, pool, 1)
            for query, row in zip(wanted, np.asarray(scores), strict=True):
                best = float(row[0]) if len(row) else 0.0
                self._best[pool.key, query] = best if best > 0 else 1.0
        return np.asarray([self._best[pool.key, q] for q in queries])

    def _fuse(self, queries: Sequence[str], pool: Pool, columns: np.ndarray) -> np.ndarray:
        dense = self.dense.score(queries, pool, columns)
        lexical = self.lexical.score(queries, pool, columns) / self._norm(queries, pool)
        return dense + self.weight * lexical

    def rank(self, queries: Sequence[str], pool: Pool, depth: int) -> tuple[np.ndarray, np.ndarray]:
        reach = min(max(self.depth, depth), len(pool))
        d_ids, _ = self.dense.rank(queries, pool, reach)
        l_ids, _ = self.lexical.rank(queries, pool, reach)
        both = np.concatenate([np.asarray(d_ids), np.asarray(l_ids)], axis=1)
        ids = np.full((len(queries), depth), -1, dtype=np.int64)
        out = np.full((len(queries), depth), -np.inf)
        rows, cols = [], []
        for r, row in enumerate(both):
            for c in dict.fromkeys(int(x) for x in row if x >= 0):
                rows.append(r)
                cols.append(c)
        rows_a, cols_a = np.asarray(rows), np.asarray(cols, dtype=np.int64)
        fused = self._fuse([queries[r] for r in rows], pool, cols_a)
        for r in range(len(queries)):
            mine = np.flatnonzero(rows_a == r)
            order = mine[np.argsort(-fused[mine], kind="stable")][:depth]
            ids[r, : len(order)] = cols_a[order]
            out[r, : len(order)] = fused[order]
        return ids, out

    def score(self, queries: Sequence[str], pool: Pool, columns: np.ndarray) -> np.ndarray:
        return self._fuse(queries, pool, np.asarray(columns))


def _hybrid_score(spec: str, context: MethodContext, params: dict[str, str]) -> Method:
    dense = params.pop("base", "dense-exact")
    lexical = params.pop("lexical", "bm25")
    weight = _number(params, "bm25", 0.1, spec)
    depth = int(_number(params, "depth", 100, spec))
    _no_more(params, spec)
    return HybridScore(spec, context.get(dense), context.get(lexical), weight, depth)


register_method("rerank", _rerank)
register_method("truncate", _truncate)
register_method("hybrid-score", _hybrid_score)
