"""Draw the judged set's queries: real consumer health questions from MEDIQA 2019 Task 3.

    python benchmarks/judged/sample_questions.py [--n 60] [--seed 13]

The population is every question of the QA training sets (LiveQA-Med, Alexa) and the
validation set, distinct texts only, in (file, QID) order; ``--n`` of them are drawn with
``random.Random(seed).sample``. Writes benchmarks/judged/questions.jsonl, one line per query:
``{qid, file, source_qid, text}`` (``qid`` is q01, q02, ... in drawing order), and
questions_meta.json with the seed and the population. The MEDIQA QA test set is never read.
"""

from __future__ import annotations

import argparse
import json
import random
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
QA = HERE.parents[2] / "shared" / "data" / "mediqa2019" / "MEDIQA_Task3_QA"
FILES = (
    "MEDIQA2019-Task3-QA-TrainingSet1-LiveQAMed.xml",
    "MEDIQA2019-Task3-QA-TrainingSet2-Alexa.xml",
    "MEDIQA2019-Task3-QA-ValidationSet.xml",
)


def population() -> list[dict[str, str]]:
    """Every distinct question text of the training and validation files, first one kept."""
    seen: set[str] = set()
    out = []
    for name in FILES:
        for question in ET.parse(QA / name).getroot().iter("Question"):
            text = " ".join((question.findtext("QuestionText") or "").split())
            if text and text.lower() not in seen:
                seen.add(text.lower())
                out.append({"file": name, "source_qid": question.get("QID", ""), "text": text})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    pool = population()
    drawn = random.Random(args.seed).sample(pool, args.n)
    with (HERE / "questions.jsonl").open("w", encoding="utf-8") as out:
        for number, row in enumerate(drawn, 1):
            out.write(json.dumps({"qid": f"q{number:02d}", **row}, ensure_ascii=False) + "\n")
    meta = {
        "seed": args.seed,
        "n": args.n,
        "method": "random.Random(seed).sample(population, n); population in (file, QID) order",
        "population": len(pool),
        "population_by_file": {f: sum(r["file"] == f for r in pool) for f in FILES},
        "drawn_by_file": {f: sum(r["file"] == f for r in drawn) for f in FILES},
        "source": "../shared/data/mediqa2019/MEDIQA_Task3_QA (github.com/abachaa/MEDIQA2019)",
    }
    (HERE / "questions_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
