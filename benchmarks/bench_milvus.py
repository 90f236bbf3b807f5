"""simqa on Milvus against the embedded faiss index, same corpus, same run.

For each corpus (the quick-start index's 50,587 stored vectors, or N synthetic vectors
distributed like them, see ``bench_vectors.Synthesiser``), each repeat:

- builds both vector indexes from the same stored vectors (no embedding in either):
  the embedded one as ``simqa build`` does (``vectors.choose`` + ``tune_search_params``),
  the Milvus one through ``simqa.milvus.from_vectors`` (insert, seal, index, tune, alias);
- answers 1,000 held-out queries (real patient questions of the Curai pairs, none indexed; for
  the synthetic corpus, fresh synthetic vectors) at top-10, one query per request, with
  the records a hit shows: faiss search + the SQLite fetch for the embedded path, one
  Milvus search returning the records for Milvus (Strong consistency, the default, and
  Bounded), and with 4 client threads;
- reports recall@10 against exact search, p50 / p99 latency and QPS, and the ratios.

A real Milvus 2.3 standalone server (PyPI ``milvus``) runs on a loopback port for the run.

    python benchmarks/bench_milvus.py corpus --index consults      # SIMQA_HOME=indexes
    python benchmarks/bench_milvus.py synthetic --size 1000000 --repeats 2
    python benchmarks/bench_milvus.py sizes --index consults        # bytes per Milvus row
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

import simqa
import simqa.vectors as vector_indexes
from simqa.index.store import RecordStore
from simqa.milvus.collection import from_vectors
from simqa.milvus.embedded import EmbeddedMilvus
from simqa.milvus.schema import HIT_FIELDS, vid_of
from simqa.records import Consultation
from simqa.vectors.tuning import TIE_EPS, tune_search_params

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
K = 10
N_QUERIES = 1000


def machine() -> dict[str, Any]:
    import pymilvus

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "simqa": simqa.__version__,
        "faiss": faiss.__version__,
        "pymilvus": pymilvus.__version__,
        "milvus_server": "2.3.5 standalone (PyPI milvus, embedded etcd + rocksmq)",
        "load_average_at_start": os.getloadavg(),
    }


def held_out_questions(n: int, indexed: set[str]) -> list[str]:
    """Real patient questions (both sides of the Curai medical question pairs), none of them
    among the quick-start corpora's questions."""
    with (DATA / "curai_mqp" / "mqp.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    texts = dict.fromkeys(" ".join(q.split()) for row in rows for q in row[1:3])
    out = [q for q in texts if len(q) > 20 and q not in indexed]
    rng = np.random.default_rng(0)
    return [out[i] for i in rng.choice(len(out), n, replace=False)]


def recall(found: np.ndarray, queries: np.ndarray, vectors: np.ndarray, kth: np.ndarray) -> float:
    """Share of the exact top-10 found, counting ties with the 10th as hits (as tuning does)."""
    rows = np.clip(found, 0, len(vectors) - 1)
    scores = np.einsum("qd,qkd->qk", queries, vectors[rows])
    hits = (found >= 0) & (scores >= kth[:, None] - TIE_EPS)
    return float(hits.sum() / (len(queries) * K))


def timed(one: Callable[[int], np.ndarray], n: int, threads: int) -> dict[str, Any]:
    """Answer queries 0..n-1 with ``threads`` clients; latency of each, QPS of all."""
    latencies = np.zeros(n)
    found = np.full((n, K), -1, dtype=np.int64)
    nxt = iter(range(n))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                i = next(nxt, None)
            if i is None:
                return
            t = time.perf_counter()
            found[i] = one(i)
            latencies[i] = time.perf_counter() - t

    started = time.perf_counter()
    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - started
    return {
        "qps": n / wall,
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "found": found,
    }


def corpus_data(args: argparse.Namespace) -> tuple[list[Consultation], np.ndarray, np.ndarray, Any]:
    index = simqa.open_index(args.index)
    _, matrix = index.embeddings()
    records = [r for _, r in index.records_by_vid()]
    texts = {" ".join(r.question.split()) for r in records}
    queries = index.encoder.encode(held_out_questions(args.queries, texts), batch_size=128)
    return records, np.ascontiguousarray(matrix, dtype=np.float32), queries, index.manifest


def synthetic_data(
    args: argparse.Namespace,
) -> tuple[list[Consultation], np.ndarray, np.ndarray, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_vectors import Synthesiser

    index = simqa.open_index(args.index)
    real = np.ascontiguousarray(index.embeddings()[1], dtype=np.float32)
    synth = Synthesiser(real)
    vectors = synth(args.size, seed=1)
    queries = synth(args.queries, seed=2)
    records = [
        Consultation(id=f"s{i}", question=f"synthetic question {i}") for i in range(args.size)
    ]
    return records, vectors, queries, index.manifest


def run_once(
    records: list[Consultation],
    vectors: np.ndarray,
    queries: np.ndarray,
    manifest: Any,
    kth: np.ndarray,
    server: EmbeddedMilvus,
    work: Path,
    milvus_index_type: str | None = None,
) -> dict[str, Any]:
    n, dim = vectors.shape
    out: dict[str, Any] = {}
    ids = np.arange(1, n + 1, dtype=np.int64)  # the store's vids start at 1

    # --- embedded: faiss + SQLite, as simqa build writes them ------------------------------
    store = RecordStore(work / "records.sqlite")
    store.upsert(records, manifest.embed_fields)
    t = time.perf_counter()
    kind, params, _ = vector_indexes.choose(n, dim)
    faiss_index = vector_indexes.create(kind, dim, **params)
    faiss_index.add(ids, vectors)
    tuned = tune_search_params(faiss_index, vectors, ids) if kind != "flat" else {"params": {}}
    out["embedded_build_s"] = time.perf_counter() - t
    out["embedded_index"] = {"kind": kind, **params, **tuned.get("params", {})}

    def embedded(i: int) -> np.ndarray:
        _, found = faiss_index.search(queries[i : i + 1], K)
        store.fetch(found[0][found[0] >= 0])  # the records a box shows
        return found[0] - 1  # vid -> row

    # --- Milvus: the same vectors through simqa.milvus --------------------------------------
    t = time.perf_counter()
    root = from_vectors(
        zip(records, vectors, strict=True),
        n,
        work / "milvus-index",
        server.uri,
        model=manifest.model,
        dim=dim,
        fields=manifest.embed_fields,
        index_type=milvus_index_type,
    )
    out["milvus_build_s"] = time.perf_counter() - t
    milvus = simqa.open_index(root)
    out["milvus_index"] = {"kind": milvus.info()["index_type"], **milvus.info()["index_params"]}
    out["milvus_tuning"] = milvus.manifest.recall
    key_to_row = {vid_of(record.id): row for row, record in enumerate(records)}

    def through_milvus(i: int) -> np.ndarray:
        hits = milvus.vectors.raw(queries[i : i + 1], K, output_fields=HIT_FIELDS)[0]
        found = np.full(K, -1, dtype=np.int64)
        found[: len(hits)] = [key_to_row[int(h["id"])] for h in hits]
        return found

    for name, fn in (("embedded", embedded), ("milvus_strong", through_milvus)):
        for threads in (1, 4):
            res = timed(fn, len(queries), threads)
            res["recall_at_10"] = recall(res.pop("found"), queries, vectors, kth)
            out[f"{name}_{threads}t"] = res
    os.environ["SIMQA_MILVUS_CONSISTENCY"] = "Bounded"
    try:
        for threads in (1, 4):
            res = timed(through_milvus, len(queries), threads)
            res["recall_at_10"] = recall(res.pop("found"), queries, vectors, kth)
            out[f"milvus_bounded_{threads}t"] = res
    finally:
        os.environ.pop("SIMQA_MILVUS_CONSISTENCY")
    store.close()
    return out


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and range over the repeats, and embedded / Milvus ratios per repeat."""

    def spread(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    out: dict[str, Any] = {}
    for key in ("embedded_build_s", "milvus_build_s"):
        out[key] = spread([r[key] for r in runs])
    systems = [k for k in runs[0] if isinstance(runs[0][k], dict) and "qps" in runs[0][k]]
    for system in systems:
        for metric in ("qps", "p50_ms", "p99_ms", "recall_at_10"):
            out[f"{system}.{metric}"] = spread([r[system][metric] for r in runs])
    for milvus in [s for s in systems if s.startswith("milvus")]:
        threads = milvus.rsplit("_", 1)[1]
        base = f"embedded_{threads}"
        out[f"qps_ratio embedded/{milvus}"] = spread(
            [r[base]["qps"] / r[milvus]["qps"] for r in runs]
        )
        out[f"p50_ratio {milvus}/embedded"] = spread(
            [r[milvus]["p50_ms"] / r[base]["p50_ms"] for r in runs]
        )
    out["build_ratio milvus/embedded"] = spread(
        [r["milvus_build_s"] / r["embedded_build_s"] for r in runs]
    )
    return out


def row_sizes(args: argparse.Namespace) -> None:
    """Bytes a Milvus row takes per consultation of the index (what sizes a query node)."""
    from simqa.milvus.schema import to_row

    index = simqa.open_index(args.index)
    _, matrix = index.embeddings()
    record_bytes, key_bytes = [], []
    for row_number, (_, record) in enumerate(index.records_by_vid()):
        row = to_row(record, matrix[row_number], index.manifest.embed_fields)
        record_bytes.append(len(row["record"].encode()))
        key_bytes.append(
            sum(
                len(str(row[f]).encode())
                for f in ("id", "department", "source", "ask_iso", "text_hash")
            )
            + sum(len(t.encode()) for t in row["tags"])
        )
    rec = np.array(record_bytes)
    # how fast one thread reads stored vectors (what an IVF_FLAT query node's scan costs):
    # exact search, one query at a time, over all of them (77 MB: past the CPU caches)
    flat = faiss.IndexFlatIP(matrix.shape[1])
    flat.add(np.ascontiguousarray(matrix, dtype=np.float32))
    faiss.omp_set_num_threads(1)
    probes = np.ascontiguousarray(matrix[:200], dtype=np.float32)
    rates = []
    for _ in range(5):
        started = time.perf_counter()
        for i in range(len(probes)):
            flat.search(probes[i : i + 1], K)
        rates.append(len(probes) * flat.ntotal / (time.perf_counter() - started))
    report = {
        "machine": machine(),
        "consultations": len(rec),
        "dim": int(matrix.shape[1]),
        "vector_bytes": int(matrix.shape[1] * 4),
        "record_json_bytes": {
            "mean": float(rec.mean()),
            "median": float(np.median(rec)),
            "p99": float(np.percentile(rec, 99)),
            "max": int(rec.max()),
        },
        "filter_fields_bytes_mean": float(np.mean(key_bytes)),
        "scan_vectors_per_second_one_thread": {
            "median": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
            "rounds": rates,
            "how": "faiss IndexFlatIP, 200 single queries x 5 rounds",
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "milvus_row_sizes.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", choices=["corpus", "synthetic", "sizes"])
    parser.add_argument("--index", default="consults", help="the quick-start index")
    parser.add_argument("--size", type=int, default=1_000_000, help="synthetic vectors")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, default=N_QUERIES, help="held-out queries")
    parser.add_argument("--tag", default="", help="suffix of the result file's name")
    parser.add_argument("--milvus-index-type", default=None, help="default: as simqa chooses")
    args = parser.parse_args()
    if args.corpus == "sizes":
        row_sizes(args)
        return
    started = machine()
    data = corpus_data(args) if args.corpus == "corpus" else synthetic_data(args)
    records, vectors, queries, manifest = data
    exact, _ = faiss.knn(queries, vectors, K, faiss.METRIC_INNER_PRODUCT)
    kth = exact[:, K - 1]
    runs = []
    work_root = Path(tempfile.mkdtemp(prefix="bench-milvus-"))
    try:
        with EmbeddedMilvus(work_root / "server") as server:
            for repeat in range(args.repeats):
                work = work_root / f"run{repeat}"
                work.mkdir()
                result = run_once(
                    records, vectors, queries, manifest, kth, server, work, args.milvus_index_type
                )
                print(json.dumps({"repeat": repeat, **result}), flush=True)
                runs.append(result)
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    name = "corpus" if args.corpus == "corpus" else f"synthetic_{args.size}"
    report = {
        "machine": {**started, "load_average_at_end": os.getloadavg()},
        "corpus": {
            "vectors": len(vectors),
            "dim": vectors.shape[1],
            "queries": len(queries),
            "kind": args.corpus,
        },
        "summary": summary(runs),
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"milvus_{name}{'_' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    print(f"-> {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
