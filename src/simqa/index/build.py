"""Writing an index: a first build, and appends, updates and deletes on a live one.

A first build writes a base (``index.segment``). Every later write holds the index's
writer lock, opens the newest version and publishes the next one: the same files, hard
linked, plus one delta segment holding what changed (the records added or updated, the
vectors of new texts, the vector ids of rows deleted or replaced, and with the hub penalty
on, the densities of the new vectors and of the old ones near what changed). So a write
costs the change, not the index; concurrent writers queue and none loses another's
records, and a writer killed at any moment leaves the last published version intact.

Deltas are folded into a new base by compaction (``index.compact``), off the request
path. A write folds at once (``compact.fold``) only when it must: with ``full=True``,
when it turns the hub penalty on (every density is then computed anew), or when nobody
compacted and the deltas passed the hard limits of ``index.compact``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import simqa.index.density as hubs
import simqa.index.layout as layout
import simqa.vectors as vector_indexes
from simqa.encode.encoder import DEFAULT_ENCODER, shared_encoder
from simqa.errors import SimqaError
from simqa.index.manifest import FILENAME, Manifest
from simqa.index.names import NAMES, write_names
from simqa.index.segment import RECORDS, Delta, delta_name, write_delta
from simqa.index.snapshot import DENSITY, EMBEDDING_IDS, EMBEDDINGS, Snapshot
from simqa.index.store import RecordStore
from simqa.index.writes import (
    DEFAULT_FIELDS,
    DEFAULT_RECALL,
    min_score_for,
    now,
    records_from,
    refuse_changes,
    simqa_version,
)
from simqa.records import Consultation
from simqa.vectors.base import VectorIndex
from simqa.vectors.tuning import tune_search_params

#: after a write, the densities of the nearest AFFECTED_DEPTH x k questions to each added
#: one are recomputed: beyond them a question's k nearest rarely change; REMOVED_DEPTH x k
#: around each removed one (a question in a sparse region can count a far one among its
#: k nearest, and deletes are few)
AFFECTED_DEPTH = 3
REMOVED_DEPTH = 10

#: one write of a batch: ("add", records) or ("delete", ids)
Write = tuple[str, Any]


def build_index(
    sources: Iterable[Consultation | str | Path],
    index: str | Path = "default",
    *,
    model: str | None = None,
    index_type: str | None = None,
    append: bool = False,
    recall: float | None = None,
    memory: int | None = None,
    fields: str | None = None,
    format: str | None = None,
    strict: bool = False,
    report: Any = None,
    progress: bool = False,
    batch_size: int = 64,
    encoder: str | None = None,
    min_score: float | str | None = "auto",
    hub_penalty: float | None = None,
    wait: float = layout.DEFAULT_WAIT_SECONDS,
) -> Path:
    """Build an index from records and/or source files, or with ``append=True`` add to
    (and update records of) an existing one; returns its folder.

    ``memory`` is a budget in bytes for the vector index; with ``index_type`` unset the
    type is chosen from the corpus size and that budget. ``min_score`` is recorded as the
    index's default threshold (``"auto"``: calibrated for the model, see
    ``simqa.encode.threshold``; None: none). ``hub_penalty`` is the weight of the density penalty
    (``simqa.index.density``; 0: off; None: keep an appended index's, the default for a new one).
    ``wait`` is how long to wait for another writer before giving up (IndexBusy).
    """
    if recall is not None and not 0 < recall <= 1:
        raise SimqaError(f"--recall must be in (0, 1], got {recall}")
    if hub_penalty is not None and not 0 <= hub_penalty <= 2:
        raise SimqaError(f"hub penalty must be between 0 and 2, got {hub_penalty}")
    if isinstance(min_score, str) and min_score != "auto":
        raise SimqaError(f'min_score must be a number, None or "auto", got {min_score!r}')
    root = layout.index_path(index)
    records = records_from(sources, format, strict, report)
    if append:
        fixed = {"model": model, "fields": fields, "index_type": index_type, "recall": recall,
                 "memory": memory, "encoder": encoder}  # fmt: skip
        write(root, records, fixed=fixed, min_score=min_score, hub_penalty=hub_penalty,
              progress=progress, batch_size=batch_size, wait=wait)  # fmt: skip
        return root
    if not layout.is_empty_or_ours(root):
        raise SimqaError(f"{root} exists and is not a simqa index; refusing to write into it")
    with layout.writer_lock(root, wait), layout.staged_version(root) as staging:
        _first_version(
            staging, records, model=model, index_type=index_type,
            recall=DEFAULT_RECALL if recall is None else recall, memory=memory,
            fields=fields or DEFAULT_FIELDS, progress=progress, batch_size=batch_size,
            encoder=encoder or DEFAULT_ENCODER, min_score=min_score,
            hub_penalty=hubs.DEFAULT_WEIGHT if hub_penalty is None else hub_penalty,
        )  # fmt: skip
    layout.sweep(root)
    return root


def write(
    root: Path,
    records: Iterable[Consultation],
    *,
    delete: Iterable[str] = (),
    **options: Any,
) -> dict[str, int]:
    """Add or update ``records``, then delete ``delete`` ids, as one new version of an
    existing index; returns counts (added, updated, embedded, deleted, records). Options
    as ``write_many``."""
    ids = list(delete)
    added, *deleted = write_many(root, [("add", records), *([("delete", ids)] if ids else [])],
                                 **options)  # fmt: skip
    return {**added, "deleted": deleted[0]["deleted"] if deleted else 0,
            "records": (deleted[0] if deleted else added)["records"]}  # fmt: skip


def write_many(
    root: Path,
    writes: Sequence[Write],
    *,
    fixed: dict[str, Any] | None = None,
    min_score: float | str | None = "auto",
    hub_penalty: float | None = None,
    progress: bool = False,
    batch_size: int = 64,
    wait: float = layout.DEFAULT_WAIT_SECONDS,
    full: bool = False,
    compact: bool = True,
) -> list[dict[str, Any]]:
    """Apply ``writes`` in order (``("add", records)``, ``("delete", ids)``) and publish
    them as one new version; returns each write's counts.

    ``fixed`` holds options a write cannot change (model, fields, index type...): given
    ones must match the index's, else the write is refused rather than ignored. ``full``
    publishes a whole new base (what every write did before delta segments) instead of a
    delta. ``compact`` lets the write fold or merge deltas itself when nobody compacted and
    they passed ``compact``'s hard limits.
    """
    import simqa.index.compact as compaction

    root = layout.index_path(root)
    layout.current_name(root)  # a missing index says so before any lock is taken
    with layout.writer_lock(root, wait):
        view = Snapshot.open(root)  # sizes and headers: only compaction reads every byte
        try:
            m = view.manifest
            refuse_changes(m, fixed or {}, root, m.vector_index.get("kind"))
            change = _Change(view)
            results = [change.apply(kind, payload) for kind, payload in writes]
            if not change.count:
                raise SimqaError("refusing to delete every consultation; build a new index instead")
            new_ids, new_vecs = _embed(view, change, progress=progress, batch_size=batch_size)
            penalty = _penalty(m, hub_penalty)
            delta = Delta(new_ids, new_vecs, change.row_vids(), change.deletes())
            recompute = bool(penalty) and not _densities_kept(m, penalty)
            if penalty and not recompute:
                delta.density, delta.overrides = _densities(view, delta, penalty)
            manifest = _next_manifest(view, change, penalty, min_score)
            how = "fold" if full or recompute else compaction.past_hard_limits(view, delta, compact)
            with layout.staged_version(root) as staging:
                if how is not None:
                    _rewrite(view, staging, change, delta, manifest, how, penalty, recompute)
                else:
                    link_files(view.dir, staging)
                    if change.pending or change.removed:
                        name = delta_name()
                        write_delta(staging / name, change.rows(), delta)
                        manifest.segments = [*m.segments, name]
                    manifest.save(staging, [(view.dir, m.files)])
            published = layout.current_name(root)  # still under the lock: ours
        finally:
            view.close()
    return [{**result, "version": published} for result in results]


def reembed(
    root: Path,
    model: str,
    *,
    record_model: str | None = None,
    min_score: float | None = None,
    hub_penalty: float | None = None,
    progress: bool = False,
    batch_size: int = 64,
    wait: float = layout.DEFAULT_WAIT_SECONDS,
) -> Path:
    """Embed every record of the newest version again with ``model`` and publish the result
    as the next version (``simqa adapt``): same records, fields, index type and recall
    target; the hub penalty kept unless ``hub_penalty`` is given. The manifest names
    ``record_model`` (e.g. ``models/<hash>``, see ``layout.model_location``) as its model.
    Returns the published version's folder."""
    root = layout.index_path(root)
    layout.current_version(root)
    with layout.writer_lock(root, wait):
        base = Snapshot.open(root, verify=True)
        try:
            m = base.manifest
            weight = (
                float(m.hub_penalty.get("weight", 0.0)) if hub_penalty is None else hub_penalty
            )
            with layout.staged_version(root) as staging:
                _first_version(
                    staging, (record for _vid, record in base.store.iter_records()),
                    model=model,
                    # the same kind: chosen again from the same count, or as --index-type chose it
                    index_type=m.vector_index.get("kind")
                    if m.index_reason.startswith("chosen with") else None,
                    recall=m.recall.get("target", DEFAULT_RECALL), memory=None,
                    fields=m.embed_fields, progress=progress, batch_size=batch_size,
                    encoder=DEFAULT_ENCODER if m.encoder == "onnx" else m.encoder,
                    min_score=min_score, hub_penalty=weight, record_model=record_model,
                    created=m.created,
                )  # fmt: skip
        finally:
            base.close()
        return layout.current_version(root)


def link_files(source: Path, target: Path, skip: Iterable[str] = (FILENAME,)) -> None:
    """Hard-link every file of the version ``source`` into ``target`` (a copy where the
    file system cannot link): published files never change, so versions share them."""
    leave = set(skip)
    for path in source.iterdir():
        if path.name in leave or not path.is_file():
            continue
        try:
            os.link(path, target / path.name)
        except OSError:  # another file system, or one without hard links
            shutil.copy2(path, target / path.name)


# --- a write's changes ------------------------------------------------------------------------


class _Change:
    """What a batch of writes does to a version, applied in order in memory: the rows to
    write (new ones with fresh vector ids, restated ones keeping theirs) and the vector ids
    of older rows it removes, with the counts every manifest carries."""

    def __init__(self, view: Snapshot) -> None:
        self.view = view
        self.fields = view.manifest.embed_fields
        self.next_vid = view.manifest.next_vid or view.store.stores[0].next_vid()
        self.count = len(view.store)
        self.sources = dict(view.manifest.sources)
        #: record id -> (vid, record, text hash, new in this write)
        self.pending: dict[str, tuple[int, Consultation, str, bool]] = {}
        self.removed: set[int] = set()  # vids of the version's rows deleted or replaced
        self.gone: set[str] = set()  # record ids deleted in this write
        self._looked_up: dict[str, tuple[int, Consultation, str] | None] = {}

    def apply(self, kind: str, payload: Any) -> dict[str, Any]:
        if kind == "add":
            return self.add(payload)
        if kind == "delete":
            return self.delete(payload)
        raise SimqaError(f"unknown write {kind!r}: add or delete")

    def _current(self, record_id: str) -> tuple[int, Consultation, str, bool] | None:
        if record_id in self.pending:
            return self.pending[record_id]
        if record_id in self.gone:
            return None
        if record_id not in self._looked_up:
            self._looked_up[record_id] = self.view.store.get(record_id)
        found = self._looked_up[record_id]
        return None if found is None else (*found, False)

    def _prefetch(self, ids: list[str]) -> None:
        todo = [i for i in dict.fromkeys(ids) if i not in self._looked_up]
        if todo:
            found = self.view.store.get_many(todo)
            self._looked_up.update({i: found.get(i) for i in todo})

    def _count_source(self, record: Consultation, by: int) -> None:
        key = record.source or "(none)"
        self.sources[key] = self.sources.get(key, 0) + by
        if self.sources[key] <= 0:
            del self.sources[key]

    def add(self, records: Iterable[Consultation]) -> dict[str, int]:
        records = list(records)
        self._prefetch([r.id for r in records])
        added = updated = embedded = 0
        for record in records:
            digest = record.content_hash(self.fields)
            current = self._current(record.id)
            self.gone.discard(record.id)
            if current is None:
                self.pending[record.id] = (self._new_vid(), record, digest, True)
                added, embedded, self.count = added + 1, embedded + 1, self.count + 1
            else:
                vid, old, old_digest, new = current
                self._count_source(old, -1)
                updated += 1
                if old_digest == digest:  # same text: same vector id and vector
                    self.pending[record.id] = (vid, record, digest, new)
                else:
                    if not new:
                        self.removed.add(vid)
                    self.pending[record.id] = (self._new_vid(), record, digest, True)
                    embedded += 1
            self._count_source(record, +1)
        return {"added": added, "updated": updated, "embedded": embedded, "deleted": 0,
                "records": self.count}  # fmt: skip

    def delete(self, ids: Iterable[str]) -> dict[str, Any]:
        ids = [str(i) for i in ids]
        self._prefetch(ids)
        deleted, missing = 0, []
        for record_id in dict.fromkeys(ids):
            current = self._current(record_id)
            if current is None:
                missing.append(record_id)
                continue
            vid, record, _digest, new = current
            if not new:
                self.removed.add(vid)
            self.pending.pop(record_id, None)
            self.gone.add(record_id)
            self._count_source(record, -1)
            deleted, self.count = deleted + 1, self.count - 1
        return {"deleted": deleted, "missing": missing, "records": self.count}

    def _new_vid(self) -> int:
        self.next_vid += 1
        return self.next_vid - 1

    def rows(self) -> list[tuple[int, Consultation, str]]:
        """The rows to write, by vector id."""
        return sorted((vid, r, h) for vid, r, h, _new in self.pending.values())

    def row_vids(self) -> np.ndarray:
        return np.array(sorted(vid for vid, *_ in self.pending.values()), dtype=np.int64)

    def to_embed(self) -> list[tuple[int, Consultation]]:
        return sorted((vid, r) for vid, r, _h, new in self.pending.values() if new)

    def deletes(self) -> np.ndarray:
        return np.array(sorted(self.removed), dtype=np.int64)


def _embed(
    view: Snapshot, change: _Change, *, progress: bool, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of the new texts, by vector id; the model is loaded only when there are any."""
    m = view.manifest
    todo = change.to_embed()
    ids = np.array([vid for vid, _ in todo], dtype=np.int64)
    if not todo:
        return ids, np.zeros((0, m.dim), dtype=np.float32)
    model = layout.model_location(view.dir.parent, m.model)
    enc = shared_encoder(model, "auto" if m.encoder == "onnx" else m.encoder)
    m.check_encoder(enc)  # appended vectors must be computed as the stored ones were
    vectors = enc.encode([r.embedding_text(m.embed_fields) for _, r in todo],
                         batch_size=batch_size, progress=progress)  # fmt: skip
    return ids, np.ascontiguousarray(vectors, dtype=np.float32)


def _penalty(m: Manifest, hub_penalty: float | None) -> dict[str, Any]:
    if hub_penalty is None:
        return dict(m.hub_penalty)
    return {"weight": hub_penalty, "k": hubs.DEFAULT_K} if hub_penalty > 0 else {}


def _densities_kept(m: Manifest, penalty: dict[str, Any]) -> bool:
    """True when the version's densities serve ``penalty`` (they are kept up to date while
    the penalty is on, whatever its weight; off, they go stale)."""
    return bool(m.hub_penalty) and int(m.hub_penalty["k"]) == int(penalty["k"])


def _densities(
    view: Snapshot, delta: Delta, penalty: dict[str, Any]
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The densities of the new vectors, and new ones for the version's vectors near what
    came or went (only those can have new neighbours), searched in the version as it will
    be after this write."""
    after = view.with_delta(delta)
    search, k = after.vectors.search, int(penalty["k"])
    own = hubs.neighbour_density(search, delta.vectors, delta.ids, k)
    found = [np.zeros(0, dtype=np.int64)]
    if len(delta.ids):
        found.append(search(delta.vectors, AFFECTED_DEPTH * k)[1].ravel())
    if len(delta.deletes):
        found.append(search(view.vectors_of(delta.deletes), REMOVED_DEPTH * k)[1].ravel())
    near = np.unique(np.concatenate(found))
    near = near[(near >= 0) & ~np.isin(near, delta.ids)]
    values = np.zeros(0, dtype=np.float32)
    if len(near):
        values = hubs.neighbour_density(search, after.vectors_of(near), near, k)
    return own, (near, values.astype(np.float32))


def _next_manifest(
    view: Snapshot, change: _Change, penalty: dict[str, Any], min_score: float | str | None
) -> Manifest:
    m = view.manifest
    return Manifest(
        model=m.model, dim=m.dim, count=change.count, vector_index=dict(m.vector_index),
        embed_fields=m.embed_fields, encoder=m.encoder, encoder_recipe=m.encoder_recipe,
        metric=m.metric, index_reason=m.index_reason,
        min_score=min_score_for(min_score, m.model, m), hub_penalty=penalty, recall=m.recall,
        created=m.created, updated=now(), sources=dict(sorted(change.sources.items(),
                                                              key=lambda kv: -kv[1])),
        simqa_version=simqa_version(), segments=list(m.segments), next_vid=change.next_vid,
        base=dict(m.base) or {"records": len(view.base.emb_ids), "created": m.updated},
    )  # fmt: skip


def _rewrite(
    view: Snapshot,
    staging: Path,
    change: _Change,
    delta: Delta,
    manifest: Manifest,
    how: str,
    penalty: dict[str, Any],
    recompute: bool,
) -> None:
    """Publish this write folded with the version into a new base (``how="fold"``), or
    with the version's deltas merged into one (``"merge"``)."""
    from simqa.index.compact import fold, merge

    scratch = staging / delta_name()
    write_delta(scratch, change.rows(), delta)
    store = RecordStore(scratch, readonly=True)
    try:
        after = view.with_delta(Delta.load(scratch, view.base.dim), store)
        if how == "fold":
            manifest.vector_index, manifest.base = fold(after, staging, penalty,
                                                        recompute=recompute)  # fmt: skip
            manifest.segments = []
        else:
            name = delta_name()
            merge(after, staging / name)
            link_files(view.dir, staging, skip=[FILENAME, *view.manifest.segments])
            manifest.segments = [name]
    finally:
        store.close()
        scratch.unlink()
    manifest.save(staging, [(view.dir, view.manifest.files)])


# --- a first build ----------------------------------------------------------------------------


def _first_version(
    staging: Path,
    records: Iterable[Consultation],
    *,
    model: str | None,
    index_type: str | None,
    recall: float,
    memory: int | None,
    fields: str,
    progress: bool,
    batch_size: int,
    encoder: str,
    min_score: float | str | None,
    hub_penalty: float,
    record_model: str | None = None,
    created: str | None = None,
) -> None:
    enc = shared_encoder(model, encoder)
    store = RecordStore(staging / RECORDS)
    to_embed, _stale = store.upsert(records, fields)
    if not len(store):
        raise SimqaError("no records to index: the sources held no valid consultations")
    ids = np.array([vid for vid, _ in to_embed], dtype=np.int64)
    vectors = enc.encode(
        [r.embedding_text(fields) for _, r in to_embed], batch_size=batch_size, progress=progress
    )
    kind, params, reason = vector_indexes.choose(len(ids), enc.dim, memory)
    if index_type:
        params = {} if index_type != kind else params
        kind, reason = index_type, f"chosen with --index-type {index_type}"
    index = vector_indexes.create(kind, enc.dim, **params)
    index.add(ids, vectors)
    if kind == "flat":
        recall_info: dict[str, Any] = {"target": recall, "recall": 1.0, "exact": True}
    else:
        recall_info = tune_search_params(index, vectors, ids, target=recall)
    penalty = {"weight": hub_penalty, "k": hubs.DEFAULT_K} if hub_penalty > 0 else {}
    stamp = now()
    next_vid = store.next_vid()
    save_base(
        staging, store, index, ids, vectors, penalty,
        Manifest(
            model=record_model or enc.name, dim=enc.dim, count=0, vector_index={},
            embed_fields=fields, encoder=enc.kind, encoder_recipe=enc.recipe, index_reason=reason,
            min_score=min_score_for(min_score, enc.name, None), hub_penalty=penalty,
            recall=recall_info, created=created or stamp, updated=stamp, next_vid=next_vid,
        ),
    )  # fmt: skip


def save_base(
    staging: Path,
    store: RecordStore,
    index: VectorIndex,
    ids: np.ndarray,
    vectors: np.ndarray,
    penalty: dict[str, Any],
    manifest: Manifest,
) -> None:
    """Write a new base's files into ``staging`` (stored vectors sorted by id, densities
    computed here, the vector index, the name postings), then the manifest."""
    order = None if np.all(ids[1:] > ids[:-1]) else np.argsort(ids, kind="stable")
    if order is not None:
        ids, vectors = ids[order], vectors[order]
    ids = np.ascontiguousarray(ids)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    np.save(staging / EMBEDDING_IDS, ids)
    np.save(staging / EMBEDDINGS, vectors)
    if penalty:
        density = hubs.neighbour_density(index.search, vectors, ids, penalty["k"])
        np.save(staging / DENSITY, density.astype(np.float32))
    index.save(staging)
    manifest.vector_index = index.config
    manifest.count = len(store)
    manifest.sources = store.counts_by("source")
    manifest.simqa_version = simqa_version()
    manifest.base = {"records": len(store), "created": manifest.updated}
    write_names(store, manifest.embed_fields, staging / NAMES)
    store.close()
    manifest.save(staging)
