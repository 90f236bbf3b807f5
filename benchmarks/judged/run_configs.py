"""Rank the judged questions with each configuration, then pool their boxes for blind grading.

    python benchmarks/judged/run_configs.py [--index consults]
    python benchmarks/judged/run_configs.py --config adapted=dense:hub=0,index=consults-adapted
    python benchmarks/judged/run_configs.py --extend --config deep-bm25 --config engine


Each configuration gives the top ``k`` (4, the box) for every query of questions.jsonl and is
written to runs/NAME.json (configuration, index version, rank, scores). A configuration whose
run file exists is not run again unless ``--force``; so adding one later ranks only it, and the
pool gains only the pairs it newly brings. When questions.jsonl grows, ``--extend`` ranks the
questions a run lacks and adds them to its file: the earlier questions' entries stay as they
were, and the run's ``extended`` list records for the added qids the date, command, commit
and index, and how many of the earlier boxes the same ranking reproduces (a check that the
index is equivalent; only the added qids are written). ``--config NAME`` alone names an
existing run with its stored spec. Configurations (``NAME=KIND:key=value,...``):

- ``dense:hub=W[,distinct=1][,depth=64][,index=NAME][,k=N]``: exact cosine over the index's stored
  vectors, then, when W > 0, the best ``depth`` re-ordered by ``cosine - W * density`` (the
  stored density.npy; the engine's rule, exact instead of approximate search); ``distinct=1``
  skips copies of a question already in the box (same ``text_key``)
- ``bm25[:index=NAME,k=N]``: bm25s (the ``simqa eval`` baseline) over the records' embedded text
  (title + question)
- ``engine[:index=NAME]``: ``Index.search(text, k, min_score=-1)``, what
  ``simqa query TEXT --index NAME -k 4 --min-score -1`` shows
- ``rerank:model=DIR[,depth=12][,weight=W][,index=NAME]``: the default box's exact ranking
  to ``depth``, reordered by a cross-encoder (``simqa tune --reranker``)
- ``verified[:index=NAME,mode=drop]``: ``engine``, then the verifier leaves out the hits it
  judges a different question (``simqa query ... --verify drop``)

The default set: cosine (hub=0), hub0.25, hub0.5, bm25, engine, and cosine-distinct and
hub0.5-distinct (copies skipped). A new kind (a verifier over a configuration's candidates,
say) is one function added to ``KINDS``.

Pooling: every (question, consultation) in any run's top k is one pair, consultations whose
title and question are equal but for case and spacing (``text_key``; MedQuAD repeats FAQ
entries across its sources) being one pair, graded once. pool_blind.jsonl (for the graders)
holds per pair only its opaque id, the query and the consultation's title, question and
start of reply, sorted by question and then by the pair's hash: no configuration, rank or
score. runs/pool.json keeps which configuration ranked which consultation where. When
judgments.jsonl exists, pool_new.jsonl lists the pairs it does not grade yet. A pair already
in pool_blind.jsonl keeps its line as graded; a new pair's consultation is read from the
index its run recorded (else ``--index``) and checked against the pair id. Questions are in
qid number order (q9 before q10, q99 before q100).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

import simqa
import simqa.index.density as hubs
from simqa.box import focus
from simqa.box.render import NO_REPLY, excerpt, title_of
from simqa.encode.threshold import KEEP_ALL
from simqa.errors import SimqaError
from simqa.evaluate.judged import K, pair_id, text_key
from simqa.evaluate.methods import BM25Method, Pool, parse_spec, top_k
from simqa.files import cache_dir
from simqa.index import Index, check_query

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
QUESTIONS = HERE / "questions.jsonl"
BLIND = HERE / "pool_blind.jsonl"
NEW = HERE / "pool_new.jsonl"
JUDGMENTS = HERE / "judgments.jsonl"
DEFAULT_CONFIGS = (
    "cosine=dense:hub=0",
    "hub0.25=dense:hub=0.25",
    "hub0.5=dense:hub=0.5",
    "bm25=bm25",
    "engine=engine",
    # the box without word-for-word copies of a question it already shows
    "cosine-distinct=dense:hub=0,distinct=1",
    "hub0.5-distinct=dense:hub=0.5,distinct=1",
)
#: how much of a consultation graders see
TITLE_CHARS = 200  # some sources' titles are their whole question
QUESTION_CHARS = 1500
REPLY_CHARS = 600

#: per query, best first: [{id, text_key, score, rank_score}] (run() adds rank and pair_id)
Ranked = list[list[dict[str, Any]]]


@dataclass
class Corpus:
    """An opened index's live records in vector-id order, with their stored vectors."""

    index: Index
    ids: list[str]
    texts: list[str]  # what was embedded (title + question)
    keys: list[str]  # text_key of each: equal for word-for-word equal questions
    position: dict[str, int]  # record id -> row
    vectors: np.ndarray
    density: np.ndarray | None  # per record, None when the index was built without it

    @classmethod
    def open(cls, name: str) -> Corpus:
        index = simqa.open_index(name)
        fields = index.manifest.embed_fields
        vids, ids, texts, keys = [], [], [], []
        # the store pairs vector ids with records (Index.records_by_vid reads the same)
        for vid, record in index.snapshot.store.iter_records():
            vids.append(vid)
            ids.append(record.id)
            texts.append(record.embedding_text(fields))
            keys.append(text_key(texts[-1]))
        emb_ids, emb = index.embeddings()
        rows = np.searchsorted(emb_ids, np.asarray(vids, dtype=np.int64))
        if not np.array_equal(np.asarray(emb_ids)[rows], vids):
            raise SystemExit(f"index {name}: a record has no stored vector")
        path = index.dir / "density.npy"
        density = np.load(path)[rows] if path.exists() else None
        vectors = np.asarray(emb[rows], dtype=np.float32)
        position = {cid: row for row, cid in enumerate(ids)}
        return cls(index, ids, texts, keys, position, vectors, density)

    def hit(self, row: int, score: float, rank_score: float) -> dict[str, Any]:
        return {
            "id": self.ids[row],
            "text_key": self.keys[row],
            "score": float(score),
            "rank_score": float(rank_score),
        }

    def describe(self) -> dict[str, Any]:
        m = self.index.manifest
        return {
            "path": os.path.relpath(self.index.root),  # no machine path in committed runs
            "version": self.index.dir.name,
            "created": m.created,
            "updated": m.updated,
            "records": len(self.ids),
            "model": m.model,
            "encoder": m.encoder,
            "vector_index": m.vector_index.get("kind"),
            "hub_penalty": m.hub_penalty,
            "sources": m.sources,
        }


_corpora: dict[str, Corpus] = {}


def corpus(name: str) -> Corpus:
    if name not in _corpora:
        _corpora[name] = Corpus.open(name)
    return _corpora[name]


def dense(queries: list[str], params: dict[str, str], default_index: str) -> tuple[Ranked, dict]:
    c = corpus(params.get("index", default_index))
    weight = float(params.get("hub", 0))
    depth = int(params.get("depth", hubs.RERANK_DEPTH))
    if weight and c.density is None:
        raise SystemExit(f"index {c.index.root} has no density.npy; build it with a hub penalty")
    distinct = params.get("distinct", "0") not in ("0", "false")
    k = int(params.get("k", K))
    encoder = c.index.encoder
    # one query per call, as `simqa query` encodes it
    q = np.vstack([encoder.encode([check_query(t)]) for t in queries])
    deep = weight or distinct
    cand, cos = top_k(q @ c.vectors.T, max(depth, 2 * k) if deep else k)
    out: Ranked = []
    for rows, scores in zip(cand, cos, strict=True):
        order = hubs.penalised(scores, c.density[rows], weight) if weight else scores
        hits: list[dict[str, Any]] = []
        shown: set[str] = set()
        for j in np.argsort(-order, kind="stable"):
            if distinct and c.keys[rows[j]] in shown:
                continue  # a copy of a question already in the box
            shown.add(c.keys[rows[j]])
            hits.append(c.hit(rows[j], scores[j], order[j]))
            if len(hits) == k:
                break
        out.append(hits)
    how = {"exact": True, "hub_weight": weight, "distinct": distinct}
    return out, {**how, "rerank_depth": depth if deep else None, "index": c.describe()}


def bm25(queries: list[str], params: dict[str, str], default_index: str) -> tuple[Ranked, dict]:
    c = corpus(params.get("index", default_index))
    method = BM25Method("bm25")
    rows, scores = method.rank(queries, Pool(c.texts), int(params.get("k", K)))
    out = [
        [c.hit(i, s, s) for i, s in zip(row, sc, strict=True) if i >= 0]
        for row, sc in zip(rows, scores, strict=True)
    ]
    how = {"texts": "title+question as embedded", "k1": method.k1, "b": method.b}
    return out, {**how, "stemmer": bool(method.stemmer), "index": c.describe()}


def engine(queries: list[str], params: dict[str, str], default_index: str) -> tuple[Ranked, dict]:
    c = corpus(params.get("index", default_index))
    out = [
        [
            c.hit(c.position[h.id], h.score, h.rank_score)
            for h in c.index.search(text, k=K, min_score=KEEP_ALL)
        ]
        for text in queries
    ]
    return out, {"call": f"Index.search(text, k={K}, min_score={KEEP_ALL})", "index": c.describe()}


def verified(queries: list[str], params: dict[str, str], default_index: str) -> tuple[Ranked, dict]:
    """``engine``, then the box's verifier (simqa.box.verify): ``mode=drop`` leaves out the hits
    it judges a different question, so a box may hold fewer than k."""
    from simqa.box.verify import verifier_for, verify_hits

    c = corpus(params.get("index", default_index))
    mode = params.get("mode", "drop")
    verifier = verifier_for(c.index, mode)
    out = [
        [
            c.hit(c.position[h.id], h.score, h.rank_score)
            for h in verify_hits(c.index.search(text, k=K, min_score=KEEP_ALL), verifier, mode)
        ]
        for text in queries
    ]
    how = {"call": f"verify_hits(Index.search(text, k={K}, min_score={KEEP_ALL}), {mode!r})",
           "verifier": None if verifier is None else verifier.source}  # fmt: skip
    return out, {**how, "index": c.describe()}


def rerank(queries: list[str], params: dict[str, str], default_index: str) -> tuple[Ranked, dict]:
    """The default box's exact ranking (each question once) to ``depth`` (12), reordered by a
    cross-encoder (``model=DIR``, made by ``simqa tune --reranker``); ``weight=W`` adds W x
    cosine to its logit. With the deep pool graded, every hit it can show is judged."""
    from simqa.learn.rerank import Reranker

    depth = int(params.get("depth", 12))
    first, how = dense(queries, {**params, "hub": "0", "distinct": "1", "k": str(depth)},
                       default_index)  # fmt: skip
    c = corpus(params.get("index", default_index))
    reranker = Reranker(params["model"])
    weight = float(params.get("weight", 0))
    out: Ranked = []
    for text, hits in zip(queries, first, strict=True):
        texts = [c.texts[c.position[h["id"]]] for h in hits]
        order, scores = reranker.rerank(text, texts, [h["score"] for h in hits], weight)
        out.append(
            [
                {**hits[i], "rank_score": float(s)}
                for i, s in zip(order[:K], scores[:K], strict=True)
            ]
        )
    return out, {**how, "reranker": os.path.relpath(params["model"]), "depth": depth,
                 "weight": weight}  # fmt: skip


# --- question focus for long questions (issue 20): the levers of simqa.box.focus ------------


class Encodings:
    """Texts encoded one per model call, as ``simqa query`` encodes a question, kept between
    runs in a cache file (``$SIMQA_CACHE/judged-encodings/``, never committed) keyed by the
    model, its encoder recipe and the index's stored vectors."""

    def __init__(self, c: Corpus) -> None:
        m = c.index.manifest
        emb = m.files.get("embeddings.npy", {}).get("sha256", c.index.dir.name)
        key = hashlib.sha256(f"{m.model}\t{m.encoder}\t{m.encoder_recipe}\t{emb}".encode())
        self.path = cache_dir() / "judged-encodings" / f"{key.hexdigest()[:16]}.npz"
        self.encoder = c.index.encoder
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.exists():
            saved = np.load(self.path, allow_pickle=False)
            self.vectors = dict(zip(saved["texts"].tolist(), saved["vectors"], strict=True))
        self.added = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        for text in texts:
            if text not in self.vectors:
                self.vectors[text] = self.encoder.encode([text])[0]
                self.added += 1
        return np.vstack([self.vectors[t] for t in texts]).astype(np.float32)

    def save(self) -> None:
        if not self.added:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        texts = list(self.vectors)
        tmp = self.path.with_suffix(".partial.npz")
        np.savez(tmp, texts=np.array(texts), vectors=np.vstack([self.vectors[t] for t in texts]))
        os.replace(tmp, self.path)
        self.added = 0


_encodings: dict[str, Encodings] = {}


def encodings(c: Corpus) -> Encodings:
    if c.index.dir.as_posix() not in _encodings:
        _encodings[c.index.dir.as_posix()] = Encodings(c)
    return _encodings[c.index.dir.as_posix()]


@dataclass
class Lexicon:
    """Document frequencies of the records' embedded texts' terms (``focus.terms``), per term
    the rows holding it; the names the records' titles give (``focus.name_vocabulary``) and
    each record's embedded text as ``focus.name_tokens``, for phrase matches."""

    df: dict[str, int]
    n: int
    postings: dict[str, np.ndarray]
    names: set[str]
    name_texts: list[str]
    name_rows: dict[str, np.ndarray]

    @classmethod
    def of(cls, c: Corpus) -> Lexicon:
        rows: dict[str, list[int]] = {}
        for row, text in enumerate(c.texts):
            for term in set(focus.terms(text)):
                rows.setdefault(term, []).append(row)
        postings = {t: np.asarray(r, dtype=np.int64) for t, r in rows.items()}
        titles = [record.title for _, record in c.index.snapshot.store.iter_records()]
        return cls(
            {t: len(r) for t, r in postings.items()},
            len(c.texts),
            postings,
            focus.name_vocabulary(titles),
            [" ".join(focus.name_tokens(t)) for t in c.texts],
            {},
        )

    def rows_holding(self, name: str) -> np.ndarray:
        if name not in self.name_rows:
            self.name_rows[name] = np.asarray(
                [i for i, t in enumerate(self.name_texts) if focus.holds_name(t, name)],
                dtype=np.int64,
            )
        return self.name_rows[name]


_lexicons: dict[str, Lexicon] = {}


def lexicon(c: Corpus) -> Lexicon:
    if c.index.dir.as_posix() not in _lexicons:
        _lexicons[c.index.dir.as_posix()] = Lexicon.of(c)
    return _lexicons[c.index.dir.as_posix()]


_bm25: dict[str, tuple[BM25Method, Pool]] = {}


def bm25_scores(c: Corpus, query: str) -> np.ndarray:
    """BM25 (the ``bm25`` kind's) of every record for ``query``."""
    key = c.index.dir.as_posix()
    if key not in _bm25:
        _bm25[key] = (BM25Method("bm25"), Pool(c.texts))
    method, pool = _bm25[key]
    retriever = method._index(pool)
    tokens = method._tokens([query])[0]
    return np.asarray(retriever.get_scores(tokens), dtype=np.float32) if tokens else None


#: every parameter a focus lever reads, with its default (see ``focus_levers``)
LEVER_PARAMS = {
    "long": str(focus.LONG_WORDS), "k": str(K), "index": "",
    "split": "sentence", "subject": "1", "comb": "max", "top": "2", "qw": "1", "sw": "1",
    "part": "sq", "first": "2", "whole": "0",
    "lex": "terms", "idf": "5.5", "lw": "0.1", "depth": "100", "lexpool": "dense",
    "bmin": "0.5",
    "corpus": "", "cdepth": "50", "cside": "max",
}  # fmt: skip
#: the query side each kind starts from when no parameter says otherwise
LEVER_BASE = {"multi": "pieces", "extract": "focus", "lexical": "whole", "records": "whole"}


def focus_levers(kind: str) -> Kind:
    """The configuration kind ``kind`` of the question-focus levers (simqa.box.focus), exact
    over the index's stored vectors, each question once, top ``k``. Questions of ``long``
    words or fewer (issue 20's 30; 0: every question) get the default box (exact cosine of
    the whole text); the others:

    - ``multi``: the query's pieces (``focus.pieces``: ``split=sentence|clause``, the subject
      line when ``subject=1``), each embedded, their cosines combined per record by
      ``comb=max|wmax|mean|top`` (``top=2``; weights ``qw`` for question sentences, ``sw``
      for the subject, 1 for the rest), blended with the whole text's cosine with weight
      ``whole``
    - ``extract``: one extractive focus (``focus.focus_text``, ``part=q|s|sq|f``,
      ``first=2``) embedded instead of the whole text (``whole=0``) or beside it
    - ``lexical``: the dense score (the whole text's, or ``multi``'s / ``extract``'s when
      ``comb`` / ``part`` is given) plus ``lw`` x the share of the query's rare-term IDF mass
      (``focus.rare_terms``, ``idf`` >= 5.5) a record holds, for the dense top ``depth``
      (``lexpool=dense``: what a box can do with its candidates) or every record holding
      such a term (``lexpool=all``)
    - ``records``: the corpus side: the top ``cdepth`` records by the query's score whose
      question is long get their title (``corpus=title``) or extractive focus
      (``corpus=focus``) embedded (``focus.record_focus``), scored like the record, and the
      record's score becomes the ``cside=max|mean`` of both

    Every kind takes the others' parameters too (``corpus=`` or ``lw=`` on ``multi``...).
    """
    base = LEVER_BASE[kind]

    def rank_levers(
        queries: list[str], params: dict[str, str], default_index: str
    ) -> tuple[Ranked, dict]:
        unknown = set(params) - set(LEVER_PARAMS)
        if unknown:
            raise SystemExit(f"{kind}: unknown parameters {sorted(unknown)}")
        p = {**LEVER_PARAMS, **params}
        c = corpus(p["index"] or default_index)
        enc = encodings(c)
        side = "pieces" if "comb" in params else "focus" if "part" in params else base
        if kind == "records" and not p["corpus"]:
            p["corpus"] = "title"
        lexical = kind == "lexical" or "lw" in params
        long_words, k = int(p["long"]), int(p["k"])
        whole_weight = float(p["whole"])
        out: Ranked = []
        per_query: list[dict[str, Any]] = []
        for text in queries:
            query = check_query(text)
            note: dict[str, Any] = {"applied": focus.word_count(query) > long_words}
            texts, reduce = [query], _whole_only
            if note["applied"] and side == "pieces":
                found = focus.pieces(query, split=p["split"], subject=p["subject"] == "1")
                weights = focus.piece_weights(found, float(p["qw"]), float(p["sw"]))
                texts = [query, *(x.text for x in found)]
                note["pieces"] = [[x.kind, x.text] for x in found]
                reduce = _reduce_pieces(weights, p["comb"], int(p["top"]), whole_weight)
            elif note["applied"] and side == "focus":
                focused = focus.focus_text(query, p["part"], int(p["first"]))
                note["focus"] = focused
                if focused != query:
                    texts = [query, focused]
                    reduce = _reduce_focus(whole_weight)
            qvecs = enc(texts)
            note["encoded"] = len(texts)
            scores = reduce(qvecs @ c.vectors.T)
            if note["applied"] and p["corpus"]:
                scores = _record_side(c, enc, qvecs, reduce, scores, p, note)
            if note["applied"] and lexical:
                scores = _lexical(c, query, scores, p, note)
            whole = qvecs[0] @ c.vectors.T if len(texts) > 1 else scores
            out.append(_distinct_top(c, scores, whole, k))
            per_query.append(note)
        enc.save()
        how = {
            "exact": True,
            "lever": kind,
            "query_side": side,
            "params": p,
            "module": "simqa.box.focus",
            "per_query": per_query,
            "index": c.describe(),
        }
        return out, how

    return rank_levers


def _whole_only(scores: np.ndarray) -> np.ndarray:
    return scores[0]


def _reduce_pieces(
    weights: np.ndarray, how: str, top: int, whole_weight: float
) -> Callable[[np.ndarray], np.ndarray]:
    def reduce(scores: np.ndarray) -> np.ndarray:
        combined = focus.combine(scores[1:], weights, how, top)
        return focus.blend(scores[0], combined, whole_weight)

    return reduce


def _reduce_focus(whole_weight: float) -> Callable[[np.ndarray], np.ndarray]:
    def reduce(scores: np.ndarray) -> np.ndarray:
        return focus.blend(scores[0], scores[1], whole_weight)

    return reduce


def _record_side(
    c: Corpus,
    enc: Encodings,
    qvecs: np.ndarray,
    reduce: Callable[[np.ndarray], np.ndarray],
    scores: np.ndarray,
    p: dict[str, str],
    note: dict[str, Any],
) -> np.ndarray:
    """The corpus side: the best ``cdepth`` records' long questions also scored through
    their title or focus (``focus.record_focus``), combined by ``cside``."""
    rows = top_k(scores[None, :], int(p["cdepth"]))[0][0]
    extra_rows, extra_texts = [], []
    for row in rows.tolist():
        record = c.index.get(c.ids[row])
        extra = focus.record_focus(record.title, record.question, p["corpus"])
        if extra:
            extra_rows.append(row)
            extra_texts.append(extra)
    note["record_texts"] = len(extra_texts)
    if not extra_rows:
        return scores
    extra_scores = reduce(qvecs @ enc(extra_texts).T)
    out = scores.copy()
    idx = np.asarray(extra_rows)
    if p["cside"] == "max":
        out[idx] = np.maximum(scores[idx], extra_scores)
    elif p["cside"] == "mean":
        out[idx] = (scores[idx] + extra_scores) / 2
    else:
        raise SystemExit(f"cside is max or mean, not {p['cside']!r}")
    return out


def _lexical(
    c: Corpus, query: str, scores: np.ndarray, p: dict[str, str], note: dict[str, Any]
) -> np.ndarray:
    """``scores`` + ``lw`` x the lexical evidence each candidate holds, by ``lex``:

    - ``terms``: the share of the query's rare-term IDF mass it holds (``focus.rare_terms``,
      ``focus.lexical_bonus``, computed here from the term postings)
    - ``names``: the share of the IDF mass of the strong names the query mentions
      (``focus.mentions`` of the titles' ``focus.name_vocabulary``, ``focus.strong_names``)
    - ``bm25``: BM25 of the whole query over the maximum, where it is at least ``bmin``

    ``lexpool=dense``: only the dense top ``depth`` get it; ``all``: every record."""
    lex = lexicon(c)
    bonus = np.zeros_like(scores)
    if p["lex"] == "terms":
        rare = focus.rare_terms(query, lex.df, lex.n, float(p["idf"]))
        note["rare_terms"] = {t: round(v, 2) for t, v in rare.items()}
        for term, weight in rare.items():
            bonus[lex.postings[term]] += weight
        bonus /= sum(rare.values()) or 1.0
    elif p["lex"] == "names":
        found = focus.mentions(query, lex.names)
        df = {name: len(lex.rows_holding(name)) for name in found}
        strong = focus.strong_names(found, df, lex.n, float(p["idf"]))
        note["names"] = {name: round(strong.get(name, 0.0), 2) for name in found}
        for name, weight in strong.items():
            bonus[lex.rows_holding(name)] += weight
        bonus /= sum(strong.values()) or 1.0
    elif p["lex"] == "bm25":
        raw = bm25_scores(c, query)
        if raw is not None and raw.max() > 0:
            bonus = raw / raw.max()
            bonus[bonus < float(p["bmin"])] = 0.0
    else:
        raise SystemExit(f"lex is terms, names or bm25, not {p['lex']!r}")
    if p["lexpool"] == "dense":
        keep = np.zeros(len(scores), dtype=bool)
        keep[top_k(scores[None, :], int(p["depth"]))[0][0]] = True
        bonus[~keep] = 0.0
    elif p["lexpool"] != "all":
        raise SystemExit(f"lexpool is dense or all, not {p['lexpool']!r}")
    note["records_with_bonus"] = int(np.count_nonzero(bonus))
    return scores + float(p["lw"]) * bonus


def _distinct_top(c: Corpus, order: np.ndarray, whole: np.ndarray, k: int) -> list[dict]:
    """The top ``k`` by ``order``, each question once; ``score`` is the whole text's cosine."""
    rows = top_k(order[None, :], max(4 * k, 32))[0][0]
    hits: list[dict[str, Any]] = []
    shown: set[str] = set()
    for row in rows.tolist():
        if c.keys[row] in shown:
            continue
        shown.add(c.keys[row])
        hits.append(c.hit(row, whole[row], order[row]))
        if len(hits) == k:
            break
    return hits


Kind = Callable[[list[str], dict[str, str], str], tuple[Ranked, dict]]
KINDS: dict[str, Kind] = {
    "dense": dense,
    "bm25": bm25,
    "engine": engine,
    "verified": verified,
    "rerank": rerank,
    **{kind: focus_levers(kind) for kind in LEVER_BASE},
}


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=HERE, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def read_questions() -> list[dict[str, str]]:
    return [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines()]


def provenance() -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty_src": bool(git("status", "--porcelain", "--", "src")),
        "simqa_version": version("simqa"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} x{os.cpu_count()}",
    }


def rank(
    spec: str, questions: list[dict[str, str]], default_index: str
) -> tuple[str, dict[str, str], dict, dict[str, list[dict[str, Any]]]]:
    """(kind, params, how, boxes per qid) of configuration ``spec`` on ``questions``."""
    kind, params = parse_spec(spec.partition("=")[2])
    if kind not in KINDS:
        raise SystemExit(f"unknown kind {kind!r} in {spec!r}; choose from {', '.join(KINDS)}")
    ranked, how = KINDS[kind]([q["text"] for q in questions], params, default_index)
    boxes = {
        q["qid"]: [
            {"rank": r + 1, "pair_id": pair_id(q["qid"], hit["text_key"]), **hit}
            for r, hit in enumerate(hits)
        ]
        for q, hits in zip(questions, ranked, strict=True)
    }
    return kind, params, how, boxes


def run(spec: str, questions: list[dict[str, str]], default_index: str) -> Path:
    name = spec.partition("=")[0]
    kind, params, how, boxes = rank(spec, questions, default_index)
    result = {
        "config": name,
        "spec": spec,
        "kind": kind,
        "params": params,
        "k": int(params.get("k", K)),
        "how": how,
        **provenance(),
        "questions": boxes,
    }
    return write_run(name, result)


def extend(spec: str, questions: list[dict[str, str]], default_index: str) -> tuple[Path, dict]:
    """Rank the questions run NAME lacks and add them to its file, the earlier entries
    unchanged. Every question is ranked so that the extension can say how many of the
    earlier boxes (pair ids in order) the same configuration reproduces now."""
    name = spec.partition("=")[0]
    path = RUNS / f"{name}.json"
    result = json.loads(path.read_text(encoding="utf-8"))
    if "=" in spec and spec != result["spec"]:
        raise SystemExit(f"{name}: its run has spec {result['spec']!r}, not {spec!r}")
    added = [q["qid"] for q in questions if q["qid"] not in result["questions"]]
    if not added:
        return path, {"added": 0}
    _, _, how, boxes = rank(result["spec"], questions, default_index)
    old = [q for q in result["questions"] if q in boxes]
    same = sum(
        [h["pair_id"] for h in boxes[q]] == [h["pair_id"] for h in result["questions"][q]]
        for q in old
    )
    note = {
        "qids": added,
        **provenance(),
        "how": how,
        "earlier_boxes_reproduced": {"same": same, "of": len(old)},
    }
    result.setdefault("extended", []).append(note)
    result["questions"].update({q: boxes[q] for q in added})
    return write_run(name, result), {"added": len(added), "reproduced": f"{same}/{len(old)}"}


def write_run(name: str, result: dict[str, Any]) -> Path:
    path = RUNS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def qid_order(qid: str) -> tuple[int, str]:
    """q9 before q10, q99 before q100 (the same order as text for q01-q99)."""
    digits = qid.lstrip("q")
    return (int(digits), qid) if digits.isdigit() else (-1, qid)


def index_path_of(run: dict[str, Any], qid: str) -> str:
    """The index a run ranked ``qid`` on: an extension's, else the run's."""
    for note in run.get("extended", []):
        if qid in note["qids"]:
            return note["how"]["index"]["path"]
    return run["how"]["index"]["path"]


def pool(questions: list[dict[str, str]], default_index: str) -> dict[str, Any]:
    """Write pool_blind.jsonl and runs/pool.json from every run file; return a summary."""
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(RUNS.glob("*.json"))]
    runs = [r for r in runs if "questions" in r]
    pairs: dict[str, dict[str, Any]] = {}
    where: dict[str, list[str]] = {}  # consultation id -> index paths it can be read from
    for r in runs:
        for qid, hits in r["questions"].items():
            for hit in hits:
                entry = pairs.setdefault(hit["pair_id"], {"qid": qid, "ids": [], "found_by": {}})
                entry["found_by"].setdefault(r["config"], []).append([hit["rank"], hit["id"]])
                if hit["id"] not in entry["ids"]:
                    entry["ids"].append(hit["id"])
                paths = where.setdefault(hit["id"], [])
                if index_path_of(r, qid) not in paths:
                    paths.append(index_path_of(r, qid))
    texts = {q["qid"]: q["text"] for q in questions}
    order = sorted(pairs, key=lambda pid: (qid_order(pairs[pid]["qid"]), pid))
    # a pair already pooled keeps the line graders saw (its index may be gone or rebuilt)
    kept = {}
    if BLIND.exists():
        kept = {x["pair_id"]: x for x in map(json.loads, BLIND.read_text().splitlines())}
    mapping_path = RUNS / "pool.json"
    shown = {}
    if mapping_path.exists():
        old_pairs = json.loads(mapping_path.read_text(encoding="utf-8"))["pairs"]
        shown = {p: v["shown"] for p, v in old_pairs.items()}
    indexes: dict[str, Index | None] = {}
    lines = []
    for pid in order:
        qid = pairs[pid]["qid"]
        if pid in kept and kept[pid]["query"] == texts[qid] and pid in shown:
            pairs[pid]["shown"] = shown[pid]
            lines.append(kept[pid])
            continue
        # word-for-word equal questions are one pair; show the one with a reply, else the
        # first id, so that the file does not depend on which configuration found which
        records = [read_record(cid, pid, qid, where[cid] + [default_index], indexes)
                   for cid in sorted(pairs[pid]["ids"])]  # fmt: skip
        record = next((x for x in records if x.reply), records[0])
        pairs[pid]["shown"] = record.id
        lines.append(
            {
                "pair_id": pid,
                "qid": qid,
                "query": texts[qid],
                "title": excerpt(title_of(record), TITLE_CHARS),
                "question": excerpt(record.question, QUESTION_CHARS),
                "reply_start": excerpt(record.reply, REPLY_CHARS) if record.reply else NO_REPLY,
            }
        )
    write_jsonl(BLIND, lines)
    mapping = {
        "k": K,
        "configs": [r["config"] for r in runs],
        "pairs": {p: pairs[p] for p in order},
    }
    mapping_path.write_text(json.dumps(mapping, indent=1) + "\n", encoding="utf-8")
    summary: dict[str, Any] = {"pairs": len(lines), "questions": len({x["qid"] for x in lines})}
    if JUDGMENTS.exists():
        judged = {json.loads(x)["pair_id"] for x in JUDGMENTS.read_text().splitlines() if x.strip()}
        new = [x for x in lines if x["pair_id"] not in judged]
        write_jsonl(NEW, new)
        summary["not_yet_judged"] = len(new)
        summary["not_yet_judged_questions"] = len({x["qid"] for x in new})
    per_q = [sum(1 for x in lines if x["qid"] == q["qid"]) for q in questions]
    summary["pairs_per_question"] = {"min": min(per_q), "max": max(per_q), "mean": np.mean(per_q)}
    return summary


def read_record(
    cid: str, pid: str, qid: str, paths: list[str], indexes: dict[str, Index | None]
) -> Any:
    """Consultation ``cid`` from the first of ``paths`` that holds it as pair ``pid`` has it
    (the same question text: an index rebuilt or replaced since the run would show)."""
    for path in paths:
        if path not in indexes:
            try:
                indexes[path] = simqa.open_index(path)
            except SimqaError:
                indexes[path] = None  # gone (a scratch index of an earlier run)
        index = indexes[path]
        try:
            record = index.get(cid) if index is not None else None
        except SimqaError:
            record = None  # UnknownConsultation
        if index is not None and record is not None:
            key = text_key(record.embedding_text(index.manifest.embed_fields))
            if pair_id(qid, key) == pid:
                return record
    raise SystemExit(f"pair {pid}: no index in {paths} holds consultation {cid} as ranked")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="consults", help="index name or path (default)")
    parser.add_argument(
        "--config", action="append", help="NAME=KIND:key=value,... (default: DEFAULT_CONFIGS)"
    )
    parser.add_argument("--force", action="store_true", help="re-run configs already run")
    parser.add_argument(
        "--extend", action="store_true", help="rank the questions existing runs lack, add them"
    )
    parser.add_argument("--pool-only", action="store_true", help="only rebuild the pool files")
    args = parser.parse_args()
    RUNS.mkdir(exist_ok=True)
    questions = read_questions()
    if not args.pool_only:
        for spec in args.config or DEFAULT_CONFIGS:
            name = spec.partition("=")[0]
            exists = (RUNS / f"{name}.json").exists()
            if exists and args.extend and not args.force:
                path, done = extend(spec, questions, args.index)
                print(f"{name}: {json.dumps(done)} -> {path.relative_to(HERE)}")
                continue
            if exists and not args.force:
                print(f"{name}: run exists (--force to redo, --extend to add new questions)")
                continue
            if "=" not in spec:
                raise SystemExit(f"{spec}: no run yet; give NAME=KIND:key=value,...")
            print(f"{name}: wrote {run(spec, questions, args.index).relative_to(HERE)}")
    print(json.dumps(pool(questions, args.index), indent=1, default=float))


if __name__ == "__main__":
    main()
