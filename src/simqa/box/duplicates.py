"""Duplicate questions: pairs (and groups) of consultations whose questions are near-identical.

A site merges them, or links one to the other. The pairs come from the index's stored
vectors (nothing is re-encoded) by a faiss range search: every pair whose cosine is at
least the threshold. Above ``EXACT_MAX`` vectors the search goes through an inverted file
(``IndexIVFFlat``, about sqrt(n) lists, ``NPROBE`` of them probed): near-identical vectors
fall in the same or a neighbouring list, so it finds nearly every pair at a fraction of the
all-pairs cost, and its scores are exact inner products of the stored vectors.
Groups are the connected components of the pairs, so a chain A~B~C is one group.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from simqa.box.render import excerpt, plain, question_after_title, title_of
from simqa.errors import IndexCorrupt, SimqaError
from simqa.index import Index
from simqa.records import Consultation

DEFAULT_MIN_SCORE = 0.95
#: below this many vectors the range search is exact (flat)
EXACT_MAX = 20_000
#: inverted lists probed per vector: on the 50k quick-start index this finds all 8,065 pairs
#: at 0.95 that exact paraphrase mining finds (benchmarks/results/bench_boxes.json)
NPROBE = 8
FORMATS = ("text", "json", "csv")


@dataclass
class Pair:
    """Two consultations whose questions score ``score`` (cosine) or more."""

    a: Consultation
    b: Consultation
    score: float

    def to_json(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "a": _brief(self.a),
            "b": _brief(self.b),
        }


@dataclass
class Group:
    """Consultations joined by duplicate pairs; ``score`` is the group's best pair."""

    members: list[Consultation]
    score: float
    pairs: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "size": len(self.members),
            "pairs": self.pairs,
            "members": [_brief(r) for r in self.members],
        }


@dataclass
class Duplicates:
    """What ``simqa duplicates`` reports: the pairs, most similar first, and their groups."""

    min_score: float
    pairs: list[Pair] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "min_score": self.min_score,
            "pairs": [p.to_json() for p in self.pairs],
            "groups": [g.to_json() for g in self.groups],
        }


def _brief(record: Consultation) -> dict[str, str]:
    return {
        "id": record.id,
        "title": record.title,
        "question": record.question,
        "source": record.source,
        "url": record.url,
    }


def similar_pairs(
    vectors: np.ndarray,
    min_score: float = DEFAULT_MIN_SCORE,
    *,
    nprobe: int = NPROBE,
    exact_max: int = EXACT_MAX,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of rows of ``vectors`` (unit length) whose inner product is at
    least ``min_score``, as arrays (i, j, score) sorted best first; exact up to
    ``exact_max`` vectors, through an inverted file probing ``nprobe`` lists above."""
    if not -1 <= min_score <= 1:
        raise SimqaError(f"--min-score must be a cosine between -1 and 1, got {min_score}")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    if n <= exact_max:
        index: faiss.Index = faiss.IndexFlatIP(dim)
    else:
        nlist = int(math.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)
        index.train(x[np.sort(sample)])
        index.nprobe = min(nprobe, nlist)
    index.add(x)
    # faiss keeps scores strictly above the radius; the exact test is applied below
    lims, scores, found = index.range_search(x, float(np.nextafter(min_score, -2)))
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(lims).astype(np.int64))
    found = found.astype(np.int64)
    keep = (rows != found) & (scores >= min_score)
    i, j = np.minimum(rows, found)[keep], np.maximum(rows, found)[keep]
    # a pair is found from both ends, or from one when the other end's probes missed it
    first = np.unique(i * n + j, return_index=True)[1]
    i, j, s = i[first], j[first], scores[keep][first]
    order = np.lexsort((j, i, -s))
    return i[order], j[order], s[order]


def groups_of(n: int, i: np.ndarray, j: np.ndarray) -> list[np.ndarray]:
    """Connected components (of two or more) of the graph with edges (i, j)."""
    if not len(i):
        return []
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    sizes = np.bincount(label)
    members = np.flatnonzero(sizes[label] > 1)
    order = np.argsort(label[members], kind="stable")
    members = members[order]
    cuts = np.flatnonzero(np.diff(label[members])) + 1
    return np.split(members, cuts)


def find_duplicates(
    index: Index, min_score: float = DEFAULT_MIN_SCORE, *, nprobe: int = NPROBE
) -> Duplicates:
    """The pairs and groups of near-identical questions in an index (its stored vectors)."""
    vids, matrix = index.embeddings()
    by_vid = list(index.records_by_vid())  # row i of the stored vectors is record i
    if not np.array_equal([vid for vid, _ in by_vid], vids):
        raise IndexCorrupt("the index's records and stored vectors do not line up")
    records = [record for _, record in by_vid]
    i, j, s = similar_pairs(np.asarray(matrix), min_score, nprobe=nprobe)
    result = Duplicates(min_score)
    result.pairs = [
        Pair(records[a], records[b], float(c))
        for a, b, c in zip(i.tolist(), j.tolist(), s.tolist(), strict=True)
    ]
    best = np.full(len(records), -np.inf)
    np.maximum.at(best, i, s)
    np.maximum.at(best, j, s)
    degree = np.bincount(np.concatenate([i, j]), minlength=len(records))
    groups = [
        Group([records[m] for m in members], float(best[members].max()),
              int(degree[members].sum()) // 2)
        for members in groups_of(len(records), i, j)
    ]  # fmt: skip
    result.groups = sorted(groups, key=lambda g: (-g.score, -len(g.members)))
    return result


def render(found: Duplicates, format: str = "text", *, groups: bool = False) -> str:
    """The pairs (or with ``groups`` the groups) as text or CSV; JSON always holds both."""
    if format == "json":
        return json.dumps(found.to_json(), ensure_ascii=False, indent=2)
    if format == "csv":
        return _csv(found, groups)
    if format == "text":
        return _text(found, groups)
    raise SimqaError(f"unknown output format {format!r}; choose one of {', '.join(FORMATS)}")


def _line(record: Consultation) -> str:
    title = title_of(record)
    question = question_after_title(title, record.question)
    said = f"{excerpt(title, 60)} | {excerpt(question, 80)}" if question else excerpt(title, 140)
    return f"{plain(record.id)}  {said}"


def _text(found: Duplicates, groups: bool) -> str:
    head = (
        f"{len(found.pairs):,} duplicate pairs in {len(found.groups):,} groups "
        f"(cosine >= {found.min_score:g}), most similar first"
    )
    lines = [head]
    if groups:
        for n, group in enumerate(found.groups, start=1):
            lines.append(f"group {n}: {len(group.members)} consultations, best {group.score:.4f}")
            lines += [f"  {_line(r)}" for r in group.members]
    else:
        for pair in found.pairs:
            lines += [f"{pair.score:.4f}  {_line(pair.a)}", f"        {_line(pair.b)}"]
    return "\n".join(lines)


def _csv(found: Duplicates, groups: bool) -> str:
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    if groups:
        out.writerow(["group", "score", "id", "title", "question"])
        for n, group in enumerate(found.groups, start=1):
            for r in group.members:
                out.writerow([n, f"{group.score:.4f}", r.id, r.title, r.question])
    else:
        out.writerow(["score", "id_a", "id_b", "title_a", "title_b", "question_a", "question_b"])
        for p in found.pairs:
            row = [p.a.id, p.b.id, p.a.title, p.b.title, p.a.question, p.b.question]
            out.writerow([f"{p.score:.4f}", *row])
    return buffer.getvalue().rstrip("\n")
