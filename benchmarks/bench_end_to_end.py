"""End to end for one query, as ``simqa query`` runs it: encode, search, hub penalty, fetch, render.

    python benchmarks/bench_end_to_end.py --index consults-enc --threads 1
    python benchmarks/bench_end_to_end.py --index consults --questions meqsum --names off,on \
        --encoders onnx

Queries are real patient questions, one per call, as a site answering page views sends
them: ``--questions mqp`` (default: question_1 of ../shared/data/curai_mqp/mqp.csv, short)
or ``meqsum`` (the consumer health questions of ../shared/data/meqsum, mostly long: the
names lever's case; the report says how many are over 30 words). ``--names off,on`` runs
each encoder without and with the box's names lever (``simqa.lexicon.NAMES``: a long
question's rare names, ``Index.search_vectors(..., texts=, names=)``), interleaved. Per
query, on one thread, each stage's CPU time of the calling thread (every library here then
works in it) and wall time:

* ``encode``: tokenise, run the model, pool (``index.encoder.encode([text])``);
* ``search+rank+fetch``: ``Index.search_vectors`` (the vector index's candidates, the hub
  penalty's re-ordering when the index has one, min-score, records fetched from SQLite);
* ``vector search``: the vector index alone, at the depth a query asks for (part of the
  stage above), and at the other depth (64 candidates with the hub penalty, k + 8 without),
  which is what the penalty's extra candidates cost;
* ``render``: the text Similar Q&A box;
* ``names``: with the lever on, its own work (part of ``search+rank+fetch``): the names the
  question mentions, their holders, the bonus (``simqa.index.names.boost``); the first
  long question's loading of the name postings is outside the timed rounds (warm-up) and
  reported as ``names_load_ms``.

Every encoder (torch, the index's own onnx) runs all queries once per round, rounds
interleaved; a stage's figure is the median over rounds of its per-round p50, with the
spread of those p50s. Raw output: benchmarks/results/end_to_end.json.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provenance

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MQP = DATA / "curai_mqp" / "mqp.csv"
MEQSUM = DATA / "meqsum" / "meqsum.derived.jsonl"
STAGES = ("encode", "search+rank+fetch", "vector search", "other depth", "render", "total",
          "names")  # fmt: skip


def queries(n: int, source: str = "mqp") -> list[str]:
    if source == "meqsum":
        import json

        lines = MEQSUM.read_text(encoding="utf-8").splitlines()
        texts = list(dict.fromkeys(json.loads(line)["chq"] for line in lines if line.strip()))
        return texts[:n]
    with MQP.open(newline="", encoding="utf-8") as handle:
        texts = list(dict.fromkeys(row[1] for row in csv.reader(handle)))
    return texts[:n]


def one_pass(
    index: Any, texts: list[str], k: int, clock: Callable[[], float], lever: Any = None
) -> dict:
    """Milliseconds per stage for each query, by ``clock`` (``lever``: the names lever)."""
    import simqa
    import simqa.index.density as density
    from simqa.index.hits import check_query
    from simqa.index.names import boost
    from simqa.index.search import SPARE

    snapshot = index.snapshot
    plain = min(len(snapshot.vectors), k + SPARE)
    hub = min(len(snapshot.vectors), max(k + SPARE, density.RERANK_DEPTH))
    depth, other = (hub, plain) if snapshot.density is not None else (plain, hub)
    out: dict[str, list[float]] = {name: [] for name in STAGES}
    for text in texts:
        t0 = clock()
        vector = index.encoder.encode([text])
        t1 = clock()
        hits = index.search_vectors(vector, k, texts=[text], names=lever)[0]
        t2 = clock()
        simqa.render(hits, "text")
        t3 = clock()
        snapshot.candidates(vector, depth, None)
        t4 = clock()
        snapshot.candidates(vector, other, None)
        t5 = clock()
        if lever is not None:
            boost(snapshot.names(), check_query(text), lever)
        t6 = clock()
        times = (t1 - t0, t2 - t1, t4 - t3, t5 - t4, t3 - t2, t3 - t0, t6 - t5)
        for name, value in zip(STAGES, times, strict=True):
            out[name].append(1000 * value)
    return {"depth": depth, "other_depth": other, "ms": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", action="append", help="index name or path (repeatable)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encoders", default="onnx,torch")
    parser.add_argument("-k", type=int, default=4)
    parser.add_argument("--questions", choices=("mqp", "meqsum"), default="mqp")
    parser.add_argument("--names", default="off", help="off, on, or off,on (interleaved)")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/end_to_end.json")
    args = parser.parse_args()
    os.environ["SIMQA_THREADS"] = str(args.threads)  # encoders and faiss read it
    import faiss
    import torch

    from simqa.index import Index
    from simqa.index.hits import check_query
    from simqa.lexicon import NAMES

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    texts = queries(args.queries, args.questions)
    levers = {"off": None, "on": NAMES}
    chosen = [x.strip() for x in args.names.split(",") if x.strip()]
    if not chosen or set(chosen) - set(levers):
        raise SystemExit(f"--names is off, on or off,on, not {args.names!r}")
    report: dict[str, Any] = {
        **provenance.header(),
        "questions": args.questions,
        "long_questions": sum(NAMES.applies(check_query(t)) for t in texts),
        "names": chosen,
        "lever": vars(NAMES),
        "queries": len(texts),
        "k": args.k,
        "threads": args.threads,
        "rounds": args.rounds,
        "clock": "CPU time of the calling thread (time.thread_time); wall: perf_counter",
        "indexes": {},
    }
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    # each configuration: an encoder, without or with the names lever
    configs = {
        (e if x == "off" else f"{e}+names"): (e, levers[x]) for e in encoders for x in chosen
    }
    for name in args.index or ["consults-enc"]:
        opened = {e: Index.open(name, encoder=e, refresh_every=None) for e in encoders}
        info = opened[encoders[0]].info()
        names_load_ms = None
        for index in opened.values():
            index.search(texts[0], args.k)  # load the model, warm up
            if "on" in chosen and names_load_ms is None:
                start = time.perf_counter()
                index.snapshot.names()  # the name postings: the first long question's cost
                names_load_ms = 1000 * (time.perf_counter() - start)
            for text in texts[:20]:
                index.search(text, args.k, names=NAMES if "on" in chosen else None)
        runs: dict[str, dict[str, list]] = {c: {"cpu": [], "wall": []} for c in configs}
        for _round in range(args.rounds):
            for label, (enc, lever) in configs.items():  # interleaved: each round runs each
                index = opened[enc]
                runs[label]["cpu"].append(one_pass(index, texts, args.k, time.thread_time, lever))
                runs[label]["wall"].append(
                    one_pass(index, texts, args.k, time.perf_counter, lever)
                )
        entry: dict[str, Any] = {
            "records": info["records"],
            "index_type": info["index_type"],
            "index_params": info["index_params"],
            "hub_penalty": info["hub_penalty"],
            "min_score": info["min_score"],
            "encoder_built_with": info["encoder"],
            "names_load_ms": names_load_ms,
            "by_encoder": {},
        }
        for enc in configs:
            first = runs[enc]["cpu"][0]
            stages: dict[str, Any] = {"depth": first["depth"], "other_depth": first["other_depth"]}
            for clock in ("cpu", "wall"):
                for stage in STAGES:
                    p50 = [float(np.percentile(r["ms"][stage], 50)) for r in runs[enc][clock]]
                    p99 = [float(np.percentile(r["ms"][stage], 99)) for r in runs[enc][clock]]
                    stages[f"{stage} {clock} p50 ms"] = provenance.spread(p50)
                    stages[f"{stage} {clock} p99 ms"] = statistics.median(p99)
            entry["by_encoder"][enc] = stages
        report["indexes"][name] = entry
        for index in opened.values():
            index.close()
        print_table(name, entry)
    path = provenance.write("end_to_end", report, args.out)
    print(f"\nraw results: {path}")


def print_table(name: str, entry: dict[str, Any]) -> None:
    print(
        f"\n{name}: {entry['records']:,} consultations, {entry['index_type']} "
        f"{entry['index_params']}, hub penalty {entry['hub_penalty'] or 'off'}"
    )
    print("| encoder | stage | p50 CPU ms (median of rounds, min-max) | p99 CPU ms | p50 wall ms |")
    print("|---|---|---|---|---|")
    for enc, stages in entry["by_encoder"].items():
        for stage in STAGES:
            cpu = stages[f"{stage} cpu p50 ms"]
            label = stage
            if stage == "vector search":
                label = f"vector search ({stages['depth']} candidates)"
            elif stage == "other depth":
                label = f"vector search at {stages['other_depth']} candidates (not run)"
            print(
                f"| {enc} | {label} | {cpu['median']:.2f} ({cpu['min']:.2f}-{cpu['max']:.2f}) "
                f"| {stages[f'{stage} cpu p99 ms']:.2f} "
                f"| {stages[f'{stage} wall p50 ms']['median']:.2f} |"
            )


if __name__ == "__main__":
    main()
