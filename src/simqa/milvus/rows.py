"""Appends, updates and deletes on a Milvus-backed index, undone as a whole if they fail.

One writer at a time per index folder: the folder's OS lock (``layout.writer_lock``). It
serialises writers on one machine (or sharing the folder over a file system with working
locks); writers on different machines are not serialised: run writes from one place (e.g.
one ``simqa serve`` with a write token), readers may be anywhere.

Milvus has no multi-row transactions, so readers may see a write's first batches before it
returns. Before touching a row the writer saves the row's previous state in an undo
journal; if the write fails it puts every touched row back and removes the rows it added,
so a failed append leaves exactly the previous records. A writer killed mid-write leaves
the journal, and the next writer undoes it first. On return, every process reading through
the same Milvus sees the write (collections are created with Strong consistency).
"""


from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

import simqa.index.layout as layout
import simqa.milvus.folder as folder
import simqa.milvus.schema as schema
from simqa.encode.encoder import shared_encoder
from simqa.errors import SimqaError
from simqa.index.manifest import Manifest
from simqa.index.writes import (
    last_of_each_id,
    now,
    refuse_changes,
)
from simqa.milvus.client import Connection
from simqa.milvus.folder import (
    ALL_FIELDS,
    UNDO,
    check_collection,
    first_line,
    load_manifest,
    save_manifest,
    write_json,
)
from simqa.records import Consultation


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
    write_json(root / UNDO, journal)
    try:
        _upsert(conn, collection, rows, manifest.dim)
        for start in range(0, len(deleting), 1000):
            conn.call("delete", collection, ids=deleting[start : start + 1000])
    except BaseException as exc:
        try:
            undo(root, conn)
        except SimqaError as again:
            raise SimqaError(
                f"{first_line(exc)}; undoing it failed too ({first_line(again)}): the next "
                f"write to {root} undoes it before anything else"
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
        if size >= folder.BATCH_BYTES:  # read at each write: a test slows appends by it
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
