"""The live index, measured: concurrent writers, filters against exact search, open time.

    python benchmarks/bench_live_index.py writers            # 2 and 8 concurrent appends
    python benchmarks/bench_live_index.py kills --trials 30  # appends killed at random moments
    python benchmarks/bench_live_index.py filters --index consults
    python benchmarks/bench_live_index.py open --size 1000000

Each part writes its raw JSON to benchmarks/results/live_index_<part>.json with the machine
description; the README and the closing notes quote those files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import provenance

import simqa
from simqa import Consultation
from simqa.index.hits import question_key

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


#: command, date, machine and load average, taken when the run starts
HEADER: dict = {}


def save(part: str, result: dict) -> None:
    path = provenance.write(f"live_index_{part}", {**HEADER, **result})
    print(json.dumps(result, indent=2))
    print(f"-> {path}", file=sys.stderr)


def writers(_args: argparse.Namespace) -> None:
    """N `simqa build --append` processes at once on one index: every record must land."""
    from simqa.ingest import load

    real = list(load([DATA / "lasseregin_medical_qa" / "questionDoctorQAs.json"]))[:500]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (2, 8):
            path = Path(tmp) / f"idx{n}"
            simqa.build(real[:100], path)
            files = []
            for w in range(n):
                f = Path(tmp) / f"{n}-{w}.jsonl"
                batch = [Consultation(id=f"w{w}-{i}", title=r.title, question=r.question)
                         for i, r in enumerate(real[100 + 10 * w : 110 + 10 * w])]  # fmt: skip
                f.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in batch))
                files.append(f)
            started = time.perf_counter()
            procs = [subprocess.Popen([sys.executable, "-m", "simqa", "build", str(f), "--index",
                                       str(path), "--append", "-q"], stderr=subprocess.PIPE,
                                      text=True) for f in files]  # fmt: skip
            codes = [p.wait() for p in procs]
            errors = [p.stderr.read() for p in procs if p.returncode]
            wall = time.perf_counter() - started
            index = simqa.open_index(path, verify=True)
            ids = {r.id for r in index.records()}
            runs.append({
                "writers": n, "records_before": 100, "records_sent": 10 * n,
                "records_after": len(index), "vectors_after": len(index.snapshot.vectors),
                "all_landed": all(f"w{w}-{i}" in ids for w in range(n) for i in range(10)),
                "exit_codes": codes, "errors": errors, "wall_seconds": round(wall, 1),
                "versions_published": int(index.dir.name[1:]),
            })  # fmt: skip
    save("writers", {"runs": runs})


def kills(args: argparse.Namespace) -> None:
    """`simqa build --append` SIGKILLed at random moments: what the index holds after each."""
    import random
    import signal

    import simqa.index.layout as layout
    from simqa.ingest import load

    real = list(load([DATA / "lasseregin_medical_qa" / "questionDoctorQAs.json"]))
    rng = random.Random(args.seed)
    trials = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "idx"
        simqa.build(real[:200], path)
        committed = {r.id for r in real[:200]}

        def append_cmd(t: int) -> list[str]:
            f = Path(tmp) / f"k{t}.jsonl"
            batch = [Consultation(id=f"k{t}-{i}", title=r.title, question=r.question)
                     for i, r in enumerate(real[200 + 5 * t : 205 + 5 * t])]  # fmt: skip
            f.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in batch))
            return [sys.executable, "-m", "simqa", "build", str(f), "--index", str(path),
                    "--append", "-q"]  # fmt: skip

        started = time.perf_counter()
        subprocess.run(append_cmd(0), check=True)
        full = time.perf_counter() - started
        committed |= {f"k0-{i}" for i in range(5)}
        for t in range(1, args.trials + 1):
            delay = rng.uniform(0.3 * full, 1.1 * full)
            proc = subprocess.Popen(append_cmd(t), stderr=subprocess.DEVNULL)
            try:
                code = proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                code = None
            leftovers = sorted(p.name for p in path.glob(".staging-*"))
            index = simqa.open_index(path, verify=True)
            present = {r.id for r in index.records()}
            batch = {f"k{t}-{i}" for i in range(5)}
            landed = batch <= present
            if code == 0 or landed:
                committed |= batch
            trials.append({
                "trial": t, "delay_s": round(delay, 2),
                "outcome": "completed" if code == 0 else "killed",
                "its_records": "all" if landed else ("none" if not batch & present else "SOME"),
                "records": len(present), "holds_every_committed": committed <= present,
                "nothing_else": present <= committed, "answers": bool(index.search_vectors(
                    np.asarray(index.embeddings()[1][:1]), 1)),
                "staging_left_behind": len(leftovers),
            })  # fmt: skip
        simqa.build([Consultation(id="after", question="Ringing ears at night")], path,
                    append=True)  # fmt: skip
        cleaned = not list(path.glob(".staging-*"))
        live = layout.current_version(path).name
    save("kills", {"one_append_seconds": round(full, 2), "trials": trials,
                   "summary": {
                       "killed": sum(t["outcome"] == "killed" for t in trials),
                       "completed": sum(t["outcome"] == "completed" for t in trials),
                       "killed_after_publishing": sum(t["outcome"] == "killed" and
                                                      t["its_records"] == "all" for t in trials),
                       "all_hold_every_committed_record": all(
                           t["holds_every_committed"] and t["nothing_else"] for t in trials),
                       "partial_writes": sum(t["its_records"] == "SOME" for t in trials),
                       "next_write_cleaned_up": cleaned, "live_version": live}})  # fmt: skip


def filters(args: argparse.Namespace) -> None:
    """Filtered search against exact search over the matching records, per department."""
    from simqa.index.store import Filter

    index = simqa.open_index(args.index)
    snap = index.snapshot
    ids, vectors = index.embeddings()
    groups = [("none", "(no filter)", len(ids))]  # the approximate index's own agreement
    groups += [("department", d, c) for d, c in snap.store.counts_by("department").items()]
    groups += [("source", d, c) for d, c in snap.store.counts_by("source").items()]
    rng = np.random.default_rng(0)
    queries = np.asarray(vectors[rng.choice(len(ids), args.queries, replace=False)])
    rows = []
    for column, value, count in groups:
        if value == "(none)":
            continue
        where = {} if column == "none" else {column: value}
        vids = snap.store.vids_where(Filter(**where)) if where else np.asarray(ids)
        matrix = np.asarray(snap.emb[snap.rows(vids)])
        records = snap.store.fetch(vids)
        fields = index.manifest.embed_fields
        keys = [question_key(records[int(v)][0], fields) for v in vids]
        equal = 0
        started = time.perf_counter()
        found = index.search_vectors(queries, args.k, **where, min_score=-1)
        per_query = (time.perf_counter() - started) / len(queries) * 1000
        for query, hits in zip(queries, found, strict=True):
            best = expected(snap, matrix, vids, keys, query, args.k)
            got = np.array([h.rank_score for h in hits])
            equal += int(len(got) == len(best) and np.allclose(got, best, atol=1e-4))
        rows.append({column: value, "records": count,
                     "share": round(count / len(ids), 5), "queries": len(queries),
                     "equal_to_exact": equal, "ms_per_query": round(per_query, 2)})  # fmt: skip
    save("filters", {"index": str(index.root), "index_type": index.manifest.vector_index["kind"],
                     "records": len(ids), "k": args.k, "hub_penalty": index.manifest.hub_penalty,
                     "filters": rows})  # fmt: skip


def expected(
    snap, matrix: np.ndarray, vids: np.ndarray, keys: list[str], query: np.ndarray, k: int
) -> np.ndarray:
    """The ranking scores exact search over the matching records gives: the best cosines
    (the best RERANK_DEPTH re-ordered by the hub penalty when the index has one), each
    question once, as a box shows it."""
    from simqa.index.density import RERANK_DEPTH

    cosines = matrix @ query
    order = np.argsort(-cosines, kind="stable")
    ranked = cosines
    if snap.density is not None:
        order = order[: max(k + 8, RERANK_DEPTH)]
        ranked = cosines.astype(np.float64).copy()
        ranked[order] -= snap.hub_weight * np.asarray(snap.density)[snap.rows(vids[order])]
        order = order[np.argsort(-ranked[order], kind="stable")]
    best, seen = [], set()
    for j in order:
        if keys[j] not in seen:
            seen.add(keys[j])
            best.append(ranked[j])
            if len(best) == k:
                break
    return np.array(best)


def open_time(args: argparse.Namespace) -> None:
    """Open an index of ``--size`` synthetic vectors: sizes and headers vs every checksum."""
    import simqa.index.layout as layout
    import simqa.vectors as vector_indexes
    from simqa.index.build import _save
    from simqa.index.manifest import Manifest
    from simqa.index.store import RecordStore

    dim, n = 384, args.size
    with tempfile.TemporaryDirectory(dir=ROOT / "indexes") as tmp:
        root = Path(tmp) / "big"
        root.mkdir()
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        centers = rng.normal(size=(2000, dim)).astype(np.float32)
        vectors = centers[rng.integers(0, 2000, n)] + 0.6 * rng.normal(size=(n, dim)).astype(
            np.float32
        )
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with layout.staged_version(root) as staging:
            store = RecordStore(staging / "records.sqlite")
            records = (Consultation(id=f"c{i}", title=f"Question {i}", question=f"synthetic {i}",
                                    department=f"d{i % 50}", tags=[f"t{i % 300}"])
                       for i in range(n))  # fmt: skip
            to_embed, _ = store.upsert(records, "title+question")
            ids = np.array([vid for vid, _ in to_embed], dtype=np.int64)
            kind, params, reason = vector_indexes.choose(n, dim)
            index = vector_indexes.create(kind, dim, **params)
            index.add(ids, vectors)
            index.set_search_params(nprobe=96, k_factor=2)
            manifest = Manifest(model="all-MiniLM-L6-v2", dim=dim, count=0, vector_index={},
                                encoder="onnx", index_reason=reason, min_score=None)  # fmt: skip
            _save(staging, store, index, ids, vectors, None, {}, manifest)
        built = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in layout.current_version(root).iterdir())
        query = vectors[:1]
        timings: dict[str, list[float]] = {"open_checks": [], "open_checksums": [],
                                           "first_hit": []}  # fmt: skip
        for _ in range(args.repeats):
            for verify, key in ((False, "open_checks"), (True, "open_checksums")):
                started = time.perf_counter()
                opened = simqa.open_index(root, verify=verify)
                timings[key].append(time.perf_counter() - started)
                if not verify:
                    started = time.perf_counter()
                    hits = opened.search_vectors(query, 5, min_score=-1)[0]
                    simqa.render(hits, "text")
                    timings["first_hit"].append(time.perf_counter() - started)
                opened.close()
    summary = {key: {"median_ms": round(1000 * float(np.median(v)), 1),
                     "min_ms": round(1000 * min(v), 1), "max_ms": round(1000 * max(v), 1)}
               for key, v in timings.items()}  # fmt: skip
    save("open", {"vectors": n, "index_type": kind, "index_bytes": size,
                  "build_seconds": round(built, 1), "repeats": args.repeats,
                  "note": "open_checks: sizes and headers (the default since the live-index "
                          "change); open_checksums: every file's sha256 (what every open did "
                          "before; now simqa info --verify and writes); first_hit: search + "
                          "fetch + render of one query vector right after opening",
                  "timings": summary})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    sub.add_parser("writers")
    kp = sub.add_parser("kills")
    kp.add_argument("--trials", type=int, default=30)
    kp.add_argument("--seed", type=int, default=0)
    f = sub.add_parser("filters")
    f.add_argument("--index", default="consults")
    f.add_argument("--queries", type=int, default=50)
    f.add_argument("-k", type=int, default=5)
    o = sub.add_parser("open")
    o.add_argument("--size", type=int, default=1_000_000)
    o.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    HEADER.update(provenance.header())
    parts = {"writers": writers, "kills": kills, "filters": filters, "open": open_time}
    parts[args.part](args)


if __name__ == "__main__":
    main()
