"""Encoder benchmark: sentence-transformers on torch against simqa's onnx encoder (fp32, int8).

Measures, on real questions from ../shared/data:

* query latency: one short question per call, 1 and 2 threads, in interleaved blocks;
* cold start: a fresh process that imports simqa, loads the encoder and answers one query;
* build throughput: ~5k consultation texts (LasseRegin + a MedQuAD sample, as ``simqa build``
  embeds them) per second, against plain ``SentenceTransformer.encode``;
* agreement: cosine between torch and onnx vectors of the same texts;
* retrieval: recall@1 on Curai MQP (query question_1, pool = every question_2; the doctor's
  paraphrase must come first), for each encoder and for a torch-built index queried by onnx;
* quantisation recipes: quantize_dynamic's defaults against simqa's (MatMul only, per channel).

Absolute times are noise on a shared 2-core machine (load average is printed); the ratios
come from interleaved runs in one process.

    python benchmarks/bench_encoder.py            # ~3-5 minutes
    python benchmarks/bench_encoder.py --quick    # smaller sets, for a smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
DATA = Path(os.environ.get("SIMQA_DATA", HERE.parent.parent / "shared" / "data"))
SHORT_QUESTION = "What are the side effects of metformin?"


# ---------------------------------------------------------------------------- data
def build_texts(n: int) -> list[str]:
    """What ``simqa build`` embeds: every LasseRegin consultation plus MedQuAD to reach ``n``."""
    from simqa.ingest import load

    logging.disable(logging.WARNING)  # MedQuAD has documents without QA pairs; not our concern
    try:
        consults = [r.embedding_text() for r in load([DATA / "lasseregin_medical_qa"])]
        medquad = [r.embedding_text() for r in load([DATA / "medquad"])]
    finally:
        logging.disable(logging.NOTSET)
    random.Random(0).shuffle(medquad)
    return (consults + medquad)[:n] if len(consults) < n else consults[:n]


def mqp() -> tuple[list[str], list[str], list[int]]:
    """(anchor questions, pool of every question_2, index in the pool of each paraphrase)."""
    pos: dict[str, str] = {}
    pool: dict[str, None] = {}
    with (DATA / "curai_mqp" / "mqp.csv").open(newline="") as fh:
        for _dr, q1, q2, label in csv.reader(fh):
            pool.setdefault(q2)
            if label == "1":
                pos[q1] = q2
    pool_list = list(pool)
    where = {q: i for i, q in enumerate(pool_list)}
    anchors = list(pos)
    return anchors, pool_list, [where[pos[q]] for q in anchors]


# ---------------------------------------------------------------------------- encoders
def load_torch(threads: int) -> Any:
    import torch

    from simqa.embed import Encoder

    torch.set_num_threads(threads)
    return Encoder()


def load_onnx(precision: str, threads: int | None, cache_dir: Path | None = None) -> Any:
    from simqa.onnx_encoder import OnnxEncoder

    return OnnxEncoder(precision=precision, threads=threads, cache_dir=cache_dir)


def per_query(encode: Callable[[list[str]], Any], queries: list[str]) -> tuple[float, float]:
    """(median wall ms, mean CPU ms) of one ``encode([q])`` call over ``queries``.

    With one thread the CPU time is the work done, whatever else the machine is running.
    """
    times = []
    cpu = time.process_time()
    for q in queries:
        start = time.perf_counter()
        encode([q])
        times.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu
    return 1000 * statistics.median(times), 1000 * cpu / len(queries)


def latency(threads: int, queries: list[str], rounds: int) -> dict[str, dict[str, float]]:
    """Per-query wall and CPU ms of each encoder, in interleaved blocks; each one's best block."""
    import torch

    encoders = {
        "torch": load_torch(threads),
        "onnx-fp32": load_onnx("fp32", threads),
        "onnx-int8": load_onnx("int8", threads),
    }
    best = {name: {"wall_ms": float("inf"), "cpu_ms": float("inf")} for name in encoders}
    for enc in encoders.values():  # warm up
        per_query(enc.encode, queries[:10])
    for _ in range(rounds):
        for name, enc in encoders.items():
            if name == "torch":
                torch.set_num_threads(threads)  # the global torch pool, set again every block
            wall, cpu = per_query(enc.encode, queries)
            best[name]["wall_ms"] = min(best[name]["wall_ms"], wall)
            best[name]["cpu_ms"] = min(best[name]["cpu_ms"], cpu)
    return best


def cold_start(backend: str, repeats: int) -> float:
    """Seconds for a fresh process to import simqa, load the encoder and embed one query."""
    code = (
        "import time; t = time.perf_counter(); "
        "from simqa.embed import load_encoder; "
        f"load_encoder(kind={backend!r}).encode([{SHORT_QUESTION!r}]); "
        "print(time.perf_counter() - t)"
    )
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        runs.append(float(out.strip().splitlines()[-1]))
    return min(runs)


def throughput(texts: list[str], threads: int, rounds: int) -> tuple[dict[str, float], dict]:
    """Texts per second for a build-sized batch job, and each encoder's vectors."""
    import torch
    from sentence_transformers import SentenceTransformer

    from simqa.models import resolve_model

    torch.set_num_threads(threads)
    st = SentenceTransformer(resolve_model(None)[1], device="cpu")
    fp32, int8 = load_onnx("fp32", threads), load_onnx("int8", threads)
    runs: dict[str, Callable[[], np.ndarray]] = {
        "sentence-transformers": lambda: st.encode(
            texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True
        ),
        "onnx-fp32": lambda: fp32.encode(texts, batch_size=64),
        "onnx-int8": lambda: int8.encode(texts, batch_size=64),
    }
    best = dict.fromkeys(runs, 0.0)
    vectors = {}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            vectors[name] = run()
            best[name] = max(best[name], len(texts) / (time.perf_counter() - start))
            print(f"  {name:22s} {best[name]:7.1f} texts/s", flush=True)
    return best, vectors


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    cos = (reference * other).sum(axis=1)
    return {
        "mean": float(cos.mean()),
        "p1": float(np.percentile(cos, 1)),
        "min": float(cos.min()),
    }


def top1(queries: np.ndarray, pool: np.ndarray) -> np.ndarray:
    return (queries @ pool.T).argmax(axis=1)


def scores(
    queries: np.ndarray, pool: np.ndarray, gold: list[int], reference: np.ndarray
) -> dict[str, float]:
    """recall@1 (percent of anchors whose paraphrase is nearest) and top-1 agreement with torch."""
    best = top1(queries, pool)
    return {
        "recall@1": 100.0 * float(np.mean(best == np.asarray(gold))),
        "top1_same_as_torch": 100.0 * float(np.mean(best == reference)),
    }


def retrieval(encoders: dict[str, Any]) -> dict[str, Any]:
    """MQP: the pool embedded in batches (a build), queries one at a time (a search).

    Keys are "<index encoder> / <query encoder>"; mixed pairs are an index built with one
    backend and searched with the other.
    """
    anchors, pool, gold = mqp()
    pools, queries = {}, {}
    for name, enc in encoders.items():
        pools[name] = enc.encode(pool, batch_size=64)
        queries[name] = np.vstack([enc.encode([q]) for q in anchors])
    reference = top1(queries["torch"], pools["torch"])
    pairs = [(n, n) for n in encoders] + [("torch", n) for n in encoders if n != "torch"]
    pairs += [(n, "torch") for n in encoders if n != "torch"]
    out: dict[str, Any] = {"anchors": len(anchors), "pool": len(pool)}
    for built, asked in pairs:
        out[f"{built} / {asked}"] = scores(queries[asked], pools[built], gold, reference)
    return out


def recipes(threads: int) -> dict[str, dict[str, float]]:
    """quantize_dynamic's defaults against simqa's recipe: fidelity, MQP, cost (1 thread)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from simqa.onnx_encoder import FP32, INT8, META, TOKENIZER, default_dir, down_projections

    source = default_dir(None)
    per_channel = {"per_channel": True, "op_types_to_quantize": ["MatMul"]}
    variants = {
        "quantize_dynamic defaults (per-tensor, embeddings too)": {},
        "per-tensor, MatMul only": {"op_types_to_quantize": ["MatMul"]},
        "per-channel, every MatMul": per_channel,
        "per-channel, FFN down-projections fp32 (simqa)": {
            **per_channel,
            "nodes_to_exclude": down_projections(source / FP32),
        },
    }
    anchors, pool, gold = mqp()
    torch_enc = load_torch(threads)
    ref_pool = torch_enc.encode(pool, batch_size=64)
    ref_queries = torch_enc.encode(anchors, batch_size=64)
    reference = top1(ref_queries, ref_pool)
    results = {}
    logging.disable(logging.WARNING)
    for label, options in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            for name in (META, TOKENIZER, FP32):
                os.symlink(source / name, Path(tmp) / name)
            quantize_dynamic(
                str(source / FP32), str(Path(tmp) / INT8), weight_type=QuantType.QInt8, **options
            )
            enc = load_onnx("int8", threads, cache_dir=Path(tmp))
            vecs = enc.encode(pool, batch_size=64)
            queries = np.vstack([enc.encode([q]) for q in anchors])
            cos = agreement(ref_queries, queries)
            own = scores(queries, vecs, gold, reference)
            mixed = scores(queries, ref_pool, gold, reference)
            results[label] = {
                "query_cos_mean": cos["mean"],
                "query_cos_min": cos["min"],
                "recall@1 int8/int8": own["recall@1"],
                "recall@1 torch/int8": mixed["recall@1"],
                "top1_same torch/int8": mixed["top1_same_as_torch"],
                "cpu_ms_per_query": per_query(enc.encode, anchors[:200])[1],
                "MB": (Path(tmp) / INT8).stat().st_size / 1e6,
            }
            print(
                f"  {label:50s} " + "  ".join(f"{k} {v:.4g}" for k, v in results[label].items()),
                flush=True,
            )
    logging.disable(logging.NOTSET)
    return results


# ---------------------------------------------------------------------------- report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sets, one round")
    parser.add_argument("--n-build", type=int, default=5000)
    args = parser.parse_args()
    n_build = 500 if args.quick else args.n_build
    rounds = 1 if args.quick else 3
    OUT.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"load_average_start": os.getloadavg()[0]}

    from simqa.onnx_encoder import export

    with tempfile.TemporaryDirectory() as tmp:  # timed apart: the user's cache is left alone
        start = time.perf_counter()
        export(None, Path(tmp))
        report["export_seconds"] = time.perf_counter() - start
    load_onnx("int8", None)  # exports into the cache if it is not there yet
    print(f"export (fp32 + int8, once per model): {report['export_seconds']:.1f}s", flush=True)

    anchors = mqp()[0]
    short = [SHORT_QUESTION] * 50
    print("query latency per call, ms (wall: best block median; cpu: mean):", flush=True)
    for threads in (1, 2):
        for label, queries in (("short", short), ("MQP", anchors[: 50 if args.quick else 200])):
            res = latency(threads, queries, rounds)
            report.setdefault(f"latency_{threads}t", {})[label] = res
            t, f, i = res["torch"], res["onnx-fp32"], res["onnx-int8"]
            print(
                f"  {threads}t {label:5s} wall: torch {t['wall_ms']:.2f} fp32 {f['wall_ms']:.2f} "
                f"int8 {i['wall_ms']:.2f} (torch/int8 x{t['wall_ms'] / i['wall_ms']:.1f}, "
                f"torch/fp32 x{t['wall_ms'] / f['wall_ms']:.1f})  "
                f"cpu: torch {t['cpu_ms']:.2f} fp32 {f['cpu_ms']:.2f} int8 {i['cpu_ms']:.2f} "
                f"(torch/int8 x{t['cpu_ms'] / i['cpu_ms']:.1f})",
                flush=True,
            )

    report["cold_start_s"] = {b: cold_start(b, 1 if args.quick else 3) for b in ("torch", "onnx")}
    print(
        "cold start (import + load + one query): "
        + "  ".join(f"{k} {v:.2f}s" for k, v in report["cold_start_s"].items()),
        flush=True,
    )

    texts = build_texts(n_build)
    print(f"build throughput on {len(texts):,} texts, 2 threads, batch 64:", flush=True)
    speed, vectors = throughput(texts, 2, 1 if args.quick else 2)
    report["build_texts_per_s"] = speed
    st = speed["sentence-transformers"]
    print(
        f"  ratios: int8/ST x{speed['onnx-int8'] / st:.2f}  fp32/ST x{speed['onnx-fp32'] / st:.2f}"
    )
    ref = vectors["sentence-transformers"]
    report["cosine_to_torch"] = {
        name: agreement(ref, vectors[name]) for name in ("onnx-fp32", "onnx-int8")
    }
    print(f"cosine to torch over {len(texts):,} texts:", flush=True)
    for name, res in report["cosine_to_torch"].items():
        print(f"  {name}: " + "  ".join(f"{k} {v:.5f}" for k, v in res.items()), flush=True)

    # One thread: vectors do not depend on it, and torch with two threads on a busy
    # two-core machine can take a second per query.
    print("MQP (pool batched as in a build, queries one by one):", flush=True)
    encoders = {
        "torch": load_torch(1),
        "onnx-fp32": load_onnx("fp32", 1),
        "onnx-int8": load_onnx("int8", 1),
    }
    report["mqp"] = retrieval(encoders)
    base = report["mqp"]["torch / torch"]["recall@1"]
    print(f"  {report['mqp']['anchors']} anchors, pool of {report['mqp']['pool']}", flush=True)
    for name, res in report["mqp"].items():
        if isinstance(res, dict):
            print(
                f"  index {name:22s} recall@1 {res['recall@1']:.2f} "
                f"({res['recall@1'] - base:+.2f} points)  "
                f"same top-1 as torch {res['top1_same_as_torch']:.1f}%",
                flush=True,
            )

    print("int8 recipes (MQP queries; cpu with 1 thread):", flush=True)
    report["recipes"] = recipes(1)
    report["load_average_end"] = os.getloadavg()[0]
    (OUT / "bench_encoder.json").write_text(json.dumps(report, indent=1))
    print(f"load average {report['load_average_start']:.1f} -> {report['load_average_end']:.1f}")
    print(f"wrote {OUT / 'bench_encoder.json'}")


if __name__ == "__main__":
    main()
