"""Lever (issue 13, item 3): title and question as separate vectors instead of one concatenation.

    . .venv/bin/activate
    SIMQA_HOME=indexes python benchmarks/bench_fields.py --index medquad

The MedQuAD distractors (every question of ``--index``) are scored against each query in four
ways, with the packaged model's int8 ONNX encoder as ``simqa query`` runs it, exact search:

- ``concat``: one vector of "title. question" (what simqa embeds today, ``title+question``);
- ``max``: the better of the title's and the question's cosine;
- ``sum:w``: w x title cosine + (1 - w) x question cosine.

The set's own texts have no titles and keep one vector. Reported per set: recall@1 and MRR
(the positive must outrank every other question of the set and every distractor; a query's own
text never counts), as ``simqa eval`` defines them. RQE validation chooses; MQP and MeQSum are
held out. Writes benchmarks/results/adapt_fields.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
SETS = {
    "rqe_validation (chooses)": DATA
    / "mediqa2019"
    / "MEDIQA_Task2_RQE"
    / "MEDIQA2019-Task2-RQE-ValidationSet-AMIA2016.xml",
    "mqp (held out)": DATA / "curai_mqp" / "mqp.csv",
    "meqsum (held out)": DATA / "meqsum" / "meqsum.derived.jsonl",
}
WAYS = ("concat", "max", "sum:0.25", "sum:0.5")


def distractors(index: str) -> tuple[list[str], list[str], list[str]]:
    """Each distinct embedded text of the index with its title and question."""
    from simqa.index import open_index
    from simqa.records import normalise

    opened = open_index(index)
    fields = opened.manifest.embed_fields
    seen: dict[str, tuple[str, str]] = {}
    for record in opened.records():
        text = normalise(record.embedding_text(fields))
        if text and text not in seen:
            title, question = normalise(record.title), normalise(record.question)
            seen[text] = (title or question, question or title)
    texts = list(seen)
    return texts, [seen[t][0] for t in texts], [seen[t][1] for t in texts]


def evaluate(path: Path, encode: Any, d: dict[str, np.ndarray], d_texts: set[str]) -> dict:
    from simqa.evaluate.pairs import read_pairs

    pairset = read_pairs(path)
    pool = list(pairset.candidates)
    at = {t: i for i, t in enumerate(pool)}
    queries = [q for q in pairset.queries if any(p != q.text for p in q.positives)]
    qv = encode([q.text for q in queries])
    pv = encode(pool)
    set_scores = qv @ pv.T
    out: dict[str, Any] = {"queries": len(queries), "pool": len(pool) + len(d["concat"])}
    own = set(pool)
    keep = np.array([t not in own for t in d["texts"]])  # set texts count once
    for way in WAYS:
        if way == "concat":
            dist = qv @ d["concat"][keep].T
        else:
            t, q = qv @ d["title"][keep].T, qv @ d["question"][keep].T
            w = float(way.split(":")[1]) if way.startswith("sum") else None
            dist = np.maximum(t, q) if w is None else w * t + (1 - w) * q
        r1, rr = [], []
        for i, query in enumerate(queries):
            scores = set_scores[i].copy()
            if query.text in at:
                scores[at[query.text]] = -np.inf  # its own text never counts
            positives = [at[p] for p in query.positives if p != query.text]
            best = scores[positives].max()
            others = np.delete(scores, positives)
            above = int((others > best).sum() + (dist[i] > best).sum())
            r1.append(above == 0)
            rr.append(1.0 / (1 + above) if above < 100 else 0.0)
        out[way] = {"recall@1": round(float(np.mean(r1)), 4), "mrr": round(float(np.mean(rr)), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="medquad")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "adapt_fields.json")
    args = parser.parse_args()
    from simqa.evaluate.embedcache import EmbeddingCache

    cache = EmbeddingCache()

    def encode(texts: list[str]) -> np.ndarray:
        return cache.encode(None, texts, "auto")

    texts, titles, questions = distractors(args.index)
    # the distractor list `simqa eval --distractors` embeds for MQP: its vectors are on disk
    from simqa.evaluate.pairs import read_pairs

    mqp = set(read_pairs(SETS["mqp (held out)"]).candidates)
    kept = [i for i, t in enumerate(texts) if t not in mqp]
    texts, titles, questions = ([x[i] for i in kept] for x in (texts, titles, questions))
    d = {
        "texts": texts,
        "concat": cache.encode_on_disk(None, texts, "auto"),
        "title": encode(titles),
        "question": cache.encode_on_disk(None, questions, "auto"),
    }
    results = {name: evaluate(path, encode, d, set(texts)) for name, path in SETS.items()}
    from importlib.metadata import version

    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "simqa_version": version("simqa"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} x{os.cpu_count()}, load {os.getloadavg()[0]:.1f}",
        "model": "all-MiniLM-L6-v2 (int8 onnx, as simqa query runs it), exact search",
        "distractors": {"index": args.index, "texts": len(texts), "titles": len(set(titles))},
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
