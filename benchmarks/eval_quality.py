"""The README's quality table: ``simqa eval`` on each labelled set, MedQuAD as distractors.

    simqa build ../shared/data/medquad --index medquad          # once: 47k distractors
    python benchmarks/eval_quality.py --distractors medquad      # -> results/eval_quality.json

Methods: ``bm25``; ``dense-exact`` (exact cosine, torch) and the same on the int8 onnx
encoder; ``simqa`` (what ``simqa query`` does: int8 onnx, build's index type and tuning,
the default hub penalty and min-score) and the same engine path on torch; the hub penalty
at 0.25 / 0.5 / 0.75, and ``hybrid-score:bm25=0.1``. One embedding cache serves every set,
so each text is embedded once per encoder. Sets that chose a default are labelled in the
output (``chose_settings``): the README's headline figures come from the others.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provenance

#: relative to where the script runs, so result files name no machine path
DATA = Path(os.path.relpath(Path(__file__).resolve().parents[2] / "shared" / "data"))
RQE = DATA / "mediqa2019" / "MEDIQA_Task2_RQE"
SETS = {
    "mqp": DATA / "curai_mqp" / "mqp.csv",
    "meqsum": DATA / "meqsum" / "meqsum.derived.jsonl",
    "rqe-validation": RQE / "MEDIQA2019-Task2-RQE-ValidationSet-AMIA2016.xml",
}
METHODS = (
    "bm25",
    "dense-exact",
    "dense-exact:encoder=onnx",
    "simqa",
    "simqa:encoder=torch",
    "simqa:hub=0.25",
    "simqa:hub=0.5",
    "simqa:hub=0.75",
    "hybrid-score:bm25=0.1",
    "truncate:words=64",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distractors", default="medquad", help="index whose questions join; none")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma list of {', '.join(SETS)}")
    parser.add_argument("--method", action="append", help="override the methods (repeatable)")
    parser.add_argument("--limit", type=int, help="a seeded sample of queries (smoke runs)")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/eval_quality.json")
    parser.add_argument(
        "--markdown", type=Path, help="print the README table from this results file and stop"
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    from simqa.evaluate.compare import evaluate
    from simqa.evaluate.embedcache import EmbeddingCache

    cache = EmbeddingCache()
    report: dict[str, Any] = {**provenance.header(), "distractors": args.distractors, "sets": {}}
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        print(f"== {name}", flush=True)
        rows = evaluate(
            SETS[name],
            methods=args.method or list(METHODS),
            distractors=None if args.distractors == "none" else args.distractors,
            limit=args.limit,
            cache=cache,
            log=lambda message: print(message, flush=True),
        )
        report["sets"][name] = rows
        for row in rows:
            print(
                f"  {row['method']:28s} [{row['encoder']}] R@1 {row['recall@1']:.3f} "
                f"R@10 {row['recall@10']:.3f} MRR {row['mrr']:.3f}",
                flush=True,
            )
    path = provenance.write("eval_quality", report, args.out)
    print(f"raw results: {path}")


def markdown(report: dict[str, Any]) -> str:
    """The README table: R@1 / R@10 / MRR per method and set; sets that chose a default
    are marked in their heading."""
    sets = report["sets"]
    methods = list(dict.fromkeys(row["method"] for rows in sets.values() for row in rows))
    heads = []
    for rows in sets.values():
        first = rows[0]
        mark = " **(chose settings: not held out)**" if "chose_settings" in first else ""
        heads.append(
            f"{first['pairs']} ({first['queries']:,} queries, pool {first['pool']:,}){mark}"
        )
    lines = ["| method | encoder | " + " | ".join(heads) + " |"]
    lines.append("|---|---|" + "---|" * len(heads))
    for method in methods:
        cells, encoder = [], ""
        for rows in sets.values():
            row = next((r for r in rows if r["method"] == method), None)
            if row is None:
                cells.append("")
                continue
            encoder = row.get("encoder") or "-"
            cells.append(f"{row['recall@1']:.3f} / {row['recall@10']:.3f} / {row['mrr']:.3f}")
        lines.append(f"| {method} | {encoder} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
