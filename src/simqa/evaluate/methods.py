"""Retrieval methods compared by ``simqa eval``, all behind one small interface.

A method ranks a pool of candidate questions for each query (``rank``) and scores given
(query, candidate) pairs (``score``). The runner hands every method the same queries
and pool, so their numbers compare. New methods (a fine-tuned model, a reranker) are one
class and one ``register_method`` call; a spec string such as
``dense-exact:model=models/ft`` or ``hybrid-rrf:bm25=0.5,dense=1`` picks and configures
one from the command line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from simqa.errors import SimqaError
from simqa.evaluate.embedcache import TORCH, EmbeddingCache, texts_checksum

DEFAULT_METHODS = ("bm25", "dense-exact", "simqa", "hybrid-rrf")


@dataclass
class Pool:
    """The candidate texts every query is ranked against; ``key`` identifies them for caches."""

    texts: list[str]
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            self.key = texts_checksum(self.texts)

    def __len__(self) -> int:
        return len(self.texts)


class Method(Protocol):
    """What the runner needs from a retrieval method."""

    #: the spec it was made from, shown in reports
    name: str
    #: embedding model name, or None for lexical methods
    model: str | None
    #: the encoder that embedded the texts (torch, onnx), or None for lexical methods
    encoder: str | None
    #: True when ``similarity`` scores mean the same in any pool (cosine), so a threshold
    #: tuned on one set classifies another
    absolute_scores: bool

    def rank(self, queries: Sequence[str], pool: Pool, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores), each (len(queries), <= depth), best first; -1 pads."""
        ...

    def score(self, queries: Sequence[str], pool: Pool, columns: np.ndarray) -> np.ndarray:
        """Score of ``queries[i]`` against ``pool.texts[columns[i]]``, for each i."""
        ...


def similarity(
    method: Method, queries: Sequence[str], pool: Pool, columns: np.ndarray
) -> np.ndarray:
    """What a threshold classifies pairs by: the method's ``similarity`` where it has one
    (the engine ranks by a penalised score but thresholds the cosine), else its score."""
    own = getattr(method, "similarity", None)
    return own(queries, pool, columns) if own else method.score(queries, pool, columns)


@dataclass
class MethodContext:
    """What methods share in one run: the default model, the embedding cache, and the
    engine's vector index per (model, encoder, pool), built once for every ``simqa`` spec."""

    model: str | None = None
    cache: EmbeddingCache = field(default_factory=EmbeddingCache)
    built: dict[str, Method] = field(default_factory=dict)
    engines: dict[tuple[str, str, str], Any] = field(default_factory=dict)

    def get(self, spec: str) -> Method:
        """The method for ``spec``, made once per run (so hybrids reuse their parts)."""
        if spec not in self.built:
            self.built[spec] = make_method(spec, self)
        return self.built[spec]


Factory = Callable[[str, MethodContext, dict[str, str]], Method]
METHODS: dict[str, Factory] = {}


def register_method(name: str, factory: Factory) -> None:
    """Make ``name`` usable in ``--method``; the factory gets (spec, context, params)."""
    METHODS[name] = factory


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"name:key=value,key=value"`` -> (name, params)."""
    name, _, rest = spec.strip().partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SimqaError(f"method {spec!r}: parameters are written key=value,key=value")
        params[key.strip()] = value.strip()
    return name, params


def make_method(spec: str, context: MethodContext) -> Method:
    name, params = parse_spec(spec)
    if name not in METHODS:
        raise SimqaError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name](spec.strip(), context, params)


def _number(params: dict[str, str], key: str, default: float, spec: str) -> float:
    try:
        return float(params.pop(key, default))
    except ValueError:
        raise SimqaError(f"method {spec!r}: {key} must be a number") from None


def _no_more(params: dict[str, str], spec: str) -> None:
    if params:
        raise SimqaError(f"method {spec!r}: unknown parameter(s) {', '.join(sorted(params))}")


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest scores per row, best first."""
    k = min(k, scores.shape[1])
    if k <= 0:
        empty = np.zeros((len(scores), 0))
        return empty.astype(np.int64), empty.astype(np.float32)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)


# --- lexical ------------------------------------------------------------------------------


class BM25Method:
    """BM25 (bm25s, Lucene variant) over English-stopworded, Snowball-stemmed tokens."""

    model = None
    encoder = None
    absolute_scores = False

    def __init__(self, name: str, k1: float = 1.5, b: float = 0.75, stem: bool = True) -> None:
        self.name, self.k1, self.b = name, k1, b
        self.stemmer = _english_stemmer() if stem else None
        self._pool_key = ""
        self._retriever: Any = None

    def _tokens(self, texts: Sequence[str]) -> list[list[str]]:
        import bm25s

        return bm25s.tokenize(
            list(texts),
            stopwords="en",
            stemmer=self.stemmer,
            return_ids=False,
            show_progress=False,
        )

    def _index(self, pool: Pool) -> Any:
        if self._pool_key != pool.key:
            import bm25s

            retriever = bm25s.BM25(k1=self.k1, b=self.b)
            retriever.index(self._tokens(pool.texts), show_progress=False)
            self._retriever, self._pool_key = retriever, pool.key
        return self._retriever

    def rank(self, queries: Sequence[str], pool: Pool, depth: int) -> tuple[np.ndarray, np.ndarray]:
        retriever = self._index(pool)
        found = retriever.retrieve(
            self._tokens(queries), k=min(depth, len(pool)), show_progress=False
        )
        return np.asarray(found.documents, dtype=np.int64), np.asarray(found.scores)

    def score(self, queries: Sequence[str], pool: Pool, columns: np.ndarray) -> np.ndarray:
        retriever = self._index(pool)
        out = np.zeros(len(queries), dtype=np.float32)
        rows: dict[str, list[int]] = {}
        for i, query in enumerate(queries):
            rows.setdefault(query, []).append(i)
        unique = list(rows)
        for query, tokens in zip(unique, self._tokens(unique), strict=True):
            if tokens:
                scores = retriever.get_scores(tokens)
                idx = rows[query]
                out[idx] = scores[np.asarray(columns)[idx]]
        return out


def _english_stemmer() -> Any:
    """PyStemmer's Snowball English stemmer, or None (plain tokens) when not installed."""
    try:
        import Stemmer
    except ImportError:
        return None
    return Stemmer.Stemmer("english")


def _bm25(spec: str, context: MethodContext, params: dict[str, str]) -> Method:
    k1 = _number(params, "k1", 1.5, spec)
    b = _number(params, "b", 0.75, spec)
    stem = params.pop("stem", "1").lower() not in {"0", "false", "no"}
    _no_more(params, spec)
    return BM25Method(spec, k1=k1, b=b, stem=stem)


# --- dense --------------------------------------------------------------------------------


class DenseExact:
    """Exact inner product of unit vectors (cosine) over the whole pool, with numpy.

    ``encoder``: torch (sentence-transformers itself, the default) or onnx / auto.
    """

    absolute_scores = True
    chunk = 256

    def __init__(
        self, name: str, model: str | None, cache: EmbeddingCache, encoder: str = TORCH
    ) -> None:
        self.name, self.cache = name, cache
        self.model = cache.model_name(model)
        self._asked = encoder
        self.encoder = cache.kind(model, encoder)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.cache.encode(self.model, texts, self._asked)

    def pool_vectors(self, pool: Pool) -> np.ndarray:
        return self.cache.matrix(self.model, pool.texts, pool.key, self._asked)

    def rank(self, queries: Sequence[str], pool: Pool, depth: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = self.pool_vectors(pool)
        q = self.embed(queries)
        parts = [
            top_k(q[s : s + self.chunk] @ vectors.T, depth) for s in range(0, len(q), self.chunk)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def score(self, queries: Sequence[str], pool: Pool, columns: np.ndarray) -> np.ndarray:
        q = self.embed(queries)
        return np.einsum("ij,ij->i", q, self.pool_vectors(pool)[np.asarray(columns)])


def _model_param(params: dict[str, str], context: MethodContext) -> str | None:
    return params.pop("model", None) or context.model


def _encoder_param(params: dict[str, str], default: str, spec: str) -> str:
    encoder = params.pop("encoder", default)
    if encoder not in ("torch", "onnx", "auto"):
        raise SimqaError(f"method {spec!r}: encoder is torch, onnx or auto")
    return encoder


def _dense(spec: str, context: MethodContext, params: dict[str, str]) -> Method:
    model = _model_param(params, context)
    encoder = _encoder_param(params, TORCH, spec)
    _no_more(params, spec)
    return DenseExact(spec, model, context.cache, encoder)


class SimqaVectors(DenseExact):
    """What ``simqa query`` does, on the evaluation's pool: the encoder it uses (int8 onnx
    by default), the vector index ``simqa build`` would choose and tune for the pool, the
    hub penalty (``hub``: its weight, the index default unless given; 0 turns it off) over
    the candidates a query asks the index for, and the index's default ``min_score``."""

    def __init__(
        self,
        name: str,
        model: str | None,
        cache: EmbeddingCache,
        hub: float = 0.0,
        encoder: str = "auto",
        min_score: float | None = None,
        engines: dict[tuple[str, str, str], Any] | None = None,
    ) -> None:
        super().__init__(name, model, cache, encoder)
        self.hub = hub
        self.min_score = min_score
        self._engines = {} if engines is None else engines
        self._index: Any = None
        self._density = np.zeros(0, dtype=np.float32)
        self.kind = ""

    def _prepare(self, pool: Pool) -> Any:
        """The pool's vector index as build makes it (and densities, if the penalty is on),
        shared by every ``simqa`` spec on the same model, encoder and pool."""
        key = (self.model, self.encoder, pool.key)
        if key not in self._engines:
            import simqa.vectors as backends
            from simqa.index.writes import DEFAULT_RECALL

            vectors = self.pool_vectors(pool)
            kind, params, _why = backends.choose(len(vectors), vectors.shape[1])
            index = backends.create(kind, vectors.shape[1], **params)
            ids = np.arange(len(vectors), dtype=np.int64)
            index.add(ids, vectors)
            if kind != "flat":  # as simqa build does: the cheapest setting at recall 0.95
                from simqa.vectors.tuning import tune_search_params

                tune_search_params(index, vectors, ids, target=DEFAULT_RECALL)
            self._engines[key] = {"kind": kind, "index": index, "density": None}
        engine = self._engines[key]
        if self.hub and engine["density"] is None:
            from simqa.index.density import neighbour_density

            vectors = self.pool_vectors(pool)
            ids = np.arange(len(vectors), dtype=np.int64)
            engine["density"] = neighbour_density(engine["index"].search, vectors, ids)
        self.kind, self._index = engine["kind"], engine["index"]
        if self.hub:
            self._density = engine["density"]
        return self._index

    def rank(self, queries: Sequence[str], pool: Pool, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """The engine's order: its first ``RERANK_DEPTH`` candidates (what a query for up to
        56 hits asks the index for) re-ordered by the penalty, then the rest the same way,
        below them; candidates under ``min_score`` are dropped (-1), as a query drops them."""
        from simqa.index.density import RERANK_DEPTH, penalised

        index = self._prepare(pool)
        q = self.embed(queries)
        head = RERANK_DEPTH if self.hub else depth
        scores, ids = index.search(q, min(max(depth, head), len(pool)))
        ids, scores = np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float64)
        valid = ids >= 0
        if self.min_score is not None:
            valid &= scores >= self.min_score
        ranked = scores
        if self.hub:
            ranked = penalised(scores, self._density[np.where(ids >= 0, ids, 0)], self.hub)
            # the head is re-ordered among itself; the tail stays below it
            ranked = ranked - np.where(np.arange(ids.shape[1]) < head, 0.0, 1e3)[None, :]
        ranked = np.where(valid, ranked, -np.inf)
        order = np.argsort(-ranked, axis=1, kind="stable")
        ids = np.where(valid, ids, -1)
        ids = np.take_along_axis(ids, order, axis=1)
        scores = np.take_along_axis(ranked, order, axis=1)
        return ids[:, :depth], scores[:, :depth]

    def similarity(self, queries: Sequence[str], pool: Pool, columns: np.ndarray) -> np.ndarray:
        """The cosine, which the engine's min-score thresholds."""
        return super().score(queries, pool, columns)

    def score(self, queries: Sequence[str], pool: Pool, columns: np.ndarray) -> np.ndarray:
        from simqa.index.density import penalised

        cosine = self.similarity(queries, pool, columns)
        if not self.hub:
            return cosine
        self._prepare(pool)
        return penalised(cosine, self._density[np.asarray(columns)], self.hub)


def _simqa(spec: str, context: MethodContext, params: dict[str, str]) -> Method:
    from simqa.encode.encoder import DEFAULT_ENCODER
    from simqa.encode.threshold import default_min_score
    from simqa.index.density import DEFAULT_WEIGHT

    model = _model_param(params, context)
    hub = _number(params, "hub", DEFAULT_WEIGHT, spec)
    encoder = _encoder_param(params, DEFAULT_ENCODER, spec)
    given = params.pop("min_score", "auto").lower()
    _no_more(params, spec)
    if given == "auto":  # what simqa build records for the model
        min_score = default_min_score(context.cache.model_name(model))
    elif given == "none":
        min_score = None
    else:
        try:
            min_score = float(given)
        except ValueError:
            raise SimqaError(f"method {spec!r}: min_score is auto, none or a number") from None
    return SimqaVectors(spec, model, context.cache, hub, encoder, min_score, context.engines)


# --- fusion -------------------------------------------------------------------------------


class HybridRRF:
    """Reciprocal-rank fusion: sum of weight / (k + rank) over each part's top ``pool_depth``."""

    absolute_scores = False

    def __init__(
        self, name: str, parts: list[tuple[Method, float]], k: float = 60.0, pool_depth: int = 200
    ) -> None:
        self.name, self.parts, self.k, self.pool_depth = name, parts, k, pool_depth
        self.model = next((m.model for m, _ in parts if m.model), None)
        self.encoder = next((e for m, _ in parts if (e := getattr(m, "encoder", None))), None)
        self._memo: tuple[str, np.ndarray, np.ndarray] | None = None

    def _fused(self, queries: Sequence[str], pool: Pool) -> tuple[np.ndarray, np.ndarray]:
        """Sparse fused scores: sorted keys ``row * len(pool) + column`` and their scores.

        Candidates that no part ranked in its top ``pool_depth`` score 0.
        """
        key = hashlib.sha256((pool.key + texts_checksum(queries)).encode()).hexdigest()
        if self._memo and self._memo[0] == key:
            return self._memo[1], self._memo[2]
        depth = min(max(self.pool_depth, 1), len(pool))
        keys, weights = [], []
        for method, weight in self.parts:
            ids, _ = method.rank(queries, pool, depth)
            rows = np.broadcast_to(np.arange(len(queries))[:, None], ids.shape)
            contrib = weight / (self.k + np.arange(1, ids.shape[1] + 1, dtype=np.float64))
            valid = ids >= 0
            keys.append(rows[valid] * len(pool) + ids[valid])
            weights.append(np.broadcast_to(contrib, ids.shape)[valid])
        unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
        scores = np.bincount(inverse, weights=np.concatenate(weights), minlength=len(unique))
        self._memo = (key, unique, scores)
        return unique, scores

    def rank(self, queries: Sequence[str], pool: Pool, depth: int) -> tuple[np.ndarray, np.ndarray]:
        keys, scores = self._fused(queries, pool)
        rows, cols = np.divmod(keys, len(pool))
        order = np.lexsort((-scores, rows))
        rows, cols, scores = rows[order], cols[order], scores[order]
        starts = np.searchsorted(rows, np.arange(len(queries)))
        position = np.arange(len(rows)) - starts[rows]
        keep = position < depth
        ids = np.full((len(queries), depth), -1, dtype=np.int64)
        out = np.zeros((len(queries), depth), dtype=np.float64)
        ids[rows[keep], position[keep]] = cols[keep]
        out[rows[keep], position[keep]] = scores[keep]
        return ids, out

    def score(self, queries: Sequence[str], pool: Pool, columns: np.ndarray) -> np.ndarray:
        keys, scores = self._fused(queries, pool)
        wanted = np.arange(len(queries)) * len(pool) + np.asarray(columns, dtype=np.int64)
        at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        return np.where(keys[at] == wanted, scores[at], 0.0)


def _hybrid(spec: str, context: MethodContext, params: dict[str, str]) -> Method:
    lexical = params.pop("lexical", "bm25")
    dense = params.pop("dense_method", "dense-exact")
    w_lex = _number(params, "bm25", 1.0, spec)
    w_dense = _number(params, "dense", 1.0, spec)
    k = _number(params, "k", 60.0, spec)
    depth = int(_number(params, "depth", 200, spec))
    _no_more(params, spec)
    parts = [(context.get(lexical), w_lex), (context.get(dense), w_dense)]
    return HybridRRF(spec, parts, k=k, pool_depth=depth)


register_method("bm25", _bm25)
register_method("dense-exact", _dense)
register_method("simqa", _simqa)
register_method("hybrid-rrf", _hybrid)
