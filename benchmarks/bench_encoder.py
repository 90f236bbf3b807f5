"""Encoder benchmark: sentence-transformers on torch against simqa's onnx encoder (fp32, int8).

Measures, on real questions from ../shared/data:

* query latency: one short question per call, 1 and 2 threads, in interleaved blocks;
* cold start: a fresh process that imports simqa, loads the encoder and answers one query;
* build throughput: ~5k consultation texts (LasseRegin + a MedQuAD sample, as ``simqa build``
  embeds them) per second, against plain ``SentenceTransformer.encode``;
* agreement: cosine between torch and onnx vectors of the same texts;
* retrieval: recall@1 on Curai MQP (query question_1, pool = every question_2; the doctor's
  paraphrase must come first), for each encoder and for a torch-built index queried by onnx;
* batch independence: a text's vector encoded with others equals its vector alone;
* session options: graph optimisation levels, memory arena, on the int8 query path;
* quantisation recipes: quantize_dynamic's defaults, format 1 (no fusion, every FFN
  down-projection in float), and the fused recipes (all int8, first down-projection in
  float = simqa's, every down-projection in float): fidelity, MQP, CPU per query.

Latency figures are per-round medians over interleaved rounds (median of rounds and
their spread are reported); CPU time of the calling thread is the work done, whatever
else the machine runs. Raw output: benchmarks/results/encoder.json.

    python benchmarks/bench_encoder.py            # ~10 minutes on an idle 2-core machine
    python benchmarks/bench_encoder.py --quick    # smaller sets, for a smoke run
"""

from __future__ import annotations

import argparse
import csv
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
sys.path.insert(0, str(HERE))
import provenance  # noqa: E402

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

    from simqa.encode.encoder import Encoder

    torch.set_num_threads(threads)
    return Encoder()


def load_onnx(precision: str, threads: int | None, cache_dir: Path | None = None) -> Any:
    from simqa.encode.onnx_runtime import OnnxEncoder

    return OnnxEncoder(precision=precision, threads=threads, cache_dir=cache_dir)


def per_query(encode: Callable[[list[str]], Any], queries: list[str]) -> tuple[float, float]:
    """(p50 wall ms, p50 CPU ms) of one ``encode([q])`` call over ``queries``.

    CPU time is the process's (all threads: with 2 threads it counts both).
    """
    wall, cpu = [], []
    for q in queries:
        start, start_cpu = time.perf_counter(), time.process_time()
        encode([q])
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


def latency(threads: int, queries: list[str], rounds: int) -> dict[str, dict[str, Any]]:
    """Per-query p50 wall and CPU ms of each encoder per round, rounds interleaved."""
    import torch

    encoders = {
        "torch": load_torch(threads),
        "onnx-fp32": load_onnx("fp32", threads),
        "onnx-int8": load_onnx("int8", threads),
    }
    runs: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in encoders}
    for enc in encoders.values():  # warm up
        per_query(enc.encode, queries[:10])
    for _ in range(rounds):
        for name, enc in encoders.items():
            if name == "torch":
                torch.set_num_threads(threads)  # the global torch pool, set again every block
            wall, cpu = per_query(enc.encode, queries)
            runs[name]["wall"].append(wall)
            runs[name]["cpu"].append(cpu)
    return {
        name: {"wall_ms": provenance.spread(r["wall"]), "cpu_ms": provenance.spread(r["cpu"])}
        for name, r in runs.items()
    }


def session_options(queries: list[str], rounds: int) -> dict[str, dict[str, Any]]:
    """p50 CPU ms per query of the int8 encoder (1 thread) under other session options."""
    import onnxruntime as ort

    level = ort.GraphOptimizationLevel
    variants = {
        "default (ORT_ENABLE_ALL, arena on)": {},
        "ORT_ENABLE_EXTENDED": {"graph_optimization_level": level.ORT_ENABLE_EXTENDED},
        "ORT_ENABLE_BASIC": {"graph_optimization_level": level.ORT_ENABLE_BASIC},
        "ORT_DISABLE_ALL": {"graph_optimization_level": level.ORT_DISABLE_ALL},
        "memory arena off": {"enable_cpu_mem_arena": False},
        "memory pattern off": {"enable_mem_pattern": False},
    }
    encoders = {}
    for label, settings in variants.items():
        enc = load_onnx("int8", 1)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        for key, value in settings.items():
            setattr(options, key, value)
        enc.session = ort.InferenceSession(
            str(enc.path), options, providers=["CPUExecutionProvider"]
        )
        per_query(enc.encode, queries[:10])
        encoders[label] = enc
    runs: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(rounds):
        for label, enc in encoders.items():
            runs[label].append(per_query(enc.encode, queries)[1])
    return {label: {"cpu_ms": provenance.spread(values)} for label, values in runs.items()}


def cold_start(backend: str, repeats: int) -> float:
    """Seconds for a fresh process to import simqa, load the encoder and embed one query."""
    code = (
        "import time; t = time.perf_counter(); "
        "from simqa.encode.encoder import load_encoder; "
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

    from simqa.encode.models import resolve_model

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
    speeds: dict[str, list[float]] = {name: [] for name in runs}
    vectors = {}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            vectors[name] = run()
            speeds[name].append(len(texts) / (time.perf_counter() - start))
            print(f"  {name:22s} {speeds[name][-1]:7.1f} texts/s", flush=True)
    return {name: provenance.spread(v) for name, v in speeds.items()}, vectors


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


def recipes(threads: int, n_timed: int, rounds: int) -> dict[str, dict[str, float]]:
    """Quantisation recipes on the same traced graph: fidelity, MQP recall@1, CPU per query."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from simqa.encode.onnx_export import FP32, INT8, META, TOKENIZER, _fuse, default_dir

    anchors, pool, gold = mqp()
    with tempfile.TemporaryDirectory() as tmp:
        traced_dir = Path(tmp) / "traced"
        traced_dir.mkdir()
        # the traced graph before fusion: export() keeps only the fused one
        from sentence_transformers import SentenceTransformer

        from simqa.encode.models import resolve_model
        from simqa.encode.onnx_export import _export_graph

        st = SentenceTransformer(resolve_model(None)[1], device="cpu")
        traced = traced_dir / "traced.onnx"
        _export_graph(st[0], traced)
        config = st[0].auto_model.config
        fused = traced_dir / "fused.onnx"
        _fuse(traced, fused, config.num_attention_heads, config.hidden_size)
        source = default_dir(None)
        load_onnx("int8", threads)  # the cached export: its tokenizer and metadata
        float_default = {"DefaultTensorType": onnx.TensorProto.FLOAT}
        downs_traced = _down(traced)
        downs_fused = _down(fused)
        variants = {
            "quantize_dynamic defaults (per-tensor, embeddings too), no fusion": (traced, {}),
            "format 1: no fusion, per-channel MatMul, every FFN down-projection fp32": (
                traced,
                {
                    "per_channel": True,
                    "op_types_to_quantize": ["MatMul"],
                    "nodes_to_exclude": downs_traced,
                },
            ),
            "fused, per-channel MatMul + Attention, all int8": (
                fused,
                {
                    "per_channel": True,
                    "op_types_to_quantize": ["MatMul", "Attention"],
                    "extra_options": float_default,
                },
            ),
            "fused, first FFN down-projection fp32 (simqa, format 2)": (
                fused,
                {
                    "per_channel": True,
                    "op_types_to_quantize": ["MatMul", "Attention"],
                    "nodes_to_exclude": downs_fused[:1],
                    "extra_options": float_default,
                },
            ),
            "fused, every FFN down-projection fp32": (
                fused,
                {
                    "per_channel": True,
                    "op_types_to_quantize": ["MatMul", "Attention"],
                    "nodes_to_exclude": downs_fused,
                    "extra_options": float_default,
                },
            ),
        }
        torch_enc = load_torch(threads)
        ref_pool = torch_enc.encode(pool, batch_size=64)
        ref_queries = torch_enc.encode(anchors, batch_size=64)
        reference = top1(ref_queries, ref_pool)
        results: dict[str, dict[str, Any]] = {}
        encoders = {}
        logging.disable(logging.WARNING)
        for i, (label, (graph, options)) in enumerate(variants.items()):
            folder = Path(tmp) / f"v{i}"
            folder.mkdir()
            for name in (META, TOKENIZER):
                os.symlink(source / name, folder / name)
            os.symlink(graph, folder / FP32)
            quantize_dynamic(str(graph), str(folder / INT8), weight_type=QuantType.QInt8, **options)
            enc = load_onnx("int8", threads, cache_dir=folder)
            queries = enc.encode(anchors)
            cos = agreement(ref_queries, queries)
            mixed = scores(queries, ref_pool, gold, reference)
            own = scores(queries, enc.encode(pool), gold, reference)
            results[label] = {
                "query_cos_to_torch_mean": cos["mean"],
                "query_cos_to_torch_p1": cos["p1"],
                "query_cos_to_torch_min": cos["min"],
                "recall@1 int8 index / int8 queries": own["recall@1"],
                "recall@1 torch index / int8 queries": mixed["recall@1"],
                "MB": (folder / INT8).stat().st_size / 1e6,
            }
            per_query(enc.encode, anchors[:10])
            encoders[label] = enc
        logging.disable(logging.NOTSET)
        runs: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(rounds):
            for label, enc in encoders.items():
                runs[label].append(per_query(enc.encode, anchors[:n_timed])[1])
        for label in variants:
            results[label]["cpu_ms_per_query"] = provenance.spread(runs[label])
            print(
                f"  {label:72s} cos {results[label]['query_cos_to_torch_mean']:.4f} "
                f"R@1 {results[label]['recall@1 int8 index / int8 queries']:.2f} "
                f"cpu {results[label]['cpu_ms_per_query']['median']:.2f} ms",
                flush=True,
            )
        results["torch / torch recall@1"] = scores(ref_queries, ref_pool, gold, reference)
    return results


def _down(graph: Path) -> list[str]:
    from simqa.encode.onnx_export import down_projections

    return down_projections(graph)


def batch_independence(texts: list[str]) -> dict[str, float]:
    """Largest difference between a text's int8 vector in a batch and alone."""
    enc = load_onnx("int8", None)
    alone = np.vstack([enc.encode([t]) for t in texts])
    batched = enc.encode(texts, batch_size=64)
    cos = (alone * batched).sum(axis=1)
    return {"max_abs_diff": float(np.abs(alone - batched).max()), "min_cosine": float(cos.min())}


# ---------------------------------------------------------------------------- report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sets, one round")
    parser.add_argument("--n-build", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="default benchmarks/results/encoder.json")
    args = parser.parse_args()
    n_build = 500 if args.quick else args.n_build
    rounds = 1 if args.quick else args.rounds
    n_timed = 50 if args.quick else 200
    report: dict[str, Any] = {**provenance.header(), "rounds": rounds}

    from simqa.encode.onnx_export import EXPORT_FORMAT, RECIPE, export

    report["export"] = {"format": EXPORT_FORMAT, "recipe": RECIPE}
    with tempfile.TemporaryDirectory() as tmp:  # timed apart: the user's cache is left alone
        start = time.perf_counter()
        export(None, Path(tmp))
        report["export_seconds"] = time.perf_counter() - start
    load_onnx("int8", None)  # exports into the cache if it is not there yet
    print(f"export (fp32 + int8, once per model): {report['export_seconds']:.1f}s", flush=True)

    anchors = mqp()[0]
    short = [SHORT_QUESTION] * 50
    print("query latency per call, p50 ms (median of rounds):", flush=True)
    for threads in (1, 2):
        for label, queries in (("short", short), ("MQP", anchors[:n_timed])):
            res = latency(threads, queries, rounds)
            report.setdefault(f"latency_{threads}t", {})[label] = res
            t, f, i = (res[n]["cpu_ms"]["median"] for n in ("torch", "onnx-fp32", "onnx-int8"))
            print(
                f"  {threads}t {label:5s} cpu: torch {t:.2f} fp32 {f:.2f} int8 {i:.2f} "
                f"(torch/int8 x{t / i:.1f})",
                flush=True,
            )

    print("session options (int8, 1 thread, MQP p50 CPU ms):", flush=True)
    report["session_options"] = session_options(anchors[:n_timed], rounds)
    for label, res in report["session_options"].items():
        print(f"  {label:40s} {res['cpu_ms']['median']:.2f}", flush=True)

    report["cold_start_s"] = {b: cold_start(b, 1 if args.quick else 3) for b in ("torch", "onnx")}
    print(
        "cold start (import + load + one query): "
        + "  ".join(f"{k} {v:.2f}s" for k, v in report["cold_start_s"].items()),
        flush=True,
    )

    texts = build_texts(n_build)
    report["batch_independence"] = batch_independence(texts[:300])
    print(f"int8 in a batch vs alone: {report['batch_independence']}", flush=True)
    print(f"build throughput on {len(texts):,} texts, 2 threads:", flush=True)
    speed, vectors = throughput(texts, 2, rounds)
    report["build_texts_per_s"] = speed
    ref = vectors["sentence-transformers"]
    report["cosine_to_torch"] = {
        name: agreement(ref, vectors[name]) for name in ("onnx-fp32", "onnx-int8")
    }
    print(f"cosine to torch over {len(texts):,} texts:", flush=True)
    for name, res in report["cosine_to_torch"].items():
        print(f"  {name}: " + "  ".join(f"{k} {v:.5f}" for k, v in res.items()), flush=True)

    print("MQP (query question_1, pool of every question_2, top 1):", flush=True)
    encoders = {
        "torch": load_torch(1),
        "onnx-fp32": load_onnx("fp32", 1),
        "onnx-int8": load_onnx("int8", 1),
    }
    report["mqp"] = retrieval(encoders)
    base = report["mqp"]["torch / torch"]["recall@1"]
    for name, res in report["mqp"].items():
        if isinstance(res, dict):
            print(
                f"  index {name:22s} recall@1 {res['recall@1']:.2f} "
                f"({res['recall@1'] - base:+.2f} points)",
                flush=True,
            )

    print("int8 recipes (MQP queries; cpu with 1 thread):", flush=True)
    report["recipes"] = recipes(1, n_timed, rounds)
    path = provenance.write("encoder", report, args.out)
    print(f"raw results: {path}")


if __name__ == "__main__":
    main()
