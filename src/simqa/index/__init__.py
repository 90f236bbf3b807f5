"""A simqa index: records in SQLite, vectors in faiss, published as atomic versions.

``layout`` (folders, CURRENT, the writer lock) -> ``snapshot`` (one version, opened
read-only) -> ``search`` (``Index``: queries, following new versions) and ``build``
(first builds, appends, updates, deletes); ``hits`` is what a search returns.
"""

from functools import wraps
from pathlib import Path
from typing import Any

from simqa.index.build import build_index
from simqa.index.hits import Filters, Hit, check_k, check_query
from simqa.index.layout import home, index_path
from simqa.index.search import Index


@wraps(build_index)
def build(*args: Any, **kwargs: Any) -> Index:
    """Build (or append to) an index, then open it: ``build_index``'s arguments."""
    return Index.open(build_index(*args, **kwargs))


def open_index(index: str | Path = "default", **kwargs: Any) -> Index:
    """Open a built index by name or path (see ``Index.open``)."""
    return Index.open(index, **kwargs)


__all__ = [
    "Filters", "Hit", "Index", "build", "build_index", "check_k", "check_query", "home",
    "index_path", "open_index",
]  # fmt: skip
