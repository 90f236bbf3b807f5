"""The box's verifier: pair-classification accuracy and added latency (issue 13, item 2).

    . .venv/bin/activate
    python benchmarks/bench_verify.py packaged --index consults     # fit simqa.box.verify.PACKAGED
    python benchmarks/bench_verify.py accuracy --index consults --index consults-adapt

``packaged`` fits the packaged model's verifier exactly as ``simqa adapt`` fits an adapted
one (300 packaged RQE training pairs held out with seed 0, their labelled and mined different
questions; ``adapt.calibrate_model``) and prints the constants for ``simqa.box.verify.PACKAGED``.

``accuracy`` scores, for each index's encoder as the engine runs it (its int8 ONNX), the
labelled pairs of MEDIQA RQE validation (302 pairs) and of the Curai MQP half (1,664 pairs),
and reports the pair accuracy of:

- ``verifier``: P(same) >= 0.5 with the index's verifier (its curve was fitted on packaged
  training pairs: neither evaluated set chose it);
- ``min_score``: the index's min-score threshold (today's "nothing similar" cosine);
- ``chosen_on_rqe`` / ``chosen_on_mqp``: the best cosine threshold on one set, reported on
  the other (the threshold's own set is labelled ``chose``).

and the verifier's added time for a box of 5 hits (``verify_hits``, many repeats; p50 and
p99), beside the query it follows (``Index.search``, k=5) for scale. Writes
benchmarks/results/adapt_verify.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
RQE_VAL = (
    DATA / "mediqa2019" / "MEDIQA_Task2_RQE" / "MEDIQA2019-Task2-RQE-ValidationSet-AMIA2016.xml"
)
MQP = DATA / "curai_mqp" / "mqp.csv"
OUT = HERE / "results" / "adapt_verify.json"
QUERIES = [
    "my legs jerk when I am falling asleep",
    "What are the side effects of metformin?",
    "can I take ibuprofen while pregnant",
    "How is shingles treated?",
    "chest pain when breathing in deeply after a cold",
]


def packaged(index: str, seed: int) -> dict[str, Any]:
    from simqa.index import open_index
    from simqa.learn.adapt import CALIBRATION_PAIRS, _dedupe, calibrate_model, packaged_pairs
    from simqa.learn.training_pairs import mine_negatives

    opened = open_index(index)
    if opened.manifest.model != "all-MiniLM-L6-v2":
        raise SystemExit(f"{index} is not built with the packaged model")
    pool, vectors = opened.questions()
    pairs, _sha = packaged_pairs()
    pairs = _dedupe(pairs)
    random.Random(seed).shuffle(pairs)
    held_out = pairs[:CALIBRATION_PAIRS]
    mined = mine_negatives(held_out, model=None, pool=pool, pool_vectors=vectors, seed=seed)
    return calibrate_model("all-MiniLM-L6-v2", held_out, mined)


def labelled(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    from simqa.evaluate.pairs import read_pairs

    pairs = [p for p in read_pairs(path).pairs if p.left != p.right]
    return [p.left for p in pairs], [p.right for p in pairs], np.array([p.label for p in pairs])


def cosines(encoder: Any, lefts: list[str], rights: list[str]) -> np.ndarray:
    texts = list(dict.fromkeys(lefts + rights))
    vectors = dict(zip(texts, encoder.encode(texts), strict=True))
    return np.array([float(vectors[a] @ vectors[b]) for a, b in zip(lefts, rights, strict=True)])


def accuracy_of(index_name: str, sets: dict[str, tuple], repeats: int) -> dict[str, Any]:
    from simqa.box.verify import Verifier, verify_hits
    from simqa.evaluate.metrics import accuracy, tune_threshold
    from simqa.index import open_index

    idx = open_index(index_name)
    verifier = Verifier.for_index(idx)
    encoder = idx.encoder
    scores = {name: cosines(encoder, a, b) for name, (a, b, _y) in sets.items()}
    labels = {name: y.astype(bool) for name, (_a, _b, y) in sets.items()}
    out: dict[str, Any] = {
        "index": index_name,
        "version": idx.dir.name,
        "model": idx.manifest.model,
        "encoder": getattr(encoder, "kind", "?"),
        "min_score": idx.manifest.min_score,
        "verifier": None
        if verifier is None
        else {
            "slope": verifier.slope,
            "intercept": verifier.intercept,
            "threshold": round(verifier.threshold, 4),
            "source": verifier.source,
        },
        "sets": {},
    }
    chosen = {name: tune_threshold(scores[name], labels[name]) for name in sets}
    for name in sets:
        s, y = scores[name], labels[name]
        row: dict[str, Any] = {"pairs": len(y), "same": int(y.sum())}
        if verifier is not None:
            row["verifier"] = round(accuracy(s, y, verifier.threshold), 4)
        if idx.manifest.min_score is not None:
            row["min_score"] = round(accuracy(s, y, idx.manifest.min_score), 4)
        for other, (threshold, own) in chosen.items():
            key = f"chosen_on_{other}"
            row[key] = round(own if other == name else accuracy(s, y, threshold), 4)
            row[key + "_threshold"] = round(threshold, 4)
            if other == name:
                row[key + "_note"] = "chose: this set picked the threshold (not held out)"
        out["sets"][name] = row
    out["latency"] = latency(idx, verifier, repeats, verify_hits)
    return out


def latency(idx: Any, verifier: Any, repeats: int, verify_hits: Any) -> dict[str, Any]:
    """Added time of the verifier on a box of 5, against the search it follows."""
    from simqa.encode.threshold import KEEP_ALL

    boxes = [idx.search(q, k=5, min_score=KEEP_ALL) for q in QUERIES]
    search_ms, verify_ms = [], []
    for _ in range(max(1, repeats // 50)):
        for q in QUERIES:
            t = time.perf_counter()
            idx.search(q, k=5, min_score=KEEP_ALL)
            search_ms.append((time.perf_counter() - t) * 1e3)
    if verifier is None:
        return {"search_ms_p50": statistics.median(search_ms)}
    for _ in range(repeats):
        for box in boxes:
            t = time.perf_counter()
            verify_hits(box, verifier, "flag")
            verify_ms.append((time.perf_counter() - t) * 1e3)
    verify_ms.sort()
    return {
        "box": 5,
        "verify_ms_p50": round(statistics.median(verify_ms), 4),
        "verify_ms_p99": round(verify_ms[int(0.99 * (len(verify_ms) - 1))], 4),
        "verify_calls": len(verify_ms),
        "search_ms_p50": round(statistics.median(search_ms), 3),
        "search_calls": len(search_ms),
    }


def describe() -> dict[str, Any]:
    from importlib.metadata import version

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=HERE, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_commit": git("rev-parse", "HEAD"),
        "simqa_version": version("simqa"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} x{os.cpu_count()}, load {os.getloadavg()[0]:.1f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["packaged", "accuracy"])
    parser.add_argument("--index", action="append", help="index name(s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.what == "packaged":
        print(json.dumps(packaged((args.index or ["consults"])[0], args.seed), indent=2))
        return
    sets = {"rqe": labelled(RQE_VAL), "mqp": labelled(MQP)}
    results = [accuracy_of(name, sets, args.repeats) for name in args.index or ["consults"]]
    report = {**describe(), "sets": {"rqe": str(RQE_VAL.name), "mqp": str(MQP.name)},
              "results": results}  # fmt: skip
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
