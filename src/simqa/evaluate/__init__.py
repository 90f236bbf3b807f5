"""Recall evaluation: read labelled question pairs, rank a pool with each method, score.

    >>> from simqa.evaluate.compare import evaluate
    >>> rows = evaluate("mqp.csv", methods=["bm25", "dense-exact"])  # doctest: +SKIP

Modules: ``pairs`` (readers), ``metrics`` (every number, stable keys), ``methods``
(bm25, dense-exact, simqa, hybrid-rrf; ``register_method`` adds more), ``levers`` (the
quality levers as methods), ``compare`` (``evaluate``: every method on the same pool),
``distractors`` (an index's questions added to the pool), ``calibrate`` (the min-score),
``judged`` (scores of boxes graded by people).
"""
