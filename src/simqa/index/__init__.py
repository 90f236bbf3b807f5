"""Indexes: the interface every backend answers, the embedded FAISS + SQLite backend, and
the two entry points that choose a backend from where the index is.

``protocol`` (``SimilarIndex``: what the box, CLI, server and evaluation call) is answered
by ``search.Index`` (embedded: ``layout`` folders, versions and the writer lock ->
``snapshot`` one version read-only -> ``search``; ``build`` writes; ``store`` the records in
SQLite; ``manifest``; ``density`` the hub penalty) and by ``simqa.milvus.index.MilvusIndex``.
``writes`` is what every backend's writes share; ``hits`` what a search returns.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from simqa.index.build import build_index
from simqa.index.hits import Filters, Hit, check_k, check_query
from simqa.index.layout import CURRENT, home, index_path
from simqa.index.protocol import SimilarIndex
from simqa.index.search import Index
from simqa.records import Consultation

#: index folders that hold only a manifest, their records and vectors in a server: the
#: manifest's vector index kind -> (the index class, the builder); loaded by name, so the
#: embedded engine imports no server client
SERVER_BACKENDS = {
    "milvus": ("simqa.milvus.index:MilvusIndex", "simqa.milvus.collection:build_or_append"),
}


def open_index(index: str | Path = "default", **options: Any) -> SimilarIndex:
    """Open a built index by name or path: the embedded index, or the server-backed one its
    folder's manifest names. ``options``: ``model`` (must be the one it was built with),
    ``encoder``, ``verify`` (read every checksum), ``refresh_every`` (seconds)."""
    root = index_path(index)
    kind = server_backend(root)
    if kind is not None:
        return _load(SERVER_BACKENDS[kind][0]).open(root, **options)
    return Index.open(root, **options)


def build(
    sources: Iterable[Consultation | str | Path],
    index: str | Path = "default",
    *,
    milvus: str | None = None,
    **options: Any,
) -> SimilarIndex:
    """Build an index from records and/or source files (with ``append=True``, add to and
    update an existing one), then open it. ``milvus`` (``http://host:19530``, or a Milvus
    Lite file ``./NAME.db``) keeps records and vectors in Milvus; an append goes wherever
    the index already lives. ``options``: those of ``simqa.index.build.build_index``."""
    root = index_path(index)
    kind = "milvus" if milvus is not None else server_backend(root)
    if kind is not None:
        return _load(SERVER_BACKENDS[kind][1])(sources, root, uri=milvus, **options)
    return Index.open(build_index(sources, root, **options))


def server_backend(root: Path) -> str | None:
    """The server backend of an index folder that holds only its manifest, else None."""
    manifest = root / "manifest.json"
    if (root / CURRENT).exists() or not manifest.is_file():
        return None
    try:
        kind = json.loads(manifest.read_text()).get("vector_index", {}).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if kind in SERVER_BACKENDS else None


def _load(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Filters", "Hit", "Index", "SimilarIndex", "build", "build_index", "check_k",
    "check_query", "home", "index_path", "open_index", "server_backend",
]  # fmt: skip
