"""Every box at once and duplicate questions (issue 10), against their baselines, in one run.

Boxes: ``Index.similar_all(k)`` over every consultation against ``Index.similar(id, k)`` called
once per id, on a random sample of ids (extrapolated to the whole index; each repeat draws a
new sample and runs both, in an order rotated per repeat, so both see the same machine load
and neither always pays the cold start); the sampled ids' hits must be equal. Also timed: the
batched vector-index probes alone, ``similar_all``'s floor. Then the whole ``simqa similar
--all`` writer (JSON lines with the Related FAQ).

Duplicates: ``simqa.box.duplicates.similar_pairs`` (faiss inverted-file range search) against
sentence-transformers' ``util.paraphrase_mining_embeddings`` (its defaults) and, with
``--exact``, an exact faiss range search, all on the index's stored vectors: time, and the
share of paraphrase mining's pairs at or above the threshold that each finds. Ten found
pairs whose texts differ are kept.

    python benchmarks/bench_boxes.py --index consults          # the README quick-start index
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sentence_transformers.util import paraphrase_mining_embeddings

import simqa
from simqa.box.all_boxes import write_boxes
from simqa.box.duplicates import DEFAULT_MIN_SCORE, find_duplicates, similar_pairs
from simqa.index.search import SPARE
from simqa.records import normalise
from simqa.vectors.faissio import set_threads

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import provenance  # noqa: E402
from provenance import spread  # noqa: E402

RESULTS = provenance.RESULTS


def boxes(index: simqa.Index, k: int, sample: int, repeats: int, seed: int) -> dict:
    """Per-id ``similar`` (all threads, as a user's loop runs it, and one faiss thread, its
    best case on a shared machine) against ``similar_all`` (all threads), every repeat.
    Wall time, and the process's CPU time (all threads; less sensitive to other jobs)."""
    ids = [r.id for r in index.records()]
    names = ("similar", "similar_1_thread", "similar_all", "vector_search_only")
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    checked, unequal = 0, []
    for repeat in range(repeats):
        picked = random.Random(seed + repeat).sample(ids, min(sample, len(ids)))
        scale = len(ids) / len(picked)
        expected, found = {}, {}
        # each repeat runs the four in a rotated order: none always pays the cold start
        for name in names[repeat % 4 :] + names[: repeat % 4]:
            set_threads(1 if name == "similar_1_thread" else None)
            start, start_cpu = time.perf_counter(), time.process_time()
            if name == "vector_search_only":  # similar_all's floor: its batched index probes
                snapshot = index.snapshot
                for first in range(0, len(snapshot.emb_ids), 256):
                    batch = np.asarray(snapshot.emb[first : first + 256], np.float32)
                    snapshot.candidates(batch, k + SPARE, None)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
            elif name == "similar_all":
                wanted = set(picked)
                found = {rid: hits for rid, hits in index.similar_all(k) if rid in wanted}
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
            else:
                expected = {rid: index.similar(rid, k) for rid in picked}
                wall[name].append((time.perf_counter() - start) * scale)
                cpu[name].append((time.process_time() - start_cpu) * scale)
        set_threads(None)
        for rid in picked:
            a = [(h.id, round(h.score, 5)) for h in expected[rid]]
            b = [(h.id, round(h.score, 5)) for h in found.get(rid, [])]
            checked += 1
            if a != b:
                unequal.append({"id": rid, "similar": a, "similar_all": b})

    def ratios(
        times: dict[str, list[float]], base: str, to: str = "similar_all"
    ) -> dict[str, float]:
        pairs = zip(times[base], times[to], strict=True)
        return spread([a / b for a, b in pairs])

    return {
        "consultations": len(ids),
        "k": k,
        "sample_per_repeat": min(sample, len(ids)),
        "wall_minutes_for_every_id": {n: spread([t / 60 for t in v]) for n, v in wall.items()},
        "cpu_minutes_for_every_id": {n: spread([t / 60 for t in v]) for n, v in cpu.items()},
        "per_id_wall_ms": {n: spread([t / len(ids) * 1000 for t in v]) for n, v in wall.items()},
        "speedup_wall_vs_similar": ratios(wall, "similar"),
        "speedup_wall_vs_similar_1_thread": ratios(wall, "similar_1_thread"),
        "speedup_cpu_vs_similar": ratios(cpu, "similar"),
        "speedup_cpu_vs_similar_1_thread": ratios(cpu, "similar_1_thread"),
        "bound_wall_similar_over_vector_search_only": ratios(wall, "similar", "vector_search_only"),
        "ids_compared": checked,
        "ids_with_different_hits": len(unequal),
        "differences": unequal[:10],
    }


def writer(index: simqa.Index, k: int) -> dict:
    """The whole ``simqa similar --all --out FILE`` path, Related FAQ included."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "boxes.jsonl"
        start, start_cpu = time.perf_counter(), time.process_time()
        count = write_boxes(index, k, out=out)
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        size = out.stat().st_size
        with out.open() as handle:
            lines = [json.loads(next(handle)) for _ in range(min(count, 2000))]
    with_topics = sum(1 for line in lines if line["related_faq"])
    return {
        "boxes": count,
        "wall_minutes": round(seconds / 60, 3),
        "cpu_minutes": round(cpu / 60, 3),
        "megabytes": round(size / 1e6, 1),
        "share_with_related_faq_first_2000": round(with_topics / len(lines), 3),
    }


def timed(run):
    """``run()``'s result, wall seconds and process CPU seconds."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, time.perf_counter() - start, time.process_time() - start_cpu


def duplicates(
    index: simqa.Index, min_score: float, repeats: int, pm_repeats: int, exact: bool
) -> dict:
    _, stored = index.embeddings()
    vectors = np.ascontiguousarray(stored, dtype=np.float32)
    systems = {
        "simqa": lambda: similar_pairs(vectors, min_score),
        "paraphrase_mining": lambda: paraphrase_mining_embeddings(torch.from_numpy(vectors.copy())),
    }
    if exact:
        systems["exact_range_search"] = lambda: similar_pairs(
            vectors, min_score, exact_max=len(vectors)
        )
    wall: dict[str, list[float]] = {name: [] for name in systems}
    cpu: dict[str, list[float]] = {name: [] for name in systems}
    pairs: dict[str, set[tuple[int, int]]] = {}
    for repeat in range(repeats):
        for name, run in systems.items():
            if name != "simqa" and repeat >= pm_repeats:
                continue
            found, seconds, cpu_seconds = timed(run)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
            if name == "paraphrase_mining":
                pairs[name] = {(a, b) for s, a, b in found if s >= min_score}
            else:
                pairs[name] = set(zip(found[0].tolist(), found[1].tolist(), strict=True))
    reference = pairs["paraphrase_mining"]
    report = {
        name: {
            "wall_seconds": spread(wall[name]),
            "cpu_seconds": spread(cpu[name]),
            "pairs": len(pairs[name]),
            "share_of_paraphrase_mining_pairs": round(
                len(pairs[name] & reference) / len(reference), 5
            ),
            "speedup_wall_vs_paraphrase_mining": round(
                statistics.median(wall["paraphrase_mining"]) / statistics.median(wall[name]), 2
            ),
            "speedup_cpu_vs_paraphrase_mining": round(
                statistics.median(cpu["paraphrase_mining"]) / statistics.median(cpu[name]), 2
            ),
        }
        for name in systems
    }
    start = time.perf_counter()
    found = find_duplicates(index, min_score)
    command = time.perf_counter() - start
    return {
        "min_score": min_score,
        "vectors": len(vectors),
        "systems": report,
        "find_duplicates_seconds_with_records": round(command, 2),
        "groups": len(found.groups),
        "largest_group": max((len(g.members) for g in found.groups), default=0),
        "pairs_with_identical_text": sum(1 for p in found.pairs if _same_text(p)),
        "examples": examples(found, 10),
    }


def _same_text(pair) -> bool:
    return _text(pair.a) == _text(pair.b)


def _text(record) -> str:
    return normalise(record.embedding_text()).casefold()


def examples(found, count: int) -> list[dict]:
    """``count`` pairs whose texts differ: every kind of source pair gets its share, spread
    evenly over its pairs from the most to the least similar."""
    by_kind: dict[tuple[str, str], list] = {}
    for pair in found.pairs:
        if not _same_text(pair):
            by_kind.setdefault(tuple(sorted((pair.a.source, pair.b.source))), []).append(pair)
    chosen: list = []
    kinds = sorted(by_kind, key=lambda kind: len(by_kind[kind]))
    for n, kind in enumerate(kinds):
        pool, share = by_kind[kind], (count - len(chosen)) // (len(kinds) - n)
        picks = np.linspace(0, len(pool) - 1, min(share, len(pool))).round().astype(int)
        chosen += [pool[i] for i in picks]
    chosen.sort(key=lambda p: -p.score)
    return [p.to_json() for p in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", default="consults")
    parser.add_argument("-k", type=int, default=4)
    parser.add_argument("--sample", type=int, default=1000, help="ids per repeat for similar")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pm-repeats", type=int, default=2, help="repeats of the slow baselines")
    parser.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE)
    parser.add_argument("--exact", action="store_true", help="also time exact range search")
    parser.add_argument("--skip", choices=("boxes", "duplicates"), action="append", default=[])
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_boxes.json")
    args = parser.parse_args()

    index = simqa.open_index(args.index)
    result: dict = {
        **provenance.header(),
        "index": {k: index.info()[k] for k in ("records", "index_type", "index_params")},
    }
    if "boxes" not in args.skip:
        result["boxes"] = boxes(index, args.k, args.sample, args.repeats, seed=10)
        result["writer"] = writer(index, args.k)
        print(json.dumps(result["boxes"], indent=1)[:1500], result["writer"], flush=True)
    if "duplicates" not in args.skip:
        result["duplicates"] = duplicates(
            index, args.min_score, args.repeats, args.pm_repeats, args.exact
        )
        print(json.dumps(result["duplicates"]["systems"], indent=1), flush=True)
    print(f"wrote {provenance.write('bench_boxes', result, args.out)}")


if __name__ == "__main__":
    main()
