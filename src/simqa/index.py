"""An index on disk: vectors, records and manifest, built, appended and searched as one.

Layout of an index folder (``indexes/NAME`` by default)::

    NAME/CURRENT          name of the live version folder, replaced atomically
    NAME/v000003/         manifest.json, records.sqlite, vectors.faiss,
                          embeddings.npy + embedding_ids.npy (the raw vectors, kept so that
                          appends, compaction and evaluation never re-embed)

A build or append writes a new version folder and only then points CURRENT at it, so a
failed or interrupted write leaves the previous version intact and queryable.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np

from simqa import density as hubs
from simqa import vectors as vector_backends
from simqa.embed import load_encoder, resolve_model
from simqa.errors import BadQuery, IndexCorrupt, IndexMissing, ModelMismatch, SimqaError
from simqa.manifest import Manifest
from simqa.records import Consultation, normalise
from simqa.store import RecordStore
from simqa.vectors.faissio import set_threads
from simqa.vectors.tuning import tune_search_params

MAX_QUERY_CHARS = 20_000
MAX_K = 1_000
CURRENT = "CURRENT"
RECORDS = "records.sqlite"
DENSITY = "density.npy"
EMBEDDINGS = "embeddings.npy"
EMBEDDING_IDS = "embedding_ids.npy"

#: int8 ONNX where the model allows it: same MQP recall@1 as torch, several times faster
#: (benchmarks/RESULTS.md); an index is queried with the encoder it was built with.
DEFAULT_ENCODER = "auto"
_ENCODERS: dict[tuple[str, str], Any] = {}


def threads() -> int | None:
    """The thread count asked for with ``$SIMQA_THREADS`` (``simqa --threads``), if any."""
    value = os.environ.get("SIMQA_THREADS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise SimqaError(f"SIMQA_THREADS must be a positive whole number, got {value!r}")
    return int(value)


def shared_encoder(model: str | None, backend: str = DEFAULT_ENCODER) -> Any:
    """One loaded encoder per (model, backend) per process: loading costs seconds.

    ``auto`` means onnx, or torch for a model the onnx export does not support (e.g. one
    with a Dense head); the encoder's ``backend`` attribute says which one it is.
    """
    key = (resolve_model(model)[0], backend)
    if key not in _ENCODERS:
        if backend == "auto":
            try:
                _ENCODERS[key] = shared_encoder(model, "onnx")
            except SimqaError:
                _ENCODERS[key] = shared_encoder(model, "torch")
        else:
            _ENCODERS[key] = load_encoder(model, backend=backend, threads=threads())
    return _ENCODERS[key]


def home() -> Path:
    """Where index names are resolved: ``$SIMQA_HOME`` or ``./indexes``."""
    return Path(os.environ.get("SIMQA_HOME", "indexes"))


def locate(index: str | Path) -> Path:
    """An index name means a folder under ``home()``; anything path-like is a path."""
    text = str(index)
    if isinstance(index, Path) or "/" in text or text.startswith(".") or os.sep in text:
        return Path(index)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text):
        raise SimqaError(f"bad index name {text!r}: use letters, digits, '-', '_' or a path")
    return home() / text


class Filters(TypedDict, total=False):
    """What every search method can narrow its hits by."""

    department: str | None
    source: str | None
    #: hits scoring below it are dropped (None: the index's calibrated ``min_score``;
    #: ``threshold.KEEP_ALL`` keeps every hit); none left means nothing similar is known
    min_score: float | None


@dataclass
class Hit:
    """One similar consultation and how close its question is to the query (cosine).

    ``rank_score`` is what hits are ordered by: the cosine less the index's hub penalty.
    """

    id: str
    score: float
    record: Consultation
    rank_score: float = float("nan")

    def __post_init__(self) -> None:
        if self.rank_score != self.rank_score:  # not given: the cosine itself
            self.rank_score = self.score

    def to_json(self) -> dict[str, Any]:
        """The documented, stable JSON shape of a hit."""
        r = self.record
        return {
            "id": r.id,
            "score": round(float(self.score), 4),
            "rank_score": round(float(self.rank_score), 4),
            "title": r.title,
            "question": r.question,
            "reply": r.reply,
            "doctor": r.doctor,
            "department": r.department,
            "ask_date": r.ask_date,
            "reply_date": r.reply_date,
            "url": r.url,
            "source": r.source,
        }


def check_query(text: str) -> str:
    """The normalised query, or BadQuery naming what is wrong with it."""
    if not isinstance(text, str):
        raise BadQuery("query must be text")
    if len(text) > MAX_QUERY_CHARS:
        raise BadQuery(
            f"query is {len(text):,} characters; the limit is {MAX_QUERY_CHARS:,} "
            "(the model reads only the first few hundred words anyway)"
        )
    query = normalise(text)
    if not query:
        raise BadQuery("query is empty")
    return query


def check_k(k: int) -> int:
    if not isinstance(k, int) or k < 1 or k > MAX_K:
        raise BadQuery(f"k must be between 1 and {MAX_K}, got {k}")
    return k


class Index:
    """A built index, opened for searching. Open it once and reuse it for many queries."""

    def __init__(
        self, root: Path, version_dir: Path, manifest: Manifest, backend: str | None = None
    ) -> None:
        self.root = root
        self.dir = version_dir
        self.manifest = manifest
        self.backend = backend
        if threads():
            set_threads(threads())
        try:
            self.store = RecordStore(version_dir / RECORDS)
            self.vectors = vector_backends.load(version_dir, manifest.vector_index)
            self._emb_ids = np.load(version_dir / EMBEDDING_IDS, mmap_mode="r")
            self._emb = np.load(version_dir / EMBEDDINGS, mmap_mode="r")
            self._hub_weight = float(manifest.hub_penalty.get("weight", 0.0))
            self._density = (
                np.load(version_dir / DENSITY, mmap_mode="r") if self._hub_weight else None
            )
        except SimqaError:
            raise
        except Exception as exc:  # faiss, sqlite and numpy each raise their own kinds
            raise IndexCorrupt(f"index at {version_dir} cannot be read: {exc}") from None
        self._encoder: Any = None

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        index: str | Path = "default",
        *,
        model: str | None = None,
        backend: str | None = None,
        verify: bool = True,
    ) -> Index:
        """Open a built index. ``model`` (if given) must be the one it was built with.

        Queries are encoded as the index was built (``backend=None``); another backend
        works but its vectors differ slightly from the stored ones.
        """
        root = locate(index)
        version_dir = _current_version(root)
        manifest = Manifest.load(version_dir)
        manifest.verify(version_dir, checksums=verify)
        if model is not None and resolve_model(model)[0] != manifest.model:
            raise ModelMismatch(
                f"index {index} was built with model {manifest.model}, not {model}; "
                "rebuild it or query without --model"
            )
        return cls(root, version_dir, manifest, backend)

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            built_with = self.manifest.encoder  # onnx falls back to torch if it cannot load
            backend = self.backend or ("auto" if built_with == "onnx" else built_with)
            encoder = shared_encoder(self.manifest.model, backend)
            if encoder.dim != self.manifest.dim:
                raise ModelMismatch(
                    f"model {self.manifest.model} gives {encoder.dim}-dimensional vectors, "
                    f"the index holds {self.manifest.dim}-dimensional ones"
                )
            self._encoder = encoder
        return self._encoder

    def __len__(self) -> int:
        return len(self.store)

    def close(self) -> None:
        self.store.close()

    # --- searching -----------------------------------------------------------------------

    def search(self, text: str, k: int = 5, **filters: Unpack[Filters]) -> list[Hit]:
        """The k consultations whose questions are closest to ``text``."""
        return self.search_many([text], k, **filters)[0]

    def search_many(
        self, texts: list[str], k: int = 5, **filters: Unpack[Filters]
    ) -> list[list[Hit]]:
        """Batched ``search``: one model call and one index call for all queries."""
        queries = [check_query(t) for t in texts]
        check_k(k)
        return self.search_vectors(self.encoder.encode(queries), k, **filters)

    def similar(self, record_id: str, k: int = 5, **filters: Unpack[Filters]) -> list[Hit]:
        """Neighbours of an indexed consultation, leaving out itself and exact duplicates."""
        check_k(k)
        found = self.store.get(str(record_id))
        if found is None:
            raise SimqaError(f"no consultation with id {record_id!r} in this index")
        vid, _record, text_hash = found
        row = int(np.searchsorted(self._emb_ids, vid))
        if row >= len(self._emb_ids) or self._emb_ids[row] != vid:
            raise IndexCorrupt(f"consultation {record_id!r} has no stored vector")
        vector = np.asarray(self._emb[row : row + 1], dtype=np.float32)
        return self.search_vectors(vector, k, exclude_hashes={text_hash}, **filters)[0]

    def similar_to(
        self, record: Consultation, k: int = 5, **filters: Unpack[Filters]
    ) -> list[Hit]:
        """Neighbours of a consultation that need not be indexed (e.g. a page file)."""
        check_k(k)
        text = check_query(record.embedding_text(self.manifest.embed_fields))
        vector = self.encoder.encode([text])
        own = {record.content_hash(self.manifest.embed_fields)}
        return self.search_vectors(vector, k, exclude_hashes=own, **filters)[0]

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int,
        *,
        exclude_hashes: set[str] | None = None,
        department: str | None = None,
        source: str | None = None,
        min_score: float | None = None,
    ) -> list[list[Hit]]:
        """Search with ready-made query vectors, applying filters and exclusions exactly.

        Filters are applied after the vector search; the candidate list grows until k
        hits pass or the whole index has been seen, so a filter never hides a match.
        """
        min_score = self.min_score(min_score)
        allowed = self.store.vids_where(department, source) if department or source else None
        total = len(self.vectors)
        results: list[list[Hit]] = []
        for query in vectors:
            hits: list[Hit] = []
            want = min(total, k + 8 if allowed is None else k * 4 + 8)
            if self._hub_weight:
                want = min(total, max(want, hubs.RERANK_DEPTH))
            while want > 0:
                scores, ids = self.vectors.search(query[None, :], want)
                hits = self._hits(scores[0], ids[0], k, allowed, exclude_hashes, min_score)
                if (
                    len(hits) >= k
                    or want >= total
                    or (min_score is not None and len(scores[0]) and scores[0][-1] < min_score)
                ):
                    break
                want = min(total, want * 4)
            results.append(hits)
        return results

    def min_score(self, given: float | None = None) -> float | None:
        """The threshold a search applies: ``given``, else the one the index was built with."""
        return self.manifest.min_score if given is None else given

    def _hits(self, scores, ids, k, allowed, exclude_hashes, min_score) -> list[Hit]:
        keep = [(float(s), int(i)) for s, i in zip(scores, ids, strict=True) if i >= 0]
        if allowed is not None:
            keep = [(s, i) for s, i in keep if i in allowed]
        if min_score is not None:
            keep = [(s, i) for s, i in keep if s >= min_score]
        ranked = [(s, i, s) for s, i in keep]
        if self._density is not None and keep:
            rows = np.searchsorted(self._emb_ids, [i for _, i in keep])
            adjusted = hubs.penalised(
                np.array([s for s, _ in keep]), self._density[rows], self._hub_weight
            )
            ranked = sorted(
                ((s, i, float(a)) for (s, i), a in zip(keep, adjusted, strict=True)),
                key=lambda hit: -hit[2],
            )
        hits: list[Hit] = []
        # fetch records best first, a few more than k at a time, until k hits pass
        for start in range(0, len(ranked), k + 8):
            chunk = ranked[start : start + k + 8]
            records = self.store.fetch(vid for _, vid, _ in chunk)
            for score, vid, rank_score in chunk:
                if vid not in records:
                    continue
                record, text_hash = records[vid]
                if exclude_hashes and text_hash in exclude_hashes:
                    continue
                hits.append(Hit(record.id, score, record, rank_score))
                if len(hits) == k:
                    return hits
        return hits

    # --- contents ------------------------------------------------------------------------

    def records(self) -> Iterator[Consultation]:
        for _, record in self.store.iter_records():
            yield record

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(vector ids, float32 matrix) of every stored vector, memory-mapped."""
        return self._emb_ids, self._emb

    def questions(self) -> tuple[list[str], np.ndarray]:
        """Every distinct text the index embedded (first record wins) and its stored vector,
        for reusing the index as an evaluation pool or a source of training negatives."""
        fields = self.manifest.embed_fields
        first: dict[str, int] = {}
        for vid, record in self.store.iter_records():
            text = normalise(record.embedding_text(fields))
            if text and text not in first:
                first[text] = int(vid)
        vids = np.fromiter(first.values(), dtype=np.int64, count=len(first))
        rows = np.minimum(np.searchsorted(self._emb_ids, vids), len(self._emb_ids) - 1)
        if not np.array_equal(self._emb_ids[rows], vids):
            raise IndexCorrupt(f"index at {self.dir}: a consultation has no stored vector")
        return list(first), np.asarray(self._emb[rows], dtype=np.float32)

    def info(self) -> dict[str, Any]:
        """What ``simqa info`` shows."""
        m = self.manifest
        size = sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file())
        return {
            "path": str(self.root),
            "records": len(self.store),
            "vectors": len(self.vectors),
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
            "size_bytes": size,
            "created": m.created,
            "updated": m.updated,
            "sources": m.sources,
            "format_version": m.format_version,
        }


def _current_version(root: Path) -> Path:
    pointer = root / CURRENT
    if not root.exists():
        raise IndexMissing(f"no index at {root} (build one with: simqa build SOURCE --index NAME)")
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        raise IndexMissing(f"{root} is not a simqa index (no {CURRENT} file)") from None
    except (OSError, UnicodeDecodeError):
        raise IndexCorrupt(f"{pointer} is unreadable") from None
    version_dir = root / name
    if not re.fullmatch(r"v\d{6}", name) or not version_dir.is_dir():
        raise IndexCorrupt(f"{pointer} names a missing version {name!r}")
    return version_dir


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(root: Path, staging: Path) -> Path:
    """Move a finished version into place and point CURRENT at it, atomically."""
    existing = sorted(p.name for p in root.glob("v[0-9]*") if p.is_dir())
    number = int(existing[-1][1:]) + 1 if existing else 1
    final = root / f"v{number:06d}"
    for f in staging.iterdir():
        with f.open("rb") as handle:
            os.fsync(handle.fileno())
    os.rename(staging, final)
    pointer_tmp = root / f".{CURRENT}.{uuid.uuid4().hex}"
    pointer_tmp.write_text(final.name + "\n")
    with pointer_tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(pointer_tmp, root / CURRENT)
    _fsync_dir(root)
    for old in existing:  # readers that still hold old files keep them until they close
        shutil.rmtree(root / old, ignore_errors=True)
    return final


def _records_from(
    sources: Iterable[Consultation | str | Path], fmt: str | None, strict: bool, report: Any
) -> Iterator[Consultation]:
    from simqa import ingest

    paths: list[str | Path] = []
    for item in sources:
        if isinstance(item, Consultation):
            yield item
        else:
            paths.append(item)
    if paths:
        yield from ingest.load(paths, format=fmt, strict=strict, report=report)


def build(
    sources: Iterable[Consultation | str | Path],
    index: str | Path = "default",
    *,
    model: str | None = None,
    index_type: str | None = None,
    append: bool = False,
    recall: float = 0.95,
    memory: int | None = None,
    fields: str = "title+question",
    format: str | None = None,
    strict: bool = False,
    report: Any = None,
    progress: bool = False,
    batch_size: int = 64,
    encoder: str = DEFAULT_ENCODER,
    min_score: float | str | None = "auto",
    hub_penalty: float | None = None,
) -> Index:
    """Build (or with ``append=True`` extend) an index from records and/or source files.

    ``memory`` is a budget in bytes for the vector index; with ``index_type`` unset
    the index type is chosen from the corpus size and that budget. Re-ingesting an id
    updates that record; only new or changed question texts are
    embedded. Nothing becomes visible until the new version is complete.

    ``min_score`` is recorded as the index's default threshold: ``"auto"`` takes the one
    calibrated for the model (see ``simqa.threshold``), None records none.
    ``hub_penalty`` is the weight of the density penalty (``simqa.density``; 0 turns it
    off; None keeps an appended index's, or takes the default for a new one).
    """
    if not 0 < recall <= 1:
        raise SimqaError(f"--recall must be in (0, 1], got {recall}")
    if hub_penalty is not None and not 0 <= hub_penalty <= 2:
        raise SimqaError(f"hub penalty must be between 0 and 2, got {hub_penalty}")
    if isinstance(min_score, str) and min_score != "auto":
        raise SimqaError(f'min_score must be a number, None or "auto", got {min_score!r}')
    root = locate(index)
    previous: Index | None = None
    if append:
        previous = Index.open(root, model=model)
        model = previous.manifest.model
        fields = previous.manifest.embed_fields
    elif root.exists() and not (root / CURRENT).exists() and any(root.iterdir()):
        raise SimqaError(f"{root} exists and is not a simqa index; refusing to write into it")
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        encoder = previous.encoder if previous else shared_encoder(model, encoder)
        if previous:
            store = previous.store.copy_to(staging / RECORDS)
        else:
            store = RecordStore(staging / RECORDS)
        records = _records_from(sources, format, strict, report)
        to_embed, stale = store.upsert(records, fields)
        if not len(store):
            raise SimqaError("no records to index: the sources held no valid consultations")
        texts = [record.embedding_text(fields) for _, record in to_embed]
        new_ids = np.array([vid for vid, _ in to_embed], dtype=np.int64)
        new_vecs = encoder.encode(texts, batch_size=batch_size, progress=progress)

        if previous:
            old_ids, old_vecs = previous.embeddings()
            keep = ~np.isin(old_ids, np.array(stale, dtype=np.int64))
            all_ids = np.concatenate([np.asarray(old_ids)[keep], new_ids])
            all_vecs = np.concatenate([np.asarray(old_vecs)[keep], new_vecs])
            config = dict(previous.manifest.vector_index)
            reason = previous.manifest.index_reason
            vecs = vector_backends.load(previous.dir, config, mmap=False)
            if stale:
                vecs.remove(np.array(stale, dtype=np.int64))
            if len(new_ids):
                vecs.add(new_ids, new_vecs)
            if vecs.needs_compaction():
                vecs.compact(all_ids, all_vecs)
            recall_info = previous.manifest.recall
        else:
            all_ids, all_vecs = new_ids, new_vecs
            kind, params, reason = vector_backends.choose(len(all_ids), encoder.dim, memory)
            if index_type:
                params = {} if index_type != kind else params
                kind, reason = index_type, f"chosen with --index-type {index_type}"
            vecs = vector_backends.create(kind, encoder.dim, **params)
            vecs.add(all_ids, all_vecs)
            if kind == "flat":
                recall_info = {"target": recall, "recall": 1.0, "exact": True}
            else:
                recall_info = tune_search_params(vecs, all_vecs, all_ids, target=recall)
        order = np.argsort(all_ids, kind="stable")
        np.save(staging / EMBEDDING_IDS, all_ids[order])
        np.save(staging / EMBEDDINGS, np.ascontiguousarray(all_vecs[order], dtype=np.float32))
        penalty = _hub_penalty(hub_penalty, previous)
        if penalty:
            density = hubs.neighbour_density(
                vecs.search, all_vecs[order], all_ids[order], penalty["k"]
            )
            np.save(staging / DENSITY, density)
        vecs.save(staging)
        store.close()

        now = datetime.now(UTC).isoformat(timespec="seconds")
        counts = RecordStore(staging / RECORDS)
        manifest = Manifest(
            model=encoder.name,
            dim=encoder.dim,
            count=len(counts),
            vector_index=vecs.config,
            embed_fields=fields,
            encoder=encoder.backend,
            index_reason=reason,
            min_score=_min_score(min_score, encoder.name, previous),
            hub_penalty=penalty,
            recall=recall_info,
            created=previous.manifest.created if previous else now,
            updated=now,
            sources=counts.counts_by("source"),
            simqa_version=_version(),
        )
        counts.close()
        manifest.save(staging)
        if previous:
            previous.close()
        _publish(root, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Index.open(root, verify=False)


def _hub_penalty(weight: float | None, previous: Index | None) -> dict[str, Any]:
    if weight is None:
        if previous is not None:
            return dict(previous.manifest.hub_penalty)
        weight = hubs.DEFAULT_WEIGHT
    return {"weight": weight, "k": hubs.DEFAULT_K} if weight > 0 else {}


def _min_score(given: float | str | None, model: str, previous: Index | None) -> float | None:
    if given != "auto":
        return None if given is None else float(given)
    if previous is not None:
        return previous.manifest.min_score
    from simqa.threshold import default_min_score

    return default_min_score(model)


def _version() -> str:
    from simqa import __version__

    return __version__


def open_index(index: str | Path = "default", **kwargs: Any) -> Index:
    """Open a built index by name or path (see ``Index.open``)."""
    return Index.open(index, **kwargs)
