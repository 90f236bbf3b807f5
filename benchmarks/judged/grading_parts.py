"""Split pool_new.jsonl into grading parts, whole questions each, for graders in parallel.

    python benchmarks/judged/grading_parts.py [--size 250]

The pairs still to grade (pool_new.jsonl, written by run_configs.py) in their order (by
question, then pair id) are cut into round(pairs / size) parts at the question boundaries
nearest to equal shares, so that one grader sees every candidate of a question (rule 8 of
PROTOCOL.md grades each pair on its own, but a grader's reading of the query should be one).
Writes grading/partN.jsonl (lines as in pool_new.jsonl) and grading/parts.json (per part:
pairs, questions, qids; the sha256 of the pool_new.jsonl it was cut from). Earlier part files
are removed first.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEW = HERE / "pool_new.jsonl"
OUT = HERE / "grading"


def split(sizes: list[int], parts: int) -> list[int]:
    """Indices (into ``sizes``, one per question) where parts 2..N start."""
    total, cuts, done = sum(sizes), [], 0
    ends = [done := done + s for s in sizes]  # pairs up to and including each question
    for i in range(1, parts):
        goal = total * i / parts
        cuts.append(min(range(1, len(sizes)), key=lambda j: abs(ends[j - 1] - goal)))
    return sorted(set(cuts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=250, help="pairs per part, about")
    args = parser.parse_args()
    raw = NEW.read_bytes()
    lines = [json.loads(x) for x in raw.decode("utf-8").splitlines() if x.strip()]
    qids: list[str] = []
    for line in lines:
        if not qids or qids[-1] != line["qid"]:
            if line["qid"] in qids:
                raise SystemExit(f"{NEW.name}: lines of {line['qid']} are not together")
            qids.append(line["qid"])
    sizes = [sum(1 for x in lines if x["qid"] == q) for q in qids]
    parts = max(1, round(len(lines) / args.size))
    bounds = [0, *split(sizes, parts), len(qids)] if len(qids) > 1 else [0, len(qids)]
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("part*.jsonl"):
        old.unlink()
    manifest = {"source": NEW.name, "sha256": hashlib.sha256(raw).hexdigest(), "parts": {}}
    for number, (start, end) in enumerate(itertools.pairwise(bounds), 1):
        chosen = set(qids[start:end])
        rows = [x for x in lines if x["qid"] in chosen]
        name = f"part{number}.jsonl"
        with (OUT / name).open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        manifest["parts"][name] = {
            "pairs": len(rows),
            "questions": end - start,
            "qids": f"{qids[start]}-{qids[end - 1]}",
        }
    (OUT / "parts.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
