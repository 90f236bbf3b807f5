"""Writing a Milvus-backed index: first builds, and appends, updates and deletes.

The index folder keeps only ``manifest.json`` (model, URI, collection, index type, tuned
search parameters, measured recall), the writer lock and, while a write is under way, its
undo journal. Everything a query needs is in Milvus.

Rules (the embedded index's, carried over):

- One writer at a time per index folder: the folder's OS lock (``layout.writer_lock``).
  It serialises writers on one machine (or sharing the folder over a file system with
  working locks); writers on different machines are not serialised: run writes from one
  place (e.g. one ``simqa serve`` with a write token), readers may be anywhere.
- A (re)build writes a new collection, tunes it, and only then points the index's alias
  at it (one atomic switch on the server; Milvus Lite has no aliases, so there the local
  manifest naming the collection is the pointer, replaced atomically): a failed build
  leaves the previous collection serving.
- An append or delete upserts / deletes rows (Milvus has no multi-row transactions, so
  readers may see its first batches before it returns). Before touching a row it saves
  the row's previous state in an undo journal; if the write fails it puts every touched
  row back and removes the rows it added, so a failed append leaves exactly the previous
  records. A writer killed mid-write leaves the journal, and the next writer undoes it
  first. On return, every process reading through the same Milvus sees the write
  (collections are created with Strong consistency).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import simqa.index.layout as layout
import simqa.milvus.schema as schema
from simqa.encode.encoder import DEFAULT_ENCODER, shared_encoder
from simqa.errors import ModelMismatch, SimqaError
from simqa.index.manifest import FILENAME, Manifest
from simqa.index.writes import (
    DEFAULT_FIELDS,
    DEFAULT_RECALL,
    last_of_each_id,
    min_score_for,
    now,
    records_from,
    refuse_changes,
    simqa_version,
)
from simqa.milvus.client import Connection
from simqa.milvus.vectors import MilvusVectors, choose
from simqa.records import Consultation
from simqa.vectors.tuning import tune_search_params

UNDO = "undo.json"
#: bytes of rows per insert/upsert request (Milvus refuses messages past 64 MB)
BATCH_BYTES = 8 * 2**20
#: how long a build waits for Milvus to index what it inserted before tuning
INDEX_WAIT_SECONDS = 1800.0
ALL_FIELDS = [
    "vid",
    "id",
    "vector",
    "department",
    "source",
    "ask_iso",
    "tags",
    "text_hash",
    "record",
]


# --- the index folder --------------------------------------------------------------------


def is_milvus_index(root: Path) -> bool:
    """True for an index folder whose manifest points at Milvus."""
    path = Path(root) / FILENAME
    if not path.is_file() or (Path(root) / layout.CURRENT).exists():
        return False
    try:
        return json.loads(path.read_text()).get("vector_index", {}).get("kind") == "milvus"
    except (OSError, ValueError, AttributeError):
        return False


def save_manifest(root: Path, manifest: Manifest) -> None:
    """Replace the folder's manifest atomically (it names the collection readers use)."""
    manifest.files = {}
    tmp = root / f".{FILENAME}.{uuid.uuid4().hex}"
    with tmp.open("w") as handle:
        handle.write(json.dumps(asdict(manifest), indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / FILENAME)


def load_manifest(root: Path) -> Manifest:
    manifest = Manifest.load(root)
    if manifest.vector_index.get("kind") != "milvus":
        raise SimqaError(f"{root} is not a Milvus-backed index")
    return manifest


def alias_for(root: Path) -> str:
    """The collection alias of an index folder: ``simqa_`` + its name, made Milvus-safe."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", Path(root).resolve().name)
    return f"simqa_{name}"[:200]


def description(manifest: Manifest) -> str:
    """What the collection itself records, so any reader can check it was built alike."""
    return json.dumps(
        {
            "simqa": {
                "model": manifest.model,
                "dim": manifest.dim,
                "embed_fields": manifest.embed_fields,
                "encoder": manifest.encoder,
            }
        }
    )


def check_collection(conn: Connection, collection: str, manifest: Manifest) -> None:
    """ModelMismatch when the collection was built with another model, dimension or text."""
    info = conn.call("describe_collection", collection)
    try:
        built = json.loads(info.get("description") or "{}")["simqa"]
    except (ValueError, KeyError, TypeError):
        raise SimqaError(
            f"collection {collection} at {conn.uri} was not written by simqa; refusing to use it"
        ) from None
    dim = next((f["params"].get("dim") for f in info["fields"] if f["name"] == "vector"), None)
    mine = (manifest.model, manifest.dim, manifest.embed_fields)
    theirs = (built.get("model"), int(dim or built.get("dim") or 0), built.get("embed_fields"))
    if mine != theirs:
        raise ModelMismatch(
            f"collection {collection} at {conn.uri} holds {theirs[1]}-dimensional vectors of "
            f"{theirs[0]} ({theirs[2]}), this index's manifest says {mine[1]}-dimensional "
            f"{mine[0]} ({mine[2]}); rebuild it with simqa build --milvus"
        )


# --- first builds ------------------------------------------------------------------------


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


# --- appends, updates and deletes ---------------------------------------------------------


def write(
    root: Path,
    records: Iterable[Consultation],
    *,
    delete: Iterable[str] = (),
    fixed: dict[str, Any] | None = None,
    min_score: float | str | None = "auto",
    progress: bool = False,
    batch_size: int = 64,
    wait: float = layout.DEFAULT_WAIT_SECONDS,
    hub_penalty: float | None = None,
) -> dict[str, int]:
    """Add or update ``records`` and delete ``delete`` ids; returns counts (added,
    updated, embedded, deleted, records). All or nothing (see the module's rules)."""
    root = layout.index_path(root)
    manifest = load_manifest(root)
    if hub_penalty:
        raise SimqaError("a Milvus index ranks by cosine: --hub-penalty is not available")
    refuse_changes(manifest, fixed or {}, root, manifest.vector_index.get("index_type"))
    conn = Connection(manifest.vector_index["uri"])
    collection = manifest.vector_index["collection"]
    with layout.writer_lock(root, wait):
        check_collection(conn, collection, manifest)
        undo(root, conn)
        counts = _apply(
            root,
            conn,
            collection,
            manifest,
            list(last_of_each_id(records)),
            list(dict.fromkeys(map(str, delete))),
            progress,
            batch_size,
        )
        if min_score != "auto":
            manifest.min_score = None if min_score is None else float(min_score)
            manifest.updated = now()
            save_manifest(root, manifest)
    return counts


def _apply(
    root: Path,
    conn: Connection,
    collection: str,
    manifest: Manifest,
    records: list[Consultation],
    delete: list[str],
    progress: bool,
    batch_size: int,
) -> dict[str, int]:
    fields = manifest.embed_fields
    wanted = {schema.vid_of(r.id): r for r in records}
    gone = {schema.vid_of(i): i for i in delete}
    before = {int(r["vid"]): r for r in _get_rows(conn, collection, [*wanted, *gone])}
    for vid, row in before.items():
        expected = wanted[vid].id if vid in wanted else gone[vid]
        if row["id"] != expected:
            raise SimqaError(f"ids {row['id']!r} and {expected!r} hash to the same Milvus key")
    vectors: dict[int, np.ndarray] = {}
    to_embed = []
    for vid, record in wanted.items():
        old = before.get(vid)
        if old is not None and old["text_hash"] == record.content_hash(fields):
            vectors[vid] = np.asarray(old["vector"], dtype=np.float32)  # same text: no model
        else:
            to_embed.append((vid, record))
    if to_embed:
        enc = shared_encoder(
            manifest.model, "auto" if manifest.encoder == "onnx" else manifest.encoder
        )
        texts = [r.embedding_text(fields) for _, r in to_embed]
        for (vid, _), vec in zip(
            to_embed, enc.encode(texts, batch_size=batch_size, progress=progress), strict=True
        ):
            vectors[vid] = vec
    rows = [schema.to_row(r, vectors[vid], fields) for vid, r in wanted.items()]
    deleting = [vid for vid in gone if vid in before and vid not in wanted]
    journal = {
        "collection": collection,
        "added": [vid for vid in wanted if vid not in before],
        "previous": [_plain(before[vid]) for vid in [*wanted, *deleting] if vid in before],
    }
    _write_json(root / UNDO, journal)
    try:
        _upsert(conn, collection, rows, manifest.dim)
        for start in range(0, len(deleting), 1000):
            conn.call("delete", collection, ids=deleting[start : start + 1000])
    except BaseException as exc:
        try:
            undo(root, conn)
        except SimqaError as again:
            raise SimqaError(
                f"{_line(exc)}; undoing it failed too ({_line(again)}): the next write to "
                f"{root} undoes it before anything else"
            ) from None
        if isinstance(exc, SimqaError):
            raise type(exc)(f"{exc}; the write was undone (the index holds what it held)") from None
        raise
    (root / UNDO).unlink(missing_ok=True)
    total = int(
        conn.call("query", collection, filter="", output_fields=["count(*)"])[0]["count(*)"]
    )
    return {
        "added": len(journal["added"]),
        "updated": len(wanted) - len(journal["added"]),
        "embedded": len(to_embed),
        "deleted": len(deleting),
        "records": total,
    }


def undo(root: Path, conn: Connection) -> bool:
    """Put back what an unfinished write changed (its journal); True if there was one."""
    path = root / UNDO
    if not path.exists():
        return False
    journal = json.loads(path.read_text())
    collection = journal["collection"]
    added = [int(v) for v in journal["added"]]
    for start in range(0, len(added), 1000):
        conn.call("delete", collection, ids=added[start : start + 1000])
    previous = journal["previous"]
    if previous:
        dim = len(previous[0]["vector"])
        _upsert(conn, collection, previous, dim)
    path.unlink()
    return True


def _upsert(conn: Connection, collection: str, rows: list[dict[str, Any]], dim: int) -> None:
    batch: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        batch.append(row)
        size += len(row["record"]) + 8 * dim + 512
        if size >= BATCH_BYTES:
            conn.call("upsert", collection, batch)
            batch, size = [], 0
    if batch:
        conn.call("upsert", collection, batch)


def _get_rows(conn: Connection, collection: str, vids: list[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for start in range(0, len(vids), 1000):
        chunk = vids[start : start + 1000]
        if chunk:
            rows.extend(conn.call("get", collection, ids=chunk, output_fields=ALL_FIELDS))
    return rows


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON-ready values (pymilvus hands back numpy floats and protobuf lists)."""
    out = {name: row[name] for name in ALL_FIELDS}
    out["vid"] = int(out["vid"])
    out["vector"] = [float(x) for x in out["vector"]]
    out["tags"] = [str(t) for t in out["tags"]]
    return out


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with tmp.open("w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)








def _line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
