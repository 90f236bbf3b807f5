"""Building a Milvus-backed index: a new collection, filled, indexed and tuned, then switched
to in one step.

A (re)build writes a new collection, tunes it, and only then points the index's alias at
it (one atomic switch on the server; Milvus Lite has no aliases, so there the local
manifest naming the collection is the pointer, replaced atomically): a failed build leaves
the previous collection serving. ``build_or_append`` is what ``simqa.build(...,
milvus=URI)`` runs.
"""


from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import simqa.index.layout as layout
import simqa.milvus.rows as row_writes
import simqa.milvus.schema as schema
from simqa.encode.encoder import DEFAULT_ENCODER, shared_encoder
from simqa.errors import SimqaError
from simqa.index.manifest import Manifest
from simqa.index.writes import (
    DEFAULT_FIELDS,
    DEFAULT_RECALL,
    last_of_each_id,
    min_score_for,
    now,
    records_from,
    simqa_version,
)
from simqa.milvus.client import Connection
from simqa.milvus.folder import (
    BATCH_BYTES,
    UNDO,
    alias_for,
    description,
    is_milvus_index,
    load_manifest,
    save_manifest,
)
from simqa.milvus.index import MilvusIndex
from simqa.milvus.vectors import MilvusVectors, choose
from simqa.records import Consultation
from simqa.vectors.tuning import tune_search_params

#: how long a build waits for Milvus to index what it inserted before tuning
INDEX_WAIT_SECONDS = 1800.0


def build(
    sources: Iterable[Consultation | str | Path],
    index: str | Path,
    uri: str,
    *,
    model: str | None = None,
    index_type: str | None = None,
    recall: float | None = None,
    fields: str | None = None,
    format: str | None = None,
    strict: bool = False,
    report: Any = None,
    progress: bool = False,
    batch_size: int = 64,
    encoder: str | None = None,
    min_score: float | str | None = "auto",
    wait: float = layout.DEFAULT_WAIT_SECONDS,
) -> Path:
    """Build (or rebuild) the index ``index`` in Milvus at ``uri``; returns its folder."""

    fields = fields or DEFAULT_FIELDS
    enc = shared_encoder(model, encoder or DEFAULT_ENCODER)
    records = list(last_of_each_id(records_from(sources, format, strict, report)))

    def pairs() -> Iterator[tuple[Consultation, np.ndarray]]:
        for start in range(0, len(records), 4096):
            chunk = records[start : start + 4096]
            texts = [r.embedding_text(fields) for r in chunk]
            yield from zip(
                chunk, enc.encode(texts, batch_size=batch_size, progress=progress), strict=True
            )

    meta = Manifest(
        model=enc.name,
        dim=enc.dim,
        count=len(records),
        vector_index={},
        embed_fields=fields,
        encoder=enc.kind,
        min_score=min_score_for(min_score, enc.name),
    )
    return _create(index, uri, pairs(), len(records), meta, index_type, recall, wait)

def from_index(
    source: Any,
    index: str | Path,
    uri: str,
    *,
    index_type: str | None = None,
    recall: float | None = None,
    wait: float = layout.DEFAULT_WAIT_SECONDS,
) -> Path:
    """Copy an embedded index (an open ``Index``) into Milvus, reusing its stored vectors:
    no re-embedding, the same model, text fields, encoder and threshold (a hub penalty is
    not carried over: a Milvus index ranks by cosine)."""
    vids, matrix = source.embeddings()
    m = source.manifest

    def pairs() -> Iterator[tuple[Consultation, np.ndarray]]:
        for row, (vid, record) in enumerate(source.records_by_vid()):
            if int(vids[row]) != int(vid):
                raise SimqaError(f"index {source.root}: records and stored vectors disagree")
            yield record, np.asarray(matrix[row], dtype=np.float32)

    meta = Manifest(
        model=m.model, dim=m.dim, count=len(vids), vector_index={}, embed_fields=m.embed_fields,
        encoder=m.encoder, min_score=m.min_score,
    )  # fmt: skip
    return _create(index, uri, pairs(), len(vids), meta, index_type, recall, wait)

def from_vectors(
    pairs: Iterable[tuple[Consultation, np.ndarray]],
    count: int,
    index: str | Path,
    uri: str,
    *,
    model: str,
    dim: int,
    fields: str = DEFAULT_FIELDS,
    encoder: str = "torch",
    min_score: float | None = None,
    index_type: str | None = None,
    recall: float | None = None,
    wait: float = layout.DEFAULT_WAIT_SECONDS,
) -> Path:
    """Build a Milvus index from ready-made (record, vector) pairs made with ``model``
    (vectors from elsewhere: a migration, or a benchmark's synthetic corpus)."""
    meta = Manifest(
        model=model, dim=dim, count=count, vector_index={}, embed_fields=fields,
        encoder=encoder, min_score=min_score,
    )  # fmt: skip
    return _create(index, uri, iter(pairs), count, meta, index_type, recall, wait)

def _create(
    index: str | Path,
    uri: str,
    pairs: Iterator[tuple[Consultation, np.ndarray]],
    count: int,
    meta: Manifest,
    index_type: str | None,
    recall: float | None,
    wait: float,
) -> Path:
    if recall is not None and not 0 < recall <= 1:
        raise SimqaError(f"--recall must be in (0, 1], got {recall}")
    root = layout.index_path(index)
    if (
        root.exists()
        and not is_milvus_index(root)
        and any(p.name not in (layout.LOCK,) for p in root.iterdir())
    ):
        raise SimqaError(
            f"{root} exists and is not a Milvus-backed simqa index; refusing to write into it"
        )
    if count == 0:
        raise SimqaError("no records to index: the sources held no valid consultations")
    conn = Connection(uri)
    with layout.writer_lock(root, wait):
        alias = alias_for(root)
        collection = f"{alias}_{datetime.now(UTC):%Y%m%d%H%M%S}_{uuid.uuid4().hex[:6]}"
        kind, build_params, reason = choose(count, conn.lite, index_type)
        vectors = MilvusVectors(conn, collection, meta.dim, kind, build_params)
        conn.call(
            "create_collection",
            collection,
            schema=schema.collection_schema(meta.dim, description(meta)),
            index_params=vectors.index_params(),
            consistency_level="Strong",
            **_deployment(conn, "SIMQA_MILVUS_SHARDS", "num_shards"),
        )
        try:
            sources: dict[str, int] = {}
            ids, matrix = _insert_all(conn, collection, pairs, meta.embed_fields, meta.dim, sources)
            _wait_indexed(conn, collection, len(ids))
            target = DEFAULT_RECALL if recall is None else recall
            if kind == "FLAT":
                recall_info: dict[str, Any] = {"target": target, "recall": 1.0, "exact": True}
            else:
                recall_info = tune_search_params(vectors, matrix, ids, target=target)
            stamp = now()
            previous = _old_manifest(root)
            meta.vector_index = {
                **vectors.config,
                "uri": conn.uri,
                "collection": collection if conn.lite else alias,
            }
            meta.count, meta.index_reason, meta.recall = len(ids), reason, recall_info
            meta.sources = dict(sorted(sources.items(), key=lambda kv: -kv[1]))
            meta.created = meta.updated = stamp
            meta.simqa_version = simqa_version()
            old = _switch(conn, alias, collection)
            root.mkdir(parents=True, exist_ok=True)
            save_manifest(root, meta)
            (root / UNDO).unlink(missing_ok=True)  # a rebuild supersedes an unfinished write
        except BaseException:
            _drop_quietly(conn, collection)
            raise
        for stale in {old, previous.vector_index.get("collection") if previous else None}:
            if stale and stale not in (collection, alias):
                _drop_quietly(conn, stale)
    return root

def _insert_all(
    conn: Connection,
    collection: str,
    pairs: Iterator[tuple[Consultation, np.ndarray]],
    fields: str,
    dim: int,
    sources: dict[str, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Insert every (record, vector) row; return the vids and vectors (for tuning) and
    count records per source into ``sources``."""
    ids: list[int] = []
    vecs: list[np.ndarray] = []
    seen: dict[int, str] = {}
    batch: list[dict[str, Any]] = []
    size = 0
    for record, vector in pairs:
        row = schema.to_row(record, vector, fields)
        other = seen.setdefault(row["vid"], record.id)
        if other != record.id:
            raise SimqaError(f"ids {other!r} and {record.id!r} hash to the same Milvus key")
        ids.append(row["vid"])
        sources[record.source or "(none)"] = sources.get(record.source or "(none)", 0) + 1
        vecs.append(np.asarray(vector, dtype=np.float32))
        batch.append(row)
        size += len(row["record"]) + 8 * dim + 512
        if size >= BATCH_BYTES:
            conn.call("insert", collection, batch)
            batch, size = [], 0
    if batch:
        conn.call("insert", collection, batch)
    return np.array(ids, dtype=np.int64), np.vstack(vecs) if vecs else np.zeros((0, dim))

def _wait_indexed(conn: Connection, collection: str, rows: int) -> None:
    """Seal what was inserted and wait until Milvus has indexed all of it, so tuning
    measures the index queries will use (growing segments are searched brute force)."""
    if conn.lite:
        return
    deadline = time.monotonic() + INDEX_WAIT_SECONDS
    conn.call("flush", collection, bound=INDEX_WAIT_SECONDS)
    while time.monotonic() < deadline:
        info = conn.call("describe_index", collection, "vector")
        if int(info.get("indexed_rows", 0)) >= rows and int(info.get("pending_index_rows", 0)) == 0:
            break
        time.sleep(0.5)
    else:
        raise SimqaError(
            f"Milvus at {conn.uri} did not index {collection} within {INDEX_WAIT_SECONDS:g} s"
        )
    # until the query node swaps its growing copies for the indexed segments it searches
    # them brute force (exact), and tuning would measure that: reload from the index
    conn.call("release_collection", collection)
    conn.call(
        "load_collection",
        collection,
        bound=deadline - time.monotonic(),  # 10 s is not enough for 1M rows on 2 cores
        **_deployment(conn, "SIMQA_MILVUS_REPLICAS", "replica_number"),
    )
    while time.monotonic() < deadline:
        state = conn.call("get_load_state", collection)
        if str(state.get("state")).endswith("Loaded"):
            return
        time.sleep(0.5)

def _deployment(conn: Connection, variable: str, name: str) -> dict[str, int]:
    """A cluster's shard (write channel) or in-memory replica count, from the environment
    (SIMQA_MILVUS_SHARDS, SIMQA_MILVUS_REPLICAS); Milvus's defaults otherwise."""
    value = os.environ.get(variable)
    if value is None or conn.lite:
        return {}
    if not value.isdigit() or int(value) < 1:
        raise SimqaError(f"{variable} must be a whole number of at least 1, got {value!r}")
    return {name: int(value)}

def _switch(conn: Connection, alias: str, collection: str) -> str | None:
    """Point ``alias`` at ``collection`` in one step; return the collection it left."""
    if conn.lite:
        return None
    try:
        old = conn.call("describe_alias", alias).get("collection_name")
    except SimqaError:
        old = None
    if old:
        conn.call("alter_alias", collection, alias)
    else:
        conn.call("create_alias", collection, alias)
    return old

def _old_manifest(root: Path) -> Manifest | None:
    try:
        return load_manifest(root) if is_milvus_index(root) else None
    except SimqaError:
        return None

def _drop_quietly(conn: Connection, collection: str) -> None:
    try:
        if not conn.lite:
            for alias in conn.call("list_aliases", collection).get("aliases", []):
                conn.call("drop_alias", alias)
        conn.call("drop_collection", collection)
    except SimqaError:
        pass  # a leftover collection wastes space but serves no one: no alias points at it


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
            uri = load_manifest(root).vector_index["uri"]  # rebuild where it lives
        return MilvusIndex.open(build(sources, root, uri, **options))
    manifest = load_manifest(root) if is_milvus_index(root) else None
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
    row_writes.write(
        root,
        records,
        fixed=fixed,
        min_score=options.get("min_score", "auto"),
        progress=options.get("progress", False),
        wait=options.get("wait", 300.0),
    )
    return MilvusIndex.open(root)
