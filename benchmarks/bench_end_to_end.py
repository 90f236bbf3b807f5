"""End to end for one query: encode, search, fetch the records, render the Similar Q&A section.

    python benchmarks/bench_end_to_end.py --index medquad [--queries 300] [--threads 1]

Queries are real patient questions (question_1 of ../shared/data/curai_mqp/mqp.csv), one at a
time, as a site answering page views would send them. Each stage is timed separately for both
query encoders (torch, onnx int8) in the same run; p50 and p99 over all queries.
"""

from __future__ import annotations

import argparse
import csv
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


def run(index: Index, texts: list[str], k: int) -> dict[str, np.ndarray]:
    stages: dict[str, list[float]] = {"encode": [], "search+fetch": [], "render": [], "total": []}
    index.search(texts[0], k)  # load the model and warm up
    for text in texts:
        t0 = time.perf_counter()
        vector = index.encoder.encode([check_query(text)])
        t1 = time.perf_counter()
        hits = index.search_vectors(vector, k)[0]
        t2 = time.perf_counter()
        simqa.render(hits, "text")
        t3 = time.perf_counter()
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
        import faiss
        import torch

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    texts = queries(args.queries)
    print(
        f"# end to end, {len(texts)} queries, k={args.k}, threads={args.threads or 'all'}, "
        f"{platform.processor() or platform.machine()}"
    )
    results = {}
    for backend in ("torch", "onnx"):
        index = Index.open(args.index, backend=backend)
        results[backend] = run(index, texts, args.k)
        size = len(index)
    print(f"index {args.index}: {size:,} consultations\n")
    print("| encoder | stage | p50 ms | p99 ms |\n|---|---|---|---|")
    for backend, stages in results.items():
        for name, values in stages.items():
            p50, p99 = np.percentile(values, [50, 99])
            print(f"| {backend} | {name} | {p50:.2f} | {p99:.2f} |")
    ratio = np.median(results["torch"]["total"]) / np.median(results["onnx"]["total"])
    print(f"\nonnx int8 end-to-end p50 is {ratio:.1f}x faster than torch")


if __name__ == "__main__":
    main()
