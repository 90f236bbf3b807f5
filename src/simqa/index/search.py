"""``Index``: an opened index that answers searches, safe to share across threads.

An ``Index`` holds one ``Snapshot`` (a published version: a base and its delta segments)
at a time. Searches read the snapshot they start with, so a writer publishing a new
version never disturbs a search in flight; ``refresh`` (called by itself every
``refresh_every`` seconds) swaps in the newest version without reloading the model or
the base (a new version costs its new delta segment).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack

import numpy as np

import simqa.index.density as hubs
import simqa.index.layout as layout
from simqa.encode.encoder import shared_encoder, threads
from simqa.encode.models import resolve_model
from simqa.errors import ModelMismatch, UnknownConsultation
from simqa.index.hits import Filters, Hit, check_k, check_query, question_key
from simqa.index.manifest import Manifest
from simqa.index.names import Boost, boost
from simqa.index.segment import member
from simqa.index.snapshot import EXACT_SUBSET_MAX, Snapshot
from simqa.index.store import Filter
from simqa.lexicon import NameLever
from simqa.records import Consultation, normalise
from simqa.vectors.faissio import set_threads

#: candidates fetched beyond k, so that a few excluded or missing ones need no second pass
SPARE = 8
#: records ``similar_all`` keeps decoded at once (~3 KB each)
ALL_CACHE_MAX = 200_000

#: decoded records by vector id, each with its ``question_key`` (computed once per record)
Records = dict[int, tuple[Consultation, str]]
#: a query's name-holding candidates: (cosines, sorted vector ids, rank bonus)
Extra = tuple[np.ndarray, np.ndarray, np.ndarray]


class Index:
    """A built index, opened for searching. Open it once and reuse it for many queries."""

    def __init__(
        self,
        root: Path,
        snapshot: Snapshot,
        encoder: str | None = None,
        refresh_every: float | None = 1.0,
    ) -> None:
        self.root = root
        self.encoder_kind = encoder
        self.refresh_every = refresh_every
        self._snapshot = snapshot
        self._stamp = layout.pointer_stamp(root)
        self._checked = time.monotonic()
        self._refresh_lock = threading.Lock()
        self._encoder: Any = None
        if threads():
            set_threads(threads())

    # --- opening and following the newest version ------------------------------------

    @classmethod
    def open(
        cls,
        index: str | Path = "default",
        *,
        model: str | None = None,
        encoder: str | None = None,
        verify: bool = False,
        refresh_every: float | None = 1.0,
    ) -> Index:
        """Open a built index. ``model`` (if given) must be the one it was built with.

        Opening checks each file's size and header; ``verify`` also checks every file's
        checksum (reads them all: seconds at a million consultations). Queries are encoded
        as the index was built (``encoder=None``); another encoder works but its vectors
        differ slightly from the stored ones. ``refresh_every`` seconds (None: never) a
        search first checks whether a newer version was published.
        """
        root = layout.index_path(index)
        snapshot = Snapshot.open(root, verify=verify)
        if model is not None and resolve_model(model)[0] != snapshot.manifest.model:
            raise ModelMismatch(
                f"index {index} was built with model {snapshot.manifest.model}, not {model}; "
                "rebuild it or query without --model"
            )
        return cls(root, snapshot, encoder, refresh_every)

    def refresh(self) -> bool:
        """Move to the newest published version, if there is one; True when it moved.

        Costs one ``stat`` when nothing changed; the model stays loaded.
        """
        with self._refresh_lock:
            self._checked = time.monotonic()
            stamp = layout.pointer_stamp(self.root)
            if stamp == self._stamp:
                return False
            # the name alone: the folder it names may be swept before we look (a newer
            # version was published meanwhile); Snapshot.open reads CURRENT again until it
            # holds a version
            if layout.current_name(self.root) == self._snapshot.dir.name:
                self._stamp = stamp
                return False
            fresh = Snapshot.open(self.root)
            old = self._snapshot.manifest
            if (fresh.manifest.model, fresh.manifest.encoder) != (old.model, old.encoder):
                self._encoder = None
            # searches in flight keep the old one; the last to finish lets its version go
            self._snapshot, self._stamp = fresh, stamp
            return True

    @property
    def snapshot(self) -> Snapshot:
        """The version searches read now (refreshed first when ``refresh_every`` is due)."""
        if (
            self.refresh_every is not None
            and time.monotonic() - self._checked >= self.refresh_every
        ):
            self.refresh()
        return self._snapshot

    @property
    def manifest(self) -> Manifest:
        return self.snapshot.manifest

    @property
    def dir(self) -> Path:
        return self.snapshot.dir

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            manifest = self._snapshot.manifest
            built_with = manifest.encoder  # onnx falls back to torch if it cannot load
            kind = self.encoder_kind or ("auto" if built_with == "onnx" else built_with)
            encoder = shared_encoder(layout.model_location(self.root, manifest.model), kind)
            manifest.check_encoder(encoder)
            self._encoder = encoder
        return self._encoder

    def __len__(self) -> int:
        return len(self.snapshot.store)

    def close(self) -> None:
        self._snapshot.close()

    # --- writing (each call is one atomic, durable write under the writer lock) ----------

    def add(self, records: Iterable[Consultation], **options: Any) -> dict[str, int]:
        """Add or update consultations; returns counts. Visible to this index at once and
        to every other reader within its ``refresh_every``."""
        from simqa.index.build import write

        counts = write(self.root, records, **options)
        self.refresh()
        return counts

    def delete(self, ids: Iterable[str], **options: Any) -> int:
        """Take consultations down (records and vectors, in one atomic write); returns how
        many were there. ``similar`` of a deleted id then says it is unknown."""
        from simqa.index.build import write

        counts = write(self.root, (), delete=list(ids), **options)
        self.refresh()
        return counts["deleted"]

    def apply(self, writes: Sequence[tuple[str, Any]], **options: Any) -> list[dict[str, Any]]:
        """Several writes, in order, published as one version: ``("add", records)`` and
        ``("delete", ids)``; returns each one's counts (what ``add`` returns; ``{"deleted":
        n, "missing": [ids not there], "records": n}`` for a delete). What a server does
        with the writes queued behind each other."""
        from simqa.index.build import write_many

        results = write_many(self.root, writes, **options)
        self.refresh()
        return results

    def compact(
        self, *, force: bool = True, background: bool = False, **options: Any
    ) -> dict[str, Any]:
        """Fold the delta segments into a new base (``simqa.index.compact``): with
        ``force=False`` only when they pass the thresholds. Writers go on meanwhile.
        ``background``: start it in a thread when due and return at once (what a server's
        writer does after a write)."""
        if background:
            from simqa.index.compact import in_background

            started = in_background(self.root, after=self.refresh, view=self.snapshot)
            return {"compacted": False, "started": started is not None}
        from simqa.index.compact import compact

        done = compact(self.root, force=force, **options)
        self.refresh()
        return done

    # --- searching -----------------------------------------------------------------------

    def search(
        self,
        text: str,
        k: int = 5,
        *,
        names: NameLever | None = None,
        **filters: Unpack[Filters],
    ) -> list[Hit]:
        """The k consultations whose questions are closest to ``text``; with ``names``
        (``simqa.lexicon.NAMES``: what the box does), a long question's rare names count
        too (see ``search_many``)."""
        return self.search_many([text], k, names=names, **filters)[0]

    def search_many(
        self,
        texts: list[str],
        k: int = 5,
        *,
        names: NameLever | None = None,
        **filters: Unpack[Filters],
    ) -> list[list[Hit]]:
        """Batched ``search``: one model call and one index call for all queries.

        ``names``: the names lever (``simqa.lexicon``): a question longer than its
        ``long_words`` that mentions names few live records hold is ranked by cosine plus
        ``weight`` x the share of those names' idf mass a record holds, every live record
        holding one (that the filters keep) a candidate; ``score`` stays the cosine
        (``min_score`` applies to it), ``rank_score`` is what hits are ordered by."""
        queries = [check_query(t) for t in texts]
        check_k(k)
        vectors = self.encoder.encode(queries)
        return self.search_vectors(vectors, k, texts=queries, names=names, **filters)

    def get(self, record_id: str) -> Consultation:
        """The consultation with this id; UnknownConsultation when there is none."""
        found = self.snapshot.store.get(str(record_id))
        if found is None:
            raise UnknownConsultation(f"no consultation with id {record_id!r} in this index")
        return found[1]

    def similar(self, record_id: str, k: int = 5, **filters: Unpack[Filters]) -> list[Hit]:
        """Neighbours of an indexed consultation, leaving out itself and copies of its question."""
        check_k(k)
        snapshot = self.snapshot
        found = snapshot.store.get(str(record_id))
        if found is None:
            raise UnknownConsultation(f"no consultation with id {record_id!r} in this index")
        vid, record, _hash = found
        vector = snapshot.vectors_of(np.array([vid], dtype=np.int64))
        own = {question_key(record, snapshot.manifest.embed_fields)}
        return self._search(snapshot, vector, k, [own], filters)[0]

    def similar_to(self, record: Consultation, k: int = 5, **filters: Unpack[Filters]) -> list[Hit]:
        """Neighbours of a consultation that need not be indexed (e.g. a page file)."""
        check_k(k)
        snapshot = self.snapshot
        fields = snapshot.manifest.embed_fields
        vector = self.encoder.encode([check_query(record.embedding_text(fields))])
        own = {question_key(record, fields)}
        return self._search(snapshot, vector, k, [own], filters)[0]

    def similar_all(
        self, k: int = 4, batch_size: int = 256, **filters: Unpack[Filters]
    ) -> Iterator[tuple[str, list[Hit]]]:
        """Every consultation's ``similar`` box, from the stored vectors, in batches."""
        check_k(k)
        snapshot = self.snapshot  # one version throughout
        plan = _Plan.make(snapshot, k, filters)
        ids = snapshot.all_ids()
        batches = [ids[start : start + batch_size] for start in range(0, len(ids), batch_size)]
        vectors_of = snapshot.vectors_of

        # a record is a neighbour of ~k+SPARE others: fetch (and decode) it once per run,
        # not once per box; bounded so that a few million consultations fit in memory
        cache: Records = {}
        for vids in batches:
            if len(cache) > ALL_CACHE_MAX:
                cache.clear()
            vectors = vectors_of(vids)
            scores, cands = plan.candidates(snapshot, vectors)
            listed = vids.tolist()  # Python ints once, for the cache lookups below
            _fetch(snapshot, listed, cache)
            rows = [i for i, vid in enumerate(listed) if vid in cache]
            own = [{cache[listed[i]][1]} for i in rows]
            boxes = _finish(snapshot, plan, vectors[rows], scores[rows], cands[rows], own, cache)
            for i, hits in zip(rows, boxes, strict=True):
                yield cache[listed[i]][0].id, hits

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int,
        *,
        texts: Sequence[str] | None = None,
        names: NameLever | None = None,
        **filters: Unpack[Filters],
    ) -> list[list[Hit]]:
        """Search with ready-made query vectors (unit length, the index's model); with
        ``names``, ``texts`` are the questions they encode (checked), for the names lever."""
        check_k(k)
        vectors = np.atleast_2d(vectors)
        snapshot = self.snapshot
        boosts = None
        if names is not None and texts is not None:
            if len(texts) != len(vectors):
                raise ValueError(f"{len(vectors)} query vectors but {len(texts)} texts")
            queries = [check_query(t) for t in texts]
            if any(names.applies(q) for q in queries):
                view = snapshot.names()
                boosts = [boost(view, q, names) for q in queries]
        return self._search(snapshot, vectors, k, None, filters, boosts)

    def min_score(self, given: float | None = None) -> float | None:
        """The threshold a search applies: ``given``, else the one the index was built with."""
        return self.snapshot.manifest.min_score if given is None else given

    def _search(
        self,
        snapshot: Snapshot,
        vectors: np.ndarray,
        k: int,
        exclude: Sequence[set[str]] | None,
        filters: Filters,
        boosts: Sequence[Boost | None] | None = None,
    ) -> list[list[Hit]]:
        """Candidates from the vector index (or exactly, for a narrow filter), with the
        records holding a query's strong names (``boosts``), re-ordered by the hub penalty
        and the names' bonus, thresholded, exclusions dropped; widened until k pass."""
        plan = _Plan.make(snapshot, k, filters)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        scores, ids = plan.candidates(snapshot, vectors)
        extras = _extras(snapshot, plan, vectors, boosts) if boosts else None
        return _finish(snapshot, plan, vectors, scores, ids, exclude, {}, extras)

    # --- contents ------------------------------------------------------------------------

    def records(self) -> Iterator[Consultation]:
        for _, record in self.snapshot.store.iter_records():
            yield record

    def records_by_vid(self) -> Iterator[tuple[int, Consultation]]:
        """(vector id, record) in vector id order: row i of ``embeddings()`` is record i."""
        yield from self.snapshot.store.iter_records()

    def tag_counts(self) -> dict[str, int]:
        """Consultations per topic tag (casefolded topic, department suffix dropped)."""
        return self.snapshot.tag_counts()

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(vector ids, float32 matrix) of every stored vector, memory-mapped."""
        snapshot = self.snapshot
        return snapshot.emb_ids, snapshot.emb

    def questions(self) -> tuple[list[str], np.ndarray]:
        """Every distinct text the index embedded (first record wins) and its stored vector,
        for reusing the index as an evaluation pool or a source of training negatives."""
        snapshot = self.snapshot
        fields = snapshot.manifest.embed_fields
        first: dict[str, int] = {}
        for vid, record in snapshot.store.iter_records():
            text = normalise(record.embedding_text(fields))
            if text and text not in first:
                first[text] = int(vid)
        vids = np.fromiter(first.values(), dtype=np.int64, count=len(first))
        return list(first), snapshot.vectors_of(vids)

    def info(self) -> dict[str, Any]:
        """What ``simqa info`` shows."""
        snapshot = self.snapshot
        m = snapshot.manifest
        return {
            "path": str(self.root),
            "version": snapshot.dir.name,
            "records": len(snapshot.store),
            "vectors": len(snapshot.vectors),
            "model": m.model,
            "dimension": m.dim,
            "metric": m.metric,
            "embedded_text": m.embed_fields,
            "encoder": m.encoder,
            "index_type": m.vector_index.get("kind"),
            "index_params": {k: v for k, v in m.vector_index.items() if k not in ("kind", "dim")},
            "index_reason": m.index_reason,
            "recall": m.recall,
            "min_score": m.min_score,
            "hub_penalty": m.hub_penalty,
            "size_bytes": snapshot.files_bytes(),
            "delta": {
                "segments": len(m.segments),
                "records": snapshot.delta_records,
                "deleted_from_base": len(snapshot.base_dead),
                "bytes": sum(int(m.files[n]["bytes"]) for n in m.segments if n in m.files),
            },
            "created": m.created,
            "updated": m.updated,
            "sources": m.sources,
            "format_version": m.format_version,
        }



@dataclass(frozen=True)
class _Plan:
    """How far a search looks: its filter's allowed ids, the candidates it asks for first,
    and where it stops widening. Made once per search (once for a whole ``similar_all``)."""

    k: int
    min_score: float | None
    allowed: np.ndarray | None  # sorted vector ids a filter keeps; None: no filter
    exact: bool  # the allowed ids are few: search them exactly
    depth: int  # candidates a box wants ranked
    want: int  # candidates asked for first
    limit: int  # the most there are to ask for
    widen: float = 1.0  # how much further than its tuned setting the vector index looks

    @classmethod
    def make(cls, snapshot: Snapshot, k: int, filters: Filters) -> _Plan:
        given = filters.get("min_score")
        min_score = snapshot.manifest.min_score if given is None else given
        where = Filter(
            filters.get("department"), filters.get("source"), filters.get("tag"),
            filters.get("since"), filters.get("until"),
        )  # fmt: skip
        allowed = snapshot.store.vids_where(where) if where else None
        total = len(snapshot.vectors)
        depth = max(k + SPARE, hubs.RERANK_DEPTH if snapshot.has_density else 0)
        if allowed is None:
            return cls(k, min_score, None, False, depth, min(total, depth), total)
        if len(allowed) <= EXACT_SUBSET_MAX:
            want = min(len(allowed), depth)
            return cls(k, min_score, allowed, True, depth, want, len(allowed))
        # a share p of the vectors count: look 1/p times as far, keep ~depth
        widen = total / len(allowed)
        want = min(total, math.ceil(depth * widen * 1.5))
        return cls(k, min_score, allowed, False, depth, want, total, widen)

    def candidates(self, snapshot: Snapshot, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The first candidates of each query (none when the filter keeps nothing)."""
        if self.allowed is not None and len(self.allowed) == 0:
            n = len(vectors)
            return np.full((n, 0), -np.inf, np.float32), np.full((n, 0), -1, np.int64)
        over = self.allowed if self.exact else None
        return snapshot.candidates(vectors, self.want, over, self.widen, self.allowed)


def _extras(
    snapshot: Snapshot, plan: _Plan, vectors: np.ndarray, boosts: Sequence[Boost | None]
) -> list[Extra | None]:
    """Per query, its name-holding candidates that the filter keeps, with their exact
    cosines (a few hundred at most: names held by few records)."""
    out: list[Extra | None] = []
    for vector, found in zip(vectors, boosts, strict=True):
        if found is None:
            out.append(None)
            continue
        vids, bonus = found.vids, found.bonus
        if plan.allowed is not None:
            keep = member(plan.allowed, vids)
            vids, bonus = vids[keep], bonus[keep]
        if not len(vids):
            out.append(None)
            continue
        out.append((snapshot.vectors_of(vids) @ vector, vids, bonus))
    return out


def _finish(
    snapshot: Snapshot,
    plan: _Plan,
    vectors: np.ndarray,
    scores: np.ndarray,
    ids: np.ndarray,
    exclude: Sequence[set[str]] | None,
    cache: Records,
    extras: Sequence[Extra | None] | None = None,
) -> list[list[Hit]]:
    """The boxes of queries whose first candidates are found: ranked, then widened (every
    query still short of k hits is in the same state, so they widen as one batch). A
    query with name-holding candidates also widens while its k-th hit ranks below its last
    vector candidate: a record the vector index has not reached yet might rank above it."""
    k, allowed, min_score = plan.k, plan.allowed, plan.min_score
    want, widen, limit = plan.want, plan.widen, plan.limit
    over = allowed if plan.exact else None  # exact search over these ids, when set
    if allowed is None:  # the records most boxes show, in one read
        _fetch(snapshot, ids[:, : k + SPARE].ravel(), cache)
    results: list[list[Hit]] = [[] for _ in vectors]
    pending = np.arange(len(vectors))
    while True:
        short = []
        for s, v, i in zip(scores, ids, pending, strict=True):
            own = exclude[i] if exclude else None
            extra = extras[i] if extras else None
            results[i], reached = _rank(snapshot, s, v, k, allowed, own, min_score, cache, extra)
            valid = s[v >= 0]
            below = min_score is not None and len(valid) and valid[-1] < min_score
            if (len(results[i]) < k or not reached) and not below:
                short.append(i)
        if not short or (want >= limit and over is not None):
            return results
        if want >= limit:  # the vector index looked everywhere it would: finish exactly
            over = allowed if allowed is not None else snapshot.all_ids()
            limit = len(over)
            want = min(limit, max(want // 4, plan.depth))
        else:
            want, widen = min(limit, want * 4), widen * 4
        pending = np.array(short)
        scores, ids = snapshot.candidates(vectors[pending], want, over, widen, allowed)


def _rank(
    snapshot: Snapshot,
    scores: np.ndarray,
    ids: np.ndarray,
    k: int,
    allowed: np.ndarray | None,
    exclude: set[str] | None,
    min_score: float | None,
    cache: Records,
    extra: Extra | None = None,
) -> tuple[list[Hit], bool]:
    """The first k hits among the candidates (and ``extra``, a query's name-holding
    records), and whether they are sure: False when name-holding records fill the box
    below where the vector candidates end (the next widening settles it)."""
    valid = (ids >= 0) & np.isfinite(scores)
    keep = valid.copy()
    if allowed is not None:
        pos = np.minimum(np.searchsorted(allowed, ids), len(allowed) - 1)
        keep &= allowed[pos] == ids
    if min_score is not None:
        keep &= scores >= min_score
    kept_scores, kept_ids = scores[keep], ids[keep]
    bonus = None
    if extra is not None:
        kept_scores, kept_ids, bonus = _with_extra(kept_scores, kept_ids, extra, min_score)
    s, v = kept_scores.tolist(), kept_ids.tolist()
    dense = int(keep.sum())  # the first ``dense`` of s and v are vector candidates
    ranked, order = s, list(range(len(v)))  # best first: only the hub penalty re-orders
    edge = -np.inf  # a record beyond the vector candidates ranks below this
    if (snapshot.has_density or bonus is not None) and v:
        rank = np.asarray(s, dtype=np.float64)
        if snapshot.has_density:
            rank = hubs.penalised(rank, snapshot.density_of(np.asarray(v)), snapshot.hub_weight)
            # as the penalty assumes: a record beyond ranks below every vector candidate
            edge = float(rank[:dense].min()) if dense else -np.inf
        elif valid.any():  # exactly: its cosine is at most the last candidate's
            edge = float(scores[valid][-1])
        if bonus is not None:
            rank = rank + bonus
        ranked, order = rank.tolist(), np.argsort(-rank, kind="stable").tolist()
    hits: list[Hit] = []
    shown = set(exclude or ())  # a box shows each question once, and never the query's own
    # fetch records best first, a few more than k at a time, until k hits pass
    for start in range(0, len(order), k + SPARE):
        chunk = order[start : start + k + SPARE]
        _fetch(snapshot, [v[j] for j in chunk], cache)
        for j in chunk:
            found = cache.get(v[j])
            if found is None:
                continue
            record, key = found
            if key in shown:
                continue
            shown.add(key)
            hits.append(Hit(record.id, s[j], record, ranked[j]))
            if len(hits) == k:
                return hits, bonus is None or hits[-1].rank_score >= edge
    return hits, True


def _with_extra(
    scores: np.ndarray, ids: np.ndarray, extra: Extra, min_score: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The vector candidates, then the name-holding records not among them (those passing
    ``min_score``), with each one's bonus (0 for records holding no strong name)."""
    e_scores, e_ids, e_bonus = extra
    bonus = np.zeros(len(ids), dtype=np.float64)
    held = member(e_ids, ids)
    bonus[held] = e_bonus[np.searchsorted(e_ids, ids[held])]
    more = ~np.isin(e_ids, ids)
    if min_score is not None:
        more &= e_scores >= min_score
    return (
        np.concatenate([scores, e_scores[more].astype(scores.dtype)]),
        np.concatenate([ids, e_ids[more]]),
        np.concatenate([bonus, e_bonus[more].astype(np.float64)]),
    )


def _fetch(snapshot: Snapshot, vids: Iterable[int], cache: Records) -> None:
    """Read into ``cache`` the records of ``vids`` it lacks, in one query."""
    if isinstance(vids, np.ndarray):
        vids = vids.tolist()  # Python ints in one C call
    missing = {v for v in vids if v >= 0 and v not in cache}
    if missing:
        fields = snapshot.manifest.embed_fields
        for vid, (record, _hash) in snapshot.store.fetch(missing).items():
            cache[vid] = (record, question_key(record, fields))
