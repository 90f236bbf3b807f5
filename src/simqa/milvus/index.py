"""``MilvusIndex``: the index interface (``simqa.index.protocol``) answered from a Milvus
collection.

It keeps no local state but the manifest: every search is one Milvus request returning
the hits' records with their scores, filters run inside Milvus as boolean expressions,
and writes made by any process through the same Milvus are seen by the next search
(Strong consistency). The ranking is the embedded index's: by cosine, each question shown
once, the query's own left out, and a filter never hides a match: a filter keeping at
most ``EXACT_SUBSET_MAX`` records is searched exhaustively, a wider one looks 1/share
times further, and a search that comes back short looks further until it is exhaustive.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Unpack

import numpy as np

import simqa.index.layout as layout
import simqa.milvus.rows as row_writes
import simqa.milvus.schema as schema
from simqa.encode.encoder import shared_encoder
from simqa.encode.models import resolve_model
from simqa.errors import ModelMismatch, SimqaError, UnknownConsultation
from simqa.index.hits import Filters, Hit, check_k, check_query, question_key
from simqa.index.manifest import FILENAME, Manifest
from simqa.index.search import SPARE
from simqa.index.snapshot import EXACT_SUBSET_MAX
from simqa.index.store import Filter
from simqa.lexicon import NameLever
from simqa.milvus.client import Connection
from simqa.milvus.folder import check_collection, load_manifest
from simqa.milvus.vectors import MAX_TOPK, MilvusVectors
from simqa.records import Consultation, normalise

#: rows per request when reading the whole collection
SCAN_BATCH = 1000


class MilvusIndex:
    """A simqa index whose records and vectors live in Milvus. Open it once, reuse it."""

    def __init__(
        self,
        root: Path,
        manifest: Manifest,
        conn: Connection,
        encoder: str | None = None,
        refresh_every: float | None = 1.0,
    ) -> None:  # no snapshot: nothing but the manifest is local
        self.root = root
        self.encoder_kind = encoder
        self.refresh_every = refresh_every
        self.conn = conn
        self._encoder: Any = None
        self._refresh_lock = threading.Lock()
        self._checked = time.monotonic()
        self._use(manifest)

    def _use(self, manifest: Manifest) -> None:
        self._manifest = manifest
        self._stamp = _stamp(self.root)
        v = manifest.vector_index
        self.collection = v["collection"]
        search = {
            k: val
            for k, val in v.items()
            if k not in ("kind", "dim", "index_type", "build", "uri", "collection")
        }
        self.vectors = MilvusVectors(
            self.conn, self.collection, manifest.dim, v["index_type"], v.get("build"), search
        )

    @classmethod
    def open(
        cls,
        index: str | Path = "default",
        *,
        model: str | None = None,
        encoder: str | None = None,
        verify: bool = False,
        refresh_every: float | None = 1.0,
    ) -> MilvusIndex:
        """Open a Milvus-backed index folder; checks the collection was built alike.

        ``verify`` has nothing local to check beyond that (Milvus keeps its own data)."""
        root = layout.index_path(index)
        manifest = load_manifest(root)
        if model is not None and resolve_model(model)[0] != manifest.model:
            raise ModelMismatch(
                f"index {index} was built with model {manifest.model}, not {model}; "
                "rebuild it or query without --model"
            )
        conn = Connection(manifest.vector_index["uri"])
        check_collection(conn, manifest.vector_index["collection"], manifest)
        return cls(root, manifest, conn, encoder, refresh_every)

    def refresh(self) -> bool:
        """Re-read the manifest if a rebuild on this machine replaced it. Rows written
        through Milvus need no refresh: every search sees them."""
        with self._refresh_lock:
            self._checked = time.monotonic()
            if _stamp(self.root) == self._stamp:
                return False
            manifest = load_manifest(self.root)
            if (manifest.model, manifest.encoder) != (self._manifest.model, self._manifest.encoder):
                self._encoder = None
            self._use(manifest)
            return True

    @property
    def manifest(self) -> Manifest:
        if (
            self.refresh_every is not None
            and time.monotonic() - self._checked >= self.refresh_every
        ):
            self.refresh()
        return self._manifest

    @property
    def dir(self) -> Path:
        return self.root

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            m = self._manifest
            kind = self.encoder_kind or ("auto" if m.encoder == "onnx" else m.encoder)
            encoder = shared_encoder(m.model, kind)
            if encoder.dim != m.dim:
                raise ModelMismatch(
                    f"model {m.model} gives {encoder.dim}-dimensional vectors, "
                    f"the index holds {m.dim}-dimensional ones"
                )
            self._encoder = encoder
        return self._encoder

    def __len__(self) -> int:
        return self._count("")

    def close(self) -> None:
        self.conn.close()

    # --- writing ---------------------------------------------------------------------------

    def add(self, records: Iterable[Consultation], **options: Any) -> dict[str, int]:
        """Add or update consultations (see ``simqa.milvus.write``); seen by every reader
        of the same Milvus once it returns."""
        counts = row_writes.write(self.root, records, **options)
        self.refresh()
        return counts

    def delete(self, ids: Iterable[str], **options: Any) -> int:
        counts = row_writes.write(self.root, (), delete=list(ids), **options)
        self.refresh()
        return counts["deleted"]

    def apply(self, writes: Sequence[tuple[str, Any]], **options: Any) -> list[dict[str, Any]]:
        """The writes one after another (Milvus has no versions to publish them as one; an
        add is an upsert, so a batch sent again after a failure does no harm)."""
        results: list[dict[str, Any]] = []
        for kind, payload in writes:
            if kind == "add":
                results.append(self.add(payload, **options))
            else:
                ids = list(payload)
                missing = [i for i in ids if not self._has(i)]
                deleted = self.delete(ids, **options)
                results.append({"deleted": deleted, "missing": missing, "records": len(self)})
        return results

    def compact(
        self, *, force: bool = True, background: bool = False, **options: Any
    ) -> dict[str, Any]:
        """Nothing to do: Milvus compacts its own segments."""
        return {"compacted": False, "reason": "Milvus compacts its own segments"}

    def _has(self, record_id: str) -> bool:
        try:
            self.get(record_id)
        except UnknownConsultation:
            return False
        return True

    # --- searching -------------------------------------------------------------------------

    def search(
        self,
        text: str,
        k: int = 5,
        *,
        names: NameLever | None = None,
        **filters: Unpack[Filters],
    ) -> list[Hit]:
        return self.search_many([text], k, names=names, **filters)[0]

    def search_many(
        self,
        texts: list[str],
        k: int = 5,
        *,
        names: NameLever | None = None,
        **filters: Unpack[Filters],
    ) -> list[list[Hit]]:
        """By cosine alone: Milvus holds no name postings, so the names lever (``names``)
        does not apply here (docs/milvus.md)."""
        queries = [check_query(t) for t in texts]
        check_k(k)
        return self._find(self.encoder.encode(queries), k, None, filters)

    def get(self, record_id: str) -> Consultation:
        row = self._row(str(record_id), ["id", "record"])
        return schema.from_row(row)

    def similar(self, record_id: str, k: int = 5, **filters: Unpack[Filters]) -> list[Hit]:
        check_k(k)
        row = self._row(str(record_id), ["id", "record", "vector"])
        record = schema.from_row(row)
        own = {question_key(record, self.manifest.embed_fields)}
        vector = np.asarray([row["vector"]], dtype=np.float32)
        return self._find(vector, k, [own], filters)[0]

    def similar_to(self, record: Consultation, k: int = 5, **filters: Unpack[Filters]) -> list[Hit]:
        check_k(k)
        fields = self.manifest.embed_fields
        vector = self.encoder.encode([check_query(record.embedding_text(fields))])
        return self._find(vector, k, [{question_key(record, fields)}], filters)[0]

    def similar_all(
        self, k: int = 4, batch_size: int = 256, **filters: Unpack[Filters]
    ) -> Iterator[tuple[str, list[Hit]]]:
        check_k(k)
        fields = self.manifest.embed_fields
        for rows in self._scan(["id", "record", "vector"], batch_size):
            records = [schema.from_row(r) for r in rows]
            vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32)
            own = [{question_key(r, fields)} for r in records]
            for record, hits in zip(records, self._find(vectors, k, own, filters), strict=True):
                yield record.id, hits

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int,
        *,
        texts: Sequence[str] | None = None,
        names: NameLever | None = None,
        **filters: Unpack[Filters],
    ) -> list[list[Hit]]:
        check_k(k)  # by cosine alone, as ``search_many``
        return self._find(np.atleast_2d(vectors), k, None, filters)

    def min_score(self, given: float | None = None) -> float | None:
        return self.manifest.min_score if given is None else given

    def _find(
        self,
        vectors: np.ndarray,
        k: int,
        exclude: Sequence[set[str]] | None,
        filters: Filters,
    ) -> list[list[Hit]]:
        """Hits per query vector: Milvus's candidates (filtered inside Milvus), each
        question once, thresholded, exclusions dropped; looking further until k pass."""
        manifest = self.manifest
        given = filters.get("min_score")
        min_score = manifest.min_score if given is None else given
        where = Filter(
            filters.get("department"),
            filters.get("source"),
            filters.get("tag"),
            filters.get("since"),
            filters.get("until"),
        )
        expr = schema.expression(where)
        most = self.vectors.max_widen()
        widen = 1.0
        if expr:
            matches = self._count(expr)
            if matches == 0:
                return [[] for _ in vectors]
            # a narrow filter is searched exhaustively; a share p looks 1/p times as far
            widen = most if matches <= EXACT_SUBSET_MAX else min(most, len(self) / matches)
        want = min(MAX_TOPK, k + SPARE)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        found = self.vectors.raw(vectors, want, widen, expr, schema.HIT_FIELDS)
        fields = manifest.embed_fields
        results = []
        for i, raw in enumerate(found):
            w, wd = want, widen
            own = exclude[i] if exclude else None
            while True:
                hits = _rank(raw, k, own, min_score, fields)
                below = min_score is not None and raw and raw[-1]["distance"] < min_score
                if len(hits) >= k or below:
                    break
                if len(raw) >= w and w < MAX_TOPK:  # all kept: ask for more candidates
                    w, wd = min(MAX_TOPK, w * 4), min(most, wd * 4)
                elif not self.vectors.exhaustive(wd) and wd < most:  # look further
                    wd = min(most, wd * 4)
                else:
                    break
                raw = self.vectors.raw(vectors[i : i + 1], w, wd, expr, schema.HIT_FIELDS)[0]
            results.append(hits)
        return results

    # --- contents --------------------------------------------------------------------------

    def records(self) -> Iterator[Consultation]:
        for rows in self._scan(["record"], SCAN_BATCH):
            yield from (schema.from_row(r) for r in rows)

    def records_by_vid(self) -> Iterator[tuple[int, Consultation]]:
        """(row key, record) in key order: row i of ``embeddings()`` is record i."""
        for rows in self._scan(["record"], SCAN_BATCH):
            yield from ((int(r["vid"]), schema.from_row(r)) for r in rows)

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(row keys, float32 matrix) of every stored vector, read from Milvus."""
        vids, vectors = [], []
        for rows in self._scan(["vector"], SCAN_BATCH):
            vids.extend(int(r["vid"]) for r in rows)
            vectors.extend(r["vector"] for r in rows)
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(vids), self._manifest.dim)
        return np.asarray(vids, dtype=np.int64), matrix

    def questions(self) -> tuple[list[str], np.ndarray]:
        fields = self.manifest.embed_fields
        first: dict[str, np.ndarray] = {}
        for rows in self._scan(["record", "vector"], SCAN_BATCH):
            for r in rows:
                text = normalise(schema.from_row(r).embedding_text(fields))
                if text and text not in first:
                    first[text] = np.asarray(r["vector"], dtype=np.float32)
        matrix = np.vstack(list(first.values())) if first else np.zeros((0, self._manifest.dim))
        return list(first), matrix.astype(np.float32)

    def tag_counts(self) -> Mapping[str, int]:
        """Consultations per topic, counted by Milvus when asked (no full scan)."""
        return TagCounts(self)

    def info(self) -> dict[str, Any]:
        m = self.manifest
        v = m.vector_index
        return {
            "path": str(self.root),
            "backend": "milvus",
            "uri": v["uri"],
            "collection": v["collection"],
            "records": len(self),
            "vectors": len(self),
            "model": m.model,
            "dimension": m.dim,
            "metric": m.metric,
            "embedded_text": m.embed_fields,
            "encoder": m.encoder,
            "index_type": v.get("index_type"),
            "index_params": {**v.get("build", {}), **self.vectors.search_params()},
            "index_reason": m.index_reason,
            "recall": m.recall,
            "min_score": m.min_score,
            "hub_penalty": m.hub_penalty,
            "size_bytes": sum(p.stat().st_size for p in self.root.iterdir() if p.is_file()),
            "created": m.created,
            "updated": m.updated,
            "sources": m.sources,  # as built (counting per source live needs a full scan)
            "format_version": m.format_version,
        }

    # --- helpers ---------------------------------------------------------------------------

    def _count(self, expr: str) -> int:
        rows = self.conn.call("query", self.collection, filter=expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _row(self, record_id: str, fields: list[str]) -> dict[str, Any]:
        rows = self.conn.call(
            "get", self.collection, ids=[schema.vid_of(record_id)], output_fields=fields
        )
        if not rows or rows[0]["id"] != record_id:
            raise UnknownConsultation(f"no consultation with id {record_id!r} in this index")
        return rows[0]

    def _scan(self, fields: list[str], batch: int) -> Iterator[list[dict[str, Any]]]:
        """Every row, in row-key order, ``batch`` at a time (pymilvus's query iterator)."""
        it = self.conn.call(
            "query_iterator",
            self.collection,
            batch_size=batch,
            filter="vid >= 0",
            output_fields=["vid", *fields],
        )
        try:
            while True:
                try:
                    rows = it.next()
                except Exception as exc:  # pymilvus raises its own kinds mid-iteration
                    if self.conn.empty_lite_result(exc):
                        return
                    raise SimqaError(
                        f"reading {self.collection} from Milvus at {self.conn.uri} failed: "
                        f"{' '.join(str(exc).split())[:200]}"
                    ) from None
                if not rows:
                    return
                yield list(rows)
        finally:
            it.close()


class TagCounts(Mapping[str, int]):
    """``Index.tag_counts()`` for a Milvus index: each topic counted on first use."""

    def __init__(self, index: MilvusIndex) -> None:
        self.index = index
        self._known: dict[str, int] = {}

    def __getitem__(self, topic: str) -> int:
        key = schema.fold(topic)
        if key not in self._known:
            self._known[key] = self.index._count(f"array_contains(tags, {schema.literal(key)})")
        if not self._known[key]:
            raise KeyError(topic)
        return self._known[key]

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for rows in self.index._scan(["tags"], SCAN_BATCH):
            for r in rows:
                seen.update(r["tags"])
        return iter(sorted(seen))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _rank(
    raw: list[dict[str, Any]],
    k: int,
    exclude: set[str] | None,
    min_score: float | None,
    fields: str,
) -> list[Hit]:
    hits: list[Hit] = []
    shown = set(exclude or ())  # a box shows each question once, and never the query's own
    for hit in raw:
        score = float(hit["distance"])
        if not math.isfinite(score) or (min_score is not None and score < min_score):
            break
        record = schema.from_row(hit["entity"])
        key = question_key(record, fields)
        if key in shown:
            continue
        shown.add(key)
        hits.append(Hit(record.id, score, record, score))
        if len(hits) == k:
            break
    return hits


def _stamp(root: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(root / FILENAME)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns
