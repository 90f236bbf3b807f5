"""End to end for one query: encode, search, fetch the records, render the Similar Q&A section.

    python benchmarks/bench_end_to_end.py --index medquad [--queries 300] [--threads 1]

Queries are real patient questions (question_1 of ../shared/data/curai_mqp/mqp.csv), one at a
time, as a site answering page views would send them. Each stage is timed separately for both
query encoders (torch, onnx int8) in the same run; p50 and p99 over all queries.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

import numpy as np

import simqa
from simqa.index import Index, check_query

MQP = Path(__file__).resolve().parents[2] / "shared" / "data" / "curai_mqp" / "mqp.csv"


def queries(n: int) -> list[str]:
    with MQP.open(newline="", encoding="utf-8") as handle:
        texts = list(dict.fromkeys(row[1] for row in csv.reader(handle)))
    return texts[:n]


STAGES = ("encode", "search+fetch", "render", "total")


def run(index: Index, texts: list[str], k: int, clock) -> dict[str, np.ndarray]:
    """Per-stage milliseconds by ``clock`` (wall: perf_counter; CPU: process_time)."""
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    index.search(texts[0], k)  # load the model and warm up
    for text in texts:
        t0 = clock()
        vector = index.encoder.encode([check_query(text)])
        t1 = clock()
        hits = index.search_vectors(vector, k)[0]
        t2 = clock()
        simqa.render(hits, "text")
        t3 = clock()
        for name, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
            stages[name].append(value * 1000)
    return {name: np.array(values) for name, values in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="medquad")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("-k", type=int, default=4)
    args = parser.parse_args()
    if args.threads:
        os.environ["SIMQA_THREADS"] = str(args.threads)  # the encoders read it
        import faiss
        import torch

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    texts = queries(args.queries)
    print(
        f"# end to end, {len(texts)} queries, k={args.k}, threads={args.threads or 'all'}, "
        f"{platform.processor() or platform.machine()}"
    )
    wall, cpu = {}, {}
    for backend in ("torch", "onnx"):
        index = Index.open(args.index, encoder=backend)
        wall[backend] = run(index, texts, args.k, time.perf_counter)
        cpu[backend] = run(index, texts, args.k, time.process_time)
        size = len(index)
    print(f"index {args.index}: {size:,} consultations\n")
    print("CPU ms count the work done; wall ms include waiting for a shared CPU.\n")
    print("| encoder | stage | p50 CPU ms | p99 CPU ms | p50 wall ms | p99 wall ms |")
    print("|---|---|---|---|---|---|")
    for backend in wall:
        for name in STAGES:
            c50, c99 = np.percentile(cpu[backend][name], [50, 99])
            w50, w99 = np.percentile(wall[backend][name], [50, 99])
            print(f"| {backend} | {name} | {c50:.2f} | {c99:.2f} | {w50:.2f} | {w99:.2f} |")
    for label, data in (("CPU", cpu), ("wall", wall)):
        ratio = np.median(data["torch"]["total"]) / np.median(data["onnx"]["total"])
        print(f"\nonnx int8 end-to-end p50 ({label}) is {ratio:.1f}x faster than torch", end="")
    print()


if __name__ == "__main__":
    main()
