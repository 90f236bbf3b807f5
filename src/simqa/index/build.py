"""Writing an index: a first build, and appends, updates and deletes on a live one.

Every write holds the index's writer lock (``layout.writer_lock``), starts from the
newest published version, writes a complete new version into a staging folder and
publishes it atomically, so concurrent writers queue and none loses another's records,
and a writer killed at any moment leaves the last published version intact.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

import simqa.index.density as hubs
import simqa.index.layout as layout
import simqa.vectors as vector_indexes
from simqa.encode.encoder import DEFAULT_ENCODER, shared_encoder
from simqa.errors import SimqaError
from simqa.index.manifest import Manifest
from simqa.index.snapshot import DENSITY, EMBEDDING_IDS, EMBEDDINGS, RECORDS, Snapshot
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
#: or removed one are recomputed: beyond them a question's k nearest rarely change
AFFECTED_DEPTH = 3


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
    return root


def write(
    root: Path,
    records: Iterable[Consultation],
    *,
    delete: Iterable[str] = (),
    fixed: dict[str, Any] | None = None,
    min_score: float | str | None = "auto",
    hub_penalty: float | None = None,
    progress: bool = False,
    batch_size: int = 64,
    wait: float = layout.DEFAULT_WAIT_SECONDS,
) -> dict[str, int]:
    """Add or update ``records`` and delete ``delete`` ids, as one new version of an
    existing index; returns counts (added, updated, embedded, deleted, records).

    ``fixed`` holds options a write cannot change (model, fields, index type...): given
    ones must match the index's, else the write is refused rather than ignored.
    """
    root = layout.index_path(root)
    layout.current_version(root)  # a missing index says so before any lock is taken
    with layout.writer_lock(root, wait):
        base = Snapshot(layout.current_version(root), verify=True)  # the newest, whole
        refuse_changes(base.manifest, fixed or {}, root, base.manifest.vector_index.get("kind"))
        with layout.staged_version(root) as staging:
            counts = _next_version(
                base, staging, records, list(delete), min_score=min_score,
                hub_penalty=hub_penalty, progress=progress, batch_size=batch_size,
            )  # fmt: skip
            base.close()
    return counts


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
        base = Snapshot(layout.current_version(root), verify=True)
        m = base.manifest
        weight = float(m.hub_penalty.get("weight", 0.0)) if hub_penalty is None else hub_penalty
        with layout.staged_version(root) as staging:
            _first_version(
                staging, (record for _vid, record in base.store.iter_records()), model=model,
                # the same kind: chosen again from the same count, or as --index-type chose it
                index_type=m.vector_index.get("kind")
                if m.index_reason.startswith("chosen with") else None,
                recall=m.recall.get("target", DEFAULT_RECALL), memory=None,
                fields=m.embed_fields, progress=progress, batch_size=batch_size,
                encoder=DEFAULT_ENCODER if m.encoder == "onnx" else m.encoder,
                min_score=min_score, hub_penalty=weight, record_model=record_model,
                created=m.created,
            )  # fmt: skip
            base.close()
        return layout.current_version(root)




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
    _save(
        staging, store, index, ids, vectors, None, penalty,
        Manifest(
            model=record_model or enc.name, dim=enc.dim, count=0, vector_index={},
            embed_fields=fields, encoder=enc.kind, encoder_recipe=enc.recipe, index_reason=reason,
            min_score=min_score_for(min_score, enc.name, None), hub_penalty=penalty,
            recall=recall_info, created=created or stamp, updated=stamp,
        ),
    )  # fmt: skip


def _next_version(
    base: Snapshot,
    staging: Path,
    records: Iterable[Consultation],
    delete: list[str],
    *,
    min_score: float | str | None,
    hub_penalty: float | None,
    progress: bool,
    batch_size: int,
) -> dict[str, int]:
    m = base.manifest
    model = layout.model_location(base.dir.parent, m.model)
    enc = shared_encoder(model, "auto" if m.encoder == "onnx" else m.encoder)
    m.check_encoder(enc)  # appended vectors must be computed as the stored ones were
    store = base.store.copy_to(staging / RECORDS)
    before = len(store)
    incoming = _Counted(records)
    to_embed, stale = store.upsert(incoming, m.embed_fields)
    added = len(store) - before
    deleted = store.delete(delete)
    if not len(store):
        raise SimqaError("refusing to delete every consultation; build a new index instead")
    gone = np.array(stale + deleted, dtype=np.int64)
    new_ids = np.array([vid for vid, _ in to_embed], dtype=np.int64)
    new_vecs = enc.encode(
        [r.embedding_text(m.embed_fields) for _, r in to_embed],
        batch_size=batch_size, progress=progress,
    )  # fmt: skip
    index = vector_indexes.load(base.dir, m.vector_index, mmap=False)
    if len(gone):
        index.remove(gone)
    if len(new_ids):
        index.add(new_ids, new_vecs)
    keep = ~np.isin(base.emb_ids, gone)
    ids = np.concatenate([np.asarray(base.emb_ids)[keep], new_ids])
    kept = np.asarray(base.emb)[keep]  # one copy of the stored vectors, not two
    vectors = np.concatenate([kept, new_vecs]) if len(new_vecs) else kept
    old_density = None
    penalty = m.hub_penalty if hub_penalty is None else (
        {"weight": hub_penalty, "k": hubs.DEFAULT_K} if hub_penalty > 0 else {}
    )  # fmt: skip
    compacted = index.needs_compaction()
    if compacted:
        index.compact(ids, vectors)
    if penalty and penalty == m.hub_penalty and base.density is not None and not compacted:
        # only questions near what came or went can have new neighbours: recompute those
        old_density = np.concatenate(
            [np.asarray(base.density)[keep], np.full(len(new_ids), np.nan, np.float32)]
        )
        changed = np.concatenate([new_vecs, np.asarray(base.emb)[~keep]])
        if len(changed):
            _s, near = index.search(changed, AFFECTED_DEPTH * int(penalty["k"]))
            old_density[np.isin(ids, near)] = np.nan
    manifest = Manifest(
        model=m.model, dim=m.dim, count=0, vector_index={}, embed_fields=m.embed_fields,
        encoder=m.encoder, encoder_recipe=m.encoder_recipe, index_reason=m.index_reason,
        min_score=min_score_for(min_score, m.model, m), hub_penalty=penalty, recall=m.recall,
        created=m.created, updated=now(),
    )  # fmt: skip
    _save(staging, store, index, ids, vectors, old_density, penalty, manifest, base)
    return {
        "added": added,
        "updated": incoming.count - added,
        "embedded": len(new_ids),
        "deleted": len(deleted),
        "records": manifest.count,
    }


def _save(
    staging: Path,
    store: RecordStore,
    index: VectorIndex,
    ids: np.ndarray,
    vectors: np.ndarray,
    density: np.ndarray | None,
    penalty: dict[str, Any],
    manifest: Manifest,
    base: Snapshot | None = None,
) -> None:
    """Write a version's files into ``staging``: stored vectors sorted by id, densities
    (``density`` NaN where still to compute), the vector index, then the manifest (files
    the vector index hard-linked from ``base`` keep their verified checksums)."""
    order = None if np.all(ids[1:] > ids[:-1]) else np.argsort(ids, kind="stable")
    if order is not None:
        ids, vectors = ids[order], vectors[order]
    ids = np.ascontiguousarray(ids)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    np.save(staging / EMBEDDING_IDS, ids)
    np.save(staging / EMBEDDINGS, vectors)
    if penalty:
        if density is None:
            density = hubs.neighbour_density(index.search, vectors, ids, penalty["k"])
        else:
            density = density if order is None else density[order]
            todo = np.flatnonzero(np.isnan(density))
            if len(todo):
                density[todo] = hubs.neighbour_density(
                    index.search, vectors[todo], ids[todo], penalty["k"]
                )
        np.save(staging / DENSITY, density.astype(np.float32))
    index.save(staging)
    manifest.vector_index = index.config
    manifest.count = len(store)
    manifest.sources = store.counts_by("source")
    manifest.simqa_version = simqa_version()
    store.close()
    if base is None:
        manifest.save(staging)
    else:
        manifest.save(staging, base.dir, base.manifest.files)


class _Counted:
    """Counts the records an upsert consumed (to tell updates from additions)."""

    def __init__(self, records: Iterable[Consultation]) -> None:
        self.records, self.count = records, 0

    def __iter__(self) -> Iterator[Consultation]:
        for record in self.records:
            self.count += 1
            yield record
