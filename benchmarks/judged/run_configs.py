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
from simqa.box.render import NO_REPLY, excerpt, title_of
from simqa.encode.threshold import KEEP_ALL
from simqa.errors import SimqaError
from simqa.evaluate.judged import K, pair_id, text_key
from simqa.evaluate.methods import BM25Method, Pool, parse_spec, top_k
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


Kind = Callable[[list[str], dict[str, str], str], tuple[Ranked, dict]]
KINDS: dict[str, Kind] = {
    "dense": dense,
    "bm25": bm25,
    "engine": engine,
    "verified": verified,
    "rerank": rerank,
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
