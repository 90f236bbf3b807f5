"""Score every configuration's box on the graders' judgments, with paired tests between them.

    python benchmarks/judged/score.py [--configs cosine,hub0.5,...]
        [--judgments benchmarks/judged/judgments.jsonl] [--out benchmarks/results/judged_scores]

Reads the runs (runs/*.json, made by run_configs.py) and the judgments ({pair_id, grade,
note} per line; a pair graded more than once gets the lower median). Per configuration over
all questions: P@4 (share of the 4 slots graded >= 1), same@4 (share graded 2), nDCG@4
(linear gains, ideal = the best judged grades of the question's whole pool), a 95 %
bootstrap interval over questions, how many of its hits are unjudged (counted as 0) and how
many repeat a question already in the same box (a copy of it under another id).
Every pair of configurations is compared per question: wins / losses / ties, two-sided sign
test and Wilcoxon signed-rank p. Writes OUT.json (raw, with every per-question value) and
OUT.md (the tables); prints the markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from simqa.evaluate.judged import (
    K,
    compare,
    ndcg_at,
    precision_at,
    read_judgments,
    same_at,
)

HERE = Path(__file__).resolve().parent
METRICS = ("p@4", "same@4", "ndcg@4")
BOOTSTRAP = 10_000


def load_runs(runs_dir: Path, names: list[str] | None) -> dict[str, dict[str, Any]]:
    runs = {}
    for path in sorted(runs_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "questions" in data:  # pool.json is not a run
            runs[data["config"]] = data
    if names:
        missing = [n for n in names if n not in runs]
        if missing:
            raise SystemExit(f"no run for {', '.join(missing)} in {runs_dir}")
        runs = {n: runs[n] for n in names}
    if not runs:
        raise SystemExit(f"no runs in {runs_dir}")
    return runs


def interval(values: np.ndarray, seed: int = 0) -> list[float]:
    """95 % percentile-bootstrap interval of the mean over questions."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (BOOTSTRAP, len(values)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def reach(pairs: dict[str, dict[str, int]]) -> dict[str, Any]:
    """What the corpus holds for the questions, as far as the pool reaches: the best box any
    ranking could show from the judged pairs (each question once), and how many
    same-problem consultations each question has."""
    best = {q: sorted(g.values(), reverse=True) for q, g in pairs.items()}
    counts = [sum(1 for g in grades if g == 2) for grades in best.values()]
    return {
        "best_p@4": float(np.mean([precision_at(g) for g in best.values()])),
        "best_same@4": float(np.mean([same_at(g) for g in best.values()])),
        "questions_by_same_problem_count": {
            str(n): counts.count(n) for n in range(max(counts, default=0) + 1)
        },
        "pairs": sum(len(g) for g in pairs.values()),
    }


def score(
    runs: dict[str, dict[str, Any]], grades: dict[str, int], origin: dict[str, str]
) -> dict[str, Any]:
    """Per-configuration metrics, per-question values and paired comparisons.

    A run deeper than the box (``k`` > 4; run_configs.py ``k=12``) only widens the pool: it
    enters the ideal box and the corpus's reach, not the configuration tables."""
    qids = sorted(set.intersection(*(set(r["questions"]) for r in runs.values())))
    # the ideal box: the best grades among every consultation pooled for the question
    # (copies of one question are one pair but separate consultations, each with its grade)
    pooled: dict[str, dict[str, int]] = {q: {} for q in qids}
    distinct: dict[str, dict[str, int]] = {q: {} for q in qids}  # per pair: each question once
    for r in runs.values():
        for q in qids:
            for hit in r["questions"][q]:
                if hit["pair_id"] in grades:
                    pooled[q][hit["id"]] = grades[hit["pair_id"]]
                    distinct[q][hit["pair_id"]] = grades[hit["pair_id"]]
    boxes = {n: r for n, r in runs.items() if r.get("k", K) <= K}
    per_question: dict[str, dict[str, list[float]]] = {}
    summary: dict[str, dict[str, Any]] = {}
    for name, r in boxes.items():
        values: dict[str, list[float]] = {m: [] for m in METRICS}
        unjudged = repeats = 0
        for q in qids:
            box = [h["pair_id"] for h in sorted(r["questions"][q], key=lambda h: h["rank"])][:K]
            unjudged += sum(pid not in grades for pid in box)
            repeats += len(box) - len(set(box))
            g = [grades.get(pid, 0) for pid in box]
            values["p@4"].append(precision_at(g))
            values["same@4"].append(same_at(g))
            values["ndcg@4"].append(ndcg_at(g, pooled[q].values()))
        per_question[name] = values
        summary[name] = {
            **{m: float(np.mean(v)) for m, v in values.items()},
            **{f"{m}_ci95": interval(np.asarray(v)) for m, v in values.items()},
            "unjudged_hits": unjudged,
            "repeated_questions": repeats,
            "by_origin": {
                o: {
                    "questions": sum(origin.get(q) == o for q in qids),
                    **{
                        m: float(
                            np.mean(
                                [v for q, v in zip(qids, vs, strict=True) if origin.get(q) == o]
                            )
                        )
                        for m, vs in values.items()
                    },
                }
                for o in sorted({origin[q] for q in qids if q in origin})
            },
        }
    comparisons = [
        compare(per_question, m, a, b).to_json()
        for a, b in itertools.combinations(boxes, 2)
        for m in METRICS
    ]
    return {
        "questions": qids,
        "configs": summary,
        "comparisons": comparisons,
        "per_question": per_question,
        "pool_without_relevant": sum(1 for q in qids if not any(pooled[q].values())),
        "pool_only_runs": {n: r.get("k") for n, r in runs.items() if n not in boxes},
        "reach": reach(distinct),
    }


def markdown(result: dict[str, Any]) -> str:
    n = len(result["questions"])
    lines = [
        f"Judged Similar Q&A boxes: {n} questions, top {K} per configuration, "
        f"{result['judgments']['pairs']} judged pairs (95 % bootstrap intervals over questions).",
        "",
        "| configuration | P@4 | same@4 | nDCG@4 | unjudged hits | repeated questions |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in result["configs"].items():
        cells = [f"{s[m]:.3f} [{s[m + '_ci95'][0]:.2f}, {s[m + '_ci95'][1]:.2f}]" for m in METRICS]
        counts = f"{s['unjudged_hits']} | {s['repeated_questions']}"
        lines.append(f"| {name} | {' | '.join(cells)} | {counts} |")
    r = result["reach"]
    by_count = ", ".join(f"{n}: {c}" for n, c in r["questions_by_same_problem_count"].items())
    deep = ", ".join(f"{n} (top {k})" for n, k in result["pool_only_runs"].items())
    lines += [
        "",
        f"What the corpus holds, as far as the pool reaches ({r['pairs']} judged pairs, each "
        f"question once{'; deeper runs that only widen the pool: ' + deep if deep else ''}): "
        f"the best box any ranking could show from them has P@4 {r['best_p@4']:.3f} and "
        f"same@4 {r['best_same@4']:.3f}. Questions by the number of same-problem "
        f"consultations found: {by_count}.",
    ]
    lines += [
        "",
        "Paired per question (a against b): wins-losses-ties, sign-test p, Wilcoxon p.",
        "",
        "| a | b | P@4 | nDCG@4 | same@4 |",
        "|---|---|---|---|---|",
    ]
    by_pair: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for c in result["comparisons"]:
        by_pair.setdefault((c["a"], c["b"]), {})[c["metric"]] = c

    def cell(c: dict[str, Any]) -> str:
        return (
            f"{c['mean_a']:.3f} vs {c['mean_b']:.3f}: {c['wins']}-{c['losses']}-{c['ties']}, "
            f"p {c['sign_p']:.3f} / {c['wilcoxon_p']:.3f}"
        )

    for (a, b), cs in by_pair.items():
        lines.append(
            f"| {a} | {b} | {cell(cs['p@4'])} | {cell(cs['ndcg@4'])} | {cell(cs['same@4'])} |"
        )
    origins = sorted({o for s in result["configs"].values() for o in s["by_origin"]})
    if len(origins) > 1:
        lines += ["", "By origin of the question (P@4 / nDCG@4):", ""]
        lines.append("| configuration | " + " | ".join(origins) + " |")
        lines.append("|---|" + "---|" * len(origins))
        for name, s in result["configs"].items():
            cells = [
                f"{s['by_origin'][o]['p@4']:.3f} / {s['by_origin'][o]['ndcg@4']:.3f} "
                f"(n={s['by_origin'][o]['questions']})"
                for o in origins
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=HERE / "runs")
    parser.add_argument("--judgments", type=Path, default=HERE / "judgments.jsonl")
    parser.add_argument("--questions", type=Path, default=HERE / "questions.jsonl")
    parser.add_argument("--configs", help="comma-separated run names (default: every run)")
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE.parent / "results" / "judged_scores",
        help="writes OUT.json and OUT.md",
    )
    args = parser.parse_args(argv)
    runs = load_runs(args.runs, args.configs.split(",") if args.configs else None)
    judgments = read_judgments(args.judgments)
    origin = {}
    if args.questions.exists():
        for line in args.questions.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            origin[row["qid"]] = row.get("file", "").removeprefix("MEDIQA2019-Task3-QA-")
    result = score(runs, judgments.grades, origin)
    result["judgments"] = {
        "file": os.path.relpath(args.judgments),  # no machine path in committed results
        "sha256": hashlib.sha256(args.judgments.read_bytes()).hexdigest(),
        "pairs": len(judgments.grades),
        "multiply_graded": judgments.multiply_graded,
        "agreed": judgments.agreed,
    }
    result["meta"] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "runs": {
            n: {"spec": r["spec"], "date": r["date"], "how": r["how"]} for n, r in runs.items()
        },
        "python": platform.python_version(),
        "machine": f"{platform.machine()} x{os.cpu_count()}",
        "bootstrap": {"resamples": BOOTSTRAP, "seed": 0},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
