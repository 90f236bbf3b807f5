"""Recall evaluation: read labelled question pairs, rank a pool with each method, score.

    >>> from simqa.evaluate import evaluate
    >>> rows = evaluate("mqp.csv", methods=["bm25", "dense-exact"])  # doctest: +SKIP

Modules: ``pairs`` (readers), ``metrics`` (every number, stable keys), ``methods``
(bm25, dense-exact, simqa, hybrid-rrf; ``register_method`` adds more), ``run``
(``evaluate``), ``distractors`` (an index's questions added to the pool).
"""

from simqa.evaluate import levers as _levers  # noqa: F401  (registers rerank, truncate, ...)
from simqa.evaluate.methods import (
    DEFAULT_METHODS,
    Method,
    MethodContext,
    Pool,
    make_method,
    register_method,
)
from simqa.evaluate.pairs import EvalQuery, LabelledPair, PairSet, read_pairs
from simqa.evaluate.run import evaluate

__all__ = [
    "DEFAULT_METHODS",
    "EvalQuery",
    "LabelledPair",
    "Method",
    "MethodContext",
    "PairSet",
    "Pool",
    "evaluate",
    "make_method",
    "read_pairs",
    "register_method",
]
