"""Split pool_new.jsonl into grading parts, whole questions each, for graders in parallel.

    python benchmarks/judged/grading_parts.py [--size 250]
    python benchmarks/judged/grading_parts.py --halves choose,chose:short --out grading/levers
    python benchmarks/judged/grading_parts.py --halves report --found-by WINNER,adapt-engine-v2 \
        --out grading/report

The pairs still to grade (pool_new.jsonl, written by run_configs.py) in their order (by
question, then pair id) are cut into round(pairs / size) parts at the question boundaries
nearest to equal shares, so that one grader sees every candidate of a question (rule 8 of
PROTOCOL.md grades each pair on its own, but a grader's reading of the query should be one).
Writes grading/partN.jsonl (lines as in pool_new.jsonl) and grading/parts.json (per part:
pairs, questions, qids; the sha256 of the pool_new.jsonl it was cut from). Earlier part files
are removed first. ``--halves`` keeps only the pairs of those halves' questions (halves.json;
``HALF:long`` / ``HALF:short``: its questions of more / at most 30 words), for a round that
grades only what a choice needs; ``--out`` writes the parts into another folder, so that an
earlier round's parts stay. ``--found-by`` keeps only the pairs those configurations
ranked (runs/pool.json), e.g. the report half's pairs of the configuration a choice adopted.
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
HALVES = HERE / "halves.json"
QUESTIONS = HERE / "questions.jsonl"


def split(sizes: list[int], parts: int) -> list[int]:
    """Indices (into ``sizes``, one per question) where parts 2..N start."""
    total, cuts, done = sum(sizes), [], 0
    ends = [done := done + s for s in sizes]  # pairs up to and including each question
    for i in range(1, parts):
        goal = total * i / parts
        cuts.append(min(range(1, len(sizes)), key=lambda j: abs(ends[j - 1] - goal)))
    return sorted(set(cuts))


def selected(spec: str) -> set[str]:
    """The qids of ``--halves`` (``choose,chose:short``)."""
    from sample_long_questions import LONG_WORDS, word_count

    halves = json.loads(HALVES.read_text(encoding="utf-8"))["halves"]
    words = {
        row["qid"]: word_count(row["text"])
        for row in map(json.loads, QUESTIONS.read_text(encoding="utf-8").splitlines())
    }
    keep: set[str] = set()
    for item in filter(None, spec.split(",")):
        half, _, length = item.partition(":")
        if half not in halves or length not in ("", "long", "short"):
            raise SystemExit(f"--halves: {item!r} is not HALF[:long|:short] of {HALVES.name}")
        keep.update(
            q for q in halves[half] if not length or (words[q] > LONG_WORDS) == (length == "long")
        )
    return keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=250, help="pairs per part, about")
    parser.add_argument("--halves", help="only these halves' questions: HALF[:long|:short],...")
    parser.add_argument("--found-by", help="only pairs these configurations ranked: NAME,...")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the parts")
    args = parser.parse_args()
    raw = NEW.read_bytes()
    lines = [json.loads(x) for x in raw.decode("utf-8").splitlines() if x.strip()]
    if args.halves:
        keep = selected(args.halves)
        lines = [x for x in lines if x["qid"] in keep]
    if args.found_by:
        wanted = set(args.found_by.split(","))
        pooled = json.loads((HERE / "runs" / "pool.json").read_text(encoding="utf-8"))
        unknown = wanted - set(pooled["configs"])
        if unknown:
            raise SystemExit(f"--found-by: no run {', '.join(sorted(unknown))}")
        found = {p for p, v in pooled["pairs"].items() if wanted & set(v["found_by"])}
        lines = [x for x in lines if x["pair_id"] in found]
    if not lines:
        raise SystemExit("no pairs to grade")
    out_dir = args.out if args.out.is_absolute() else HERE / args.out
    qids: list[str] = []
    for line in lines:
        if not qids or qids[-1] != line["qid"]:
            if line["qid"] in qids:
                raise SystemExit(f"{NEW.name}: lines of {line['qid']} are not together")
            qids.append(line["qid"])
    sizes = [sum(1 for x in lines if x["qid"] == q) for q in qids]
    parts = max(1, round(len(lines) / args.size))
    bounds = [0, *split(sizes, parts), len(qids)] if len(qids) > 1 else [0, len(qids)]
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("part*.jsonl"):
        old.unlink()
    manifest = {"source": NEW.name, "sha256": hashlib.sha256(raw).hexdigest(), "parts": {}}
    if args.halves:
        manifest["halves"] = args.halves
    if args.found_by:
        manifest["found_by"] = args.found_by
    for number, (start, end) in enumerate(itertools.pairwise(bounds), 1):
        chosen = set(qids[start:end])
        rows = [x for x in lines if x["qid"] in chosen]
        name = f"part{number}.jsonl"
        with (out_dir / name).open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        manifest["parts"][name] = {
            "pairs": len(rows),
            "questions": end - start,
            "qids": f"{qids[start]}-{qids[end - 1]}",
        }
    (out_dir / "parts.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
