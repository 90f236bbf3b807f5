"""Compaction: fold the delta segments into a new base, or merge them into one delta.

Writes add delta segments (``index.build``); searching them is exact, so it costs more
per vector than the base's approximate index, and every segment is one more SQLite file a
record look-up may visit. Compaction keeps both small:

- **major**: when the deltas hold ``DELTA_RECORDS`` live records or more, or the rows
  they deleted from the base pass ``DEAD_SHARE`` of it, a new base is built from the
  version (records, vector index, stored vectors, densities); ``fold``.
- **minor**: past ``MERGE_SEGMENTS`` deltas, they are merged into one (``merge``).

It runs off the request path: in a server's writer process after a write, or as
``simqa compact``. It does not hold the writer lock while it works, only to publish: it
opens the live version as a reader does (verifying every checksum), builds the new base
in a ``.compacting-*`` folder, then, under the writer lock, puts on top of it the delta
segments writers published meanwhile (vector ids never change, so their records, vectors
and deletions mean the same on the new base) and publishes. A compaction killed at any
moment leaves the last published version as it was; the next writer removes its folder.
If the index was rebuilt meanwhile (``simqa build`` without ``--append``, ``simqa
adapt``), the compaction's work is thrown away.

A write folds or merges itself only past the hard limits (``HARD_*``): when nobody
compacts (library and command-line writes, no server), reads stay bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

import simqa.index.density as hubs
import simqa.index.layout as layout
import simqa.vectors as vector_indexes
from simqa.errors import IndexBusy
from simqa.index.manifest import Manifest, files_of
from simqa.index.names import NAMES, write_names
from simqa.index.segment import (
    DENSITY,
    EMBEDDING_IDS,
    EMBEDDINGS,
    RECORDS,
    Delta,
    delta_name,
    member,
    write_delta,
)
from simqa.index.snapshot import Snapshot
from simqa.index.store import _COLUMNS, RecordStore
from simqa.index.writes import now

#: fold the deltas into a new base at this many live records in them: an exact search of
#: 2,000 vectors is ~0.1 ms a query (a matrix-vector product of 3 MB)
DELTA_RECORDS = 2_000
#: ... or when the rows they deleted or replaced pass this share of the base's
DEAD_SHARE = 0.10
#: merge the deltas into one past this many (a record look-up visits each)
MERGE_SEGMENTS = 8
#: a write folds by itself past these (nobody compacted), or merges the deltas
HARD_DELTA_RECORDS = 5 * DELTA_RECORDS
HARD_DEAD_SHARE = 0.25
HARD_SEGMENTS = 4 * MERGE_SEGMENTS
#: vectors copied per step when a base's stored vectors are written (bounded memory)
_CHUNK = 65_536
_COPY = ", ".join(("vid", *_COLUMNS, "text_hash", "ask_iso"))


def due(view: Snapshot) -> str | None:
    """What compaction a version needs: "major", "minor" or None."""
    base_rows = max(len(view.base.emb_ids), 1)
    if view.delta_records >= DELTA_RECORDS or len(view.base_dead) >= DEAD_SHARE * base_rows:
        return "major"
    if len(view.manifest.segments) > MERGE_SEGMENTS:
        return "minor"
    return None


def past_hard_limits(view: Snapshot, delta: Delta, allowed: bool = True) -> str | None:
    """What a write adding ``delta`` to ``view`` must do itself ("fold", "merge") because
    the deltas would pass the hard limits; None: add the delta."""
    if not allowed:
        return None
    records = view.delta_records + len(delta.rows)
    dead = len(view.base_dead) + int(view.base.has(delta.deletes).sum())
    if records > HARD_DELTA_RECORDS or dead > HARD_DEAD_SHARE * max(len(view.base.emb_ids), 1):
        return "fold"
    if len(view.manifest.segments) + 1 > HARD_SEGMENTS:
        return "merge"
    return None


def compact(
    root: Path | str,
    *,
    force: bool = True,
    kind: str | None = None,
    wait: float = layout.DEFAULT_WAIT_SECONDS,
    queue: bool = True,
    pause: Any = None,
) -> dict[str, Any]:
    """Compact the index at ``root``: fold its deltas into a new base (``force``: whenever
    there are any; else only as ``due`` says, merging them when that is enough; ``kind``
    "major" or "minor": that, whenever there are deltas). Returns what was done.

    ``wait`` is how long to wait for the writer lock to publish (IndexBusy after it) and,
    with ``queue``, for another compaction to end (else none is done); ``pause`` (tests)
    is called once the new base is built, before it is published."""
    root = layout.index_path(root)
    started = time.perf_counter()
    with layout.compaction_lock(root, wait if queue else 0) as held:
        if not held and not queue:
            return {"compacted": False, "reason": "another compaction is at work"}
        if not held:
            raise IndexBusy(f"another compaction of {root} is at work; gave up after {wait:g} s")
        view = Snapshot.open(root, verify=True)  # the base is read whole: check every byte
        try:
            if kind is None:
                kind = due(view)
                if force and (view.manifest.segments or len(view.base_dead)):
                    kind = "major"
            elif not view.manifest.segments:
                kind = None
            if kind is None:
                return {"compacted": False, "reason": "nothing to compact",
                        "version": view.dir.name}  # fmt: skip
            staging = root / f"{layout.COMPACTING_PREFIX}{uuid.uuid4().hex}"
            staging.mkdir()
            try:
                done = _compact_into(root, view, staging, kind, wait, pause)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        finally:
            view.close()
    done["seconds"] = round(time.perf_counter() - started, 3)
    return done


def _compact_into(
    root: Path, view: Snapshot, staging: Path, kind: str, wait: float, pause: Any
) -> dict[str, Any]:
    m = view.manifest
    if kind == "major":
        config, base = fold(view, staging, m.hub_penalty)
        merged: list[str] = []
    else:
        config, base = dict(m.vector_index), dict(m.base)
        merged = [delta_name()]
        merge(view, staging / merged[0])
        for name in m.files:
            if name not in m.segments:
                os.link(view.dir / name, staging / name)
    for path in staging.iterdir():  # synced now, not under the writer lock
        if path.stat().st_nlink == 1:
            layout.fsync_file(path)
    known = files_of(staging, [(view.dir, m.files)])
    if pause is not None:
        pause()
    with layout.writer_lock(root, wait):
        current = Snapshot.open(root)
        try:
            n = len(m.segments)
            same_base = os.path.samefile(current.dir / RECORDS, view.dir / RECORDS)
            if not same_base or current.manifest.segments[:n] != m.segments:
                shutil.rmtree(staging, ignore_errors=True)
                return {"compacted": False, "reason": "the index was rebuilt meanwhile",
                        "version": current.dir.name}  # fmt: skip
            later = current.manifest.segments[n:]
            for name in later:  # writes published while compacting: replayed on the new base
                os.link(current.dir / name, staging / name)
            c = current.manifest
            manifest = Manifest(**{**vars(c), "vector_index": config, "base": base,
                                   "segments": [*merged, *later], "files": {}})  # fmt: skip
            manifest.save(staging, [(staging, known), (current.dir, c.files)])
            version = layout.publish(root, staging)
        finally:
            current.close()
    return {
        "compacted": True,
        "kind": kind,
        "version": version.name,
        "folded_records": view.delta_records,
        "folded_deletes": len(view.base_dead),
        "segments_before": n,
        "replayed_segments": len(later),
        "base_records": base.get("records"),
    }


def fold(
    view: Snapshot, staging: Path, penalty: dict[str, Any], *, recompute: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write into ``staging`` a base holding everything ``view`` holds: its base's records
    less those its deltas deleted or restated, plus every live delta row; the base's vector
    index less the deleted vectors, plus the deltas' (rebuilt when the dead pass the
    backend's bound); stored vectors and, with ``penalty``, densities (``recompute``: all
    computed anew); the name postings. Returns the vector index's config and the base's
    figures."""
    _fold_records(view, staging / RECORDS)
    records = RecordStore(staging / RECORDS, readonly=True)
    try:
        write_names(records, view.manifest.embed_fields, staging / NAMES)
    finally:
        records.close()
    m = view.manifest
    index = vector_indexes.load(view.dir, m.vector_index, mmap=False)
    if len(view.base_dead):
        index.remove(view.base_dead)
    if len(view.d_ids):
        index.add(view.d_ids, view.d_vecs)
    ids = np.ascontiguousarray(view.all_ids())
    vectors = np.lib.format.open_memmap(
        staging / EMBEDDINGS, mode="w+", dtype=np.float32, shape=(len(ids), view.base.dim)
    )
    for start in range(0, len(ids), _CHUNK):
        vectors[start : start + _CHUNK] = view.vectors_of(ids[start : start + _CHUNK])
    vectors.flush()
    np.save(staging / EMBEDDING_IDS, ids)
    if index.needs_compaction():
        index.compact(ids, vectors)
    if penalty:
        if recompute or not view.has_density:
            density = hubs.neighbour_density(index.search, vectors, ids, int(penalty["k"]))
        else:
            density = np.concatenate(
                [view.density_of(ids[s : s + _CHUNK]) for s in range(0, len(ids), _CHUNK)]
            ) if len(ids) else np.zeros(0, dtype=np.float32)  # fmt: skip
        np.save(staging / DENSITY, np.asarray(density, dtype=np.float32))
    del vectors
    index.save(staging)
    return index.config, {"records": len(ids), "created": now()}


def _fold_records(view: Snapshot, path: Path) -> None:
    """The base's records with the deltas applied: a copy of its database, hidden rows
    deleted, each delta's live rows copied in by SQL (attached read-only)."""
    view.stores[0].copy_to(path).close()
    db = sqlite3.connect(f"file:{quote(str(path.resolve()))}", uri=True)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        hidden = json.dumps(view.base_hidden.tolist())
        with db:
            db.execute("DELETE FROM records WHERE vid IN (SELECT value FROM json_each(?))",
                       (hidden,))  # fmt: skip
            db.execute("DELETE FROM tags WHERE vid IN (SELECT value FROM json_each(?))", (hidden,))
        _copy_rows(db, view)
        db.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'records'",
            (_next_vid(view) - 1,),
        )
        db.commit()
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        if free > pages // 4:
            db.execute("VACUUM")
    finally:
        db.close()


def _copy_rows(db: sqlite3.Connection, view: Snapshot) -> None:
    """Copy every delta's live rows (and their tags) into the database ``db``."""
    for store, delta, hidden in zip(view.stores[1:], view.deltas, view.hidden[1:], strict=True):
        live = delta.rows[~member(hidden, delta.rows)] if len(hidden) else delta.rows
        if not len(live):
            continue
        db.execute("ATTACH DATABASE ? AS delta",
                   (f"file:{quote(str(Path(store.path).resolve()))}?mode=ro&immutable=1",))
        try:
            keep = json.dumps(live.tolist())
            with db:
                db.execute(
                    f"INSERT INTO records ({_COPY}) SELECT {_COPY} FROM delta.records "
                    "WHERE vid IN (SELECT value FROM json_each(?))", (keep,)
                )  # fmt: skip
                db.execute(
                    "INSERT INTO tags (vid, tag) SELECT vid, tag FROM delta.tags "
                    "WHERE vid IN (SELECT value FROM json_each(?))", (keep,)
                )  # fmt: skip
        finally:
            db.execute("DETACH DATABASE delta")


def merge(view: Snapshot, path: Path) -> None:
    """Write ``view``'s deltas as one delta segment at ``path``: their live rows, their
    live vectors and densities, the base rows they deleted, the base densities they changed."""
    d_density = view.d_density if view.has_density else None
    write_delta(path, [], Delta(view.d_ids, view.d_vecs, view.d_ids, view.base_dead,
                                d_density, view.overrides))  # fmt: skip
    db = sqlite3.connect(f"file:{quote(str(path.resolve()))}", uri=True)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        _copy_rows(db, view)
        db.commit()
    finally:
        db.close()


def _next_vid(view: Snapshot) -> int:
    return view.manifest.next_vid or view.stores[0].next_vid()


# --- in a server's writer process ------------------------------------------------------------

_BACKGROUND: dict[str, threading.Thread] = {}


def in_background(
    root: Path | str, after: Any = None, view: Snapshot | None = None
) -> threading.Thread | None:
    """Start a compaction in a thread of this process when the live version needs one and
    none is running (here or elsewhere); returns the thread, or None. ``after`` is called
    when it ends (say, to move an open index off the version it replaced, so that the old
    base can go although no more writes come); ``view``: the live version, if open."""
    root = layout.index_path(root)
    key = str(root.resolve())
    running = _BACKGROUND.get(key)
    if running is not None and running.is_alive():
        return None
    if view is not None:
        needed = due(view)
    else:
        try:
            view = Snapshot.open(root)
        except Exception:  # a failed check compacts nothing; the write stands
            return None
        try:
            needed = due(view)
        finally:
            view.close()
    if needed is None or layout.compaction_running(root):
        return None

    def run() -> None:
        with contextlib.suppress(Exception):  # retried after the next write
            compact(root, force=False, queue=False)
            if after is not None:
                after()

    thread = threading.Thread(target=run, name=f"simqa-compact-{root.name}", daemon=True)
    _BACKGROUND[key] = thread
    thread.start()
    return thread
