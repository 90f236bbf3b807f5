"""What ``simqa build --milvus URI`` runs: a (re)build or an append, then the index opened."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import simqa.index.layout as layout
import simqa.milvus.write as write
from simqa.errors import SimqaError
from simqa.index.writes import records_from
from simqa.milvus.client import Connection
from simqa.milvus.index import MilvusIndex
from simqa.records import Consultation


def build_or_append(
    sources: Iterable[Consultation | str | Path],
    index: str | Path,
    *,
    uri: str | None,
    append: bool = False,
    hub_penalty: float | None = None,
    **options: Any,
) -> MilvusIndex:
    """What ``simqa build --milvus URI`` does: a (re)build, or with ``append`` an append
    to the Milvus-backed index ``index``; returns it opened (a ``MilvusIndex``)."""
    if hub_penalty:
        raise SimqaError("a Milvus index ranks by cosine: --hub-penalty is not available")
    root = layout.index_path(index)
    if not append:
        if uri is None:
            uri = write.load_manifest(root).vector_index["uri"]  # rebuild where it lives
        return MilvusIndex.open(write.build(sources, root, uri, **options))
    manifest = write.load_manifest(root) if write.is_milvus_index(root) else None
    if manifest is None:
        raise SimqaError(f"no Milvus-backed index at {root} to append to (build it first)")
    if uri is not None and not Connection.same(uri, manifest.vector_index["uri"]):
        raise SimqaError(
            f"--milvus cannot change on an append (the index lives at "
            f"{manifest.vector_index['uri']})"
        )
    fixed = {k: options.get(k) for k in ("model", "fields", "index_type", "recall", "encoder")}
    records = records_from(
        sources, options.get("format"), options.get("strict", False), options.get("report")
    )
    write.write(
        root,
        records,
        fixed=fixed,
        min_score=options.get("min_score", "auto"),
        progress=options.get("progress", False),
        wait=options.get("wait", 300.0),
    )
    return MilvusIndex.open(root)
