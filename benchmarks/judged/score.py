"""Score every configuration's box on the graders' judgments, with paired tests between them.

    python benchmarks/judged/score.py [--configs cosine,hub0.5,...]
        [--judgments benchmarks/judged/judgments.jsonl] [--out benchmarks/results/judged_scores]
        [--halves benchmarks/judged/halves.json] [--reference cosine-distinct-rebuilt,...]
        [--only chose,choose]

Reads the runs (runs/*.json, made by run_configs.py) and the judgments ({pair_id, grade,
note} per line; a pair graded more than once gets the lower median). Per configuration over
all questions: P@4 (share of the 4 slots graded >= 1), same@4 (share graded 2), nDCG@4
(linear gains, ideal = the best judged grades of the question's whole pool), a 95 %
bootstrap interval over questions, how many of its hits are unjudged (counted as 0) and how
many repeat a question already in the same box (a copy of it under another id).
Every pair of configurations is compared per question: wins / losses / ties, two-sided sign
test and Wilcoxon signed-rank p. Writes OUT.json (raw, with every per-question value) and
OUT.md (the tables); prints the markdown.

The same tables for subsets of the questions (issue 20): ``long`` (more than 30 words,
``sample_long_questions.word_count``) and ``short``, and each half of halves.json (``chose``:
q01-q60, which chose today's defaults; ``choose``; ``report``). A question none of whose
pooled pairs is judged yet is left out, and the header says how many pairs and questions
await grades; a configuration is scored on the questions it ranked (the column
``questions``), and two are compared on the questions both ranked. ``--only HALVES``
scores only those halves' questions (the others' figures are never computed): what a
choice made on the choosing half reads.
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
from sample_long_questions import LONG_WORDS, word_count

from simqa.evaluate.judged import (
    K,
    compare,
    ndcg_at,
    precision_at,
    read_judgments,
    same_at,
)

HERE = Path(__file__).resolve().parent
#: the default box ranked on today's index, then on the earlier one (issue 13)
REFERENCE = ("cosine-distinct-rebuilt", "cosine-distinct")
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


def qid_order(qid: str) -> tuple[int, str]:
    """q9 before q10, q99 before q100 (the same order as text for q01-q99)."""
    digits = qid.lstrip("q")
    return (int(digits), qid) if digits.isdigit() else (-1, qid)


def subsets(
    qids: list[str], words: dict[str, int], halves: dict[str, list[str]]
) -> dict[str, list[str]]:
    """The question sets reported: all; long (more than LONG_WORDS words) and short, when
    the questions' texts are known; each half of halves.json (chose, choose, report)."""
    out = {"all": qids}
    if words:
        out["long"] = [q for q in qids if q in words and words[q] > LONG_WORDS]
        out["short"] = [q for q in qids if q in words and words[q] <= LONG_WORDS]
    for half, members in halves.items():
        out[half] = [q for q in qids if q in set(members)]
    return out


def score(
    runs: dict[str, dict[str, Any]],
    grades: dict[str, int],
    origin: dict[str, str],
    words: dict[str, int] | None = None,
    halves: dict[str, list[str]] | None = None,
    reference: list[str] | None = None,
) -> dict[str, Any]:
    """Per-configuration metrics, per-question values and paired comparisons, over all
    questions and over each subset (``subsets``).

    A run deeper than the box (``k`` > 4; run_configs.py ``k=12``) only widens the pool: it
    enters the ideal box and the corpus's reach, not the configuration tables. A question
    none of whose pooled pairs is judged yet is left out (counted under ``missing``); a
    configuration is scored on the questions it ranked, and two are compared on the
    questions both ranked: every pair of configurations over all questions, in the subsets
    only pairs with a ``reference`` configuration (every pair when none of them ran; the
    exact Wilcoxon test of scipy takes seconds per pair on 13 questions or fewer)."""
    every = sorted(set().union(*(r["questions"] for r in runs.values())), key=qid_order)
    pool_pairs: dict[str, set[str]] = {q: set() for q in every}
    for r in runs.values():
        for q, hits in r["questions"].items():
            pool_pairs[q].update(h["pair_id"] for h in hits)
    qids = [q for q in every if any(p in grades for p in pool_pairs[q])]
    missing = {q: sorted(p for p in pool_pairs[q] if p not in grades) for q in every}
    # the ideal box: the best grades among every consultation pooled for the question
    # (copies of one question are one pair but separate consultations, each with its grade)
    pooled: dict[str, dict[str, int]] = {q: {} for q in qids}
    distinct: dict[str, dict[str, int]] = {q: {} for q in qids}  # per pair: each question once
    for r in runs.values():
        for q in qids:
            for hit in r["questions"].get(q, []):
                if hit["pair_id"] in grades:
                    pooled[q][hit["id"]] = grades[hit["pair_id"]]
                    distinct[q][hit["pair_id"]] = grades[hit["pair_id"]]
    boxes = {n: r for n, r in runs.items() if r.get("k", K) <= K}
    # per configuration and question: metric values, unjudged hits, repeated questions
    values: dict[str, dict[str, dict[str, float]]] = {}
    counts: dict[str, dict[str, tuple[int, int]]] = {}
    for name, r in boxes.items():
        values[name], counts[name] = {}, {}
        for q in (q for q in qids if q in r["questions"]):
            box = [h["pair_id"] for h in sorted(r["questions"][q], key=lambda h: h["rank"])][:K]
            g = [grades.get(pid, 0) for pid in box]
            values[name][q] = {
                "p@4": precision_at(g),
                "same@4": same_at(g),
                "ndcg@4": ndcg_at(g, pooled[q].values()),
            }
            counts[name][q] = (sum(pid not in grades for pid in box), len(box) - len(set(box)))
    members_all = subsets(every, words or {}, halves or {})
    scored = set(qids)
    sets = {name: [q for q in members if q in scored] for name, members in members_all.items()}
    every_pair = list(itertools.combinations(boxes, 2))
    refs = [c for c in reference or [] if c in boxes]
    some = [(a, b) for a, b in every_pair if a in refs or b in refs] if refs else every_pair
    by_subset = {
        name: summarise(values, counts, members, distinct, every_pair if name == "all" else some)
        for name, members in sets.items()
    }
    overall = by_subset["all"]
    for name, s in overall["configs"].items():
        mine = [q for q in qids if q in values[name]]
        s["by_origin"] = {
            o: {
                "questions": sum(origin.get(q) == o for q in mine),
                **{
                    m: float(np.mean([values[name][q][m] for q in mine if origin.get(q) == o]))
                    for m in METRICS
                },
            }
            for o in sorted({origin[q] for q in mine if q in origin})
        }
    return {
        "questions": qids,
        "configs": overall["configs"],
        "comparisons": overall["comparisons"],
        "per_question": overall["per_question"],
        "pool_without_relevant": sum(1 for q in qids if not any(pooled[q].values())),
        "pool_only_runs": {n: r.get("k") for n, r in runs.items() if n not in boxes},
        "reach": overall["reach"],
        "missing": {
            "pairs": sum(len(v) for v in missing.values()),
            "pooled_pairs": sum(len(v) for v in pool_pairs.values()),
            "questions_with_missing": sum(1 for v in missing.values() if v),
            "questions_left_out": [q for q in every if q not in set(qids)],
        },
        "subsets": {
            name: {
                **{k: v for k, v in sub.items() if k != "per_question"},
                "questions_pooled": len(members_all[name]),
            }
            for name, sub in by_subset.items()
        },
        "subset_questions": members_all,
    }


def summarise(
    values: dict[str, dict[str, dict[str, float]]],
    counts: dict[str, dict[str, tuple[int, int]]],
    members: list[str],
    distinct: dict[str, dict[str, int]],
    pairs: list[tuple[str, str]],
) -> dict[str, Any]:
    """Metrics with intervals per configuration on the ``members`` it ranked, and the
    ``pairs`` of configurations compared on the members both ranked."""
    per_question: dict[str, dict[str, list[float]]] = {}
    configs: dict[str, dict[str, Any]] = {}
    for name in values:
        mine = [q for q in members if q in values[name]]
        if not mine:
            continue
        per_question[name] = {m: [values[name][q][m] for q in mine] for m in METRICS}
        configs[name] = {
            **{m: float(np.mean(v)) for m, v in per_question[name].items()},
            **{f"{m}_ci95": interval(np.asarray(v)) for m, v in per_question[name].items()},
            "unjudged_hits": sum(counts[name][q][0] for q in mine),
            "repeated_questions": sum(counts[name][q][1] for q in mine),
            "questions": len(mine),
        }
    comparisons = []
    for a, b in pairs:
        if a not in configs or b not in configs:
            continue
        both = [q for q in members if q in values[a] and q in values[b]]
        if not both:
            continue
        aligned = {n: {m: [values[n][q][m] for q in both] for m in METRICS} for n in (a, b)}
        for m in METRICS:
            comparisons.append({**compare(aligned, m, a, b).to_json(), "questions": len(both)})
    return {
        "questions": len(members),
        "configs": configs,
        "comparisons": comparisons,
        "per_question": per_question,
        "reach": reach({q: distinct[q] for q in members}) if members else None,
    }


def config_table(configs: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| configuration | P@4 | same@4 | nDCG@4 | unjudged hits | repeated questions "
        "| questions |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in configs.items():
        cells = [f"{s[m]:.3f} [{s[m + '_ci95'][0]:.2f}, {s[m + '_ci95'][1]:.2f}]" for m in METRICS]
        counts = f"{s['unjudged_hits']} | {s['repeated_questions']} | {s['questions']}"
        lines.append(f"| {name} | {' | '.join(cells)} | {counts} |")
    return lines


def paired_table(
    comparisons: list[dict[str, Any]], total: int, only: list[str] | None = None
) -> list[str]:
    """Paired comparisons as a table, saying on how many questions where fewer than
    ``total``; ``only``: just those with one of these configurations."""
    lines = [
        "| a | b | P@4 | nDCG@4 | same@4 |",
        "|---|---|---|---|---|",
    ]
    by_pair: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for c in comparisons:
        if only is None or c["a"] in only or c["b"] in only:
            by_pair.setdefault((c["a"], c["b"]), {})[c["metric"]] = c

    def cell(c: dict[str, Any]) -> str:
        return (
            f"{c['mean_a']:.3f} vs {c['mean_b']:.3f}: {c['wins']}-{c['losses']}-{c['ties']}, "
            f"p {c['sign_p']:.3f} / {c['wilcoxon_p']:.3f}"
        )

    for (a, b), cs in by_pair.items():
        n = cs["p@4"].get("questions", total)
        label = f"{b} (n={n})" if n != total else b
        lines.append(
            f"| {a} | {label} | {cell(cs['p@4'])} | {cell(cs['ndcg@4'])} | {cell(cs['same@4'])} |"
        )
    return lines


SUBSET_TITLES = {
    "long": f"long questions (more than {LONG_WORDS} words)",
    "short": f"short questions ({LONG_WORDS} words or fewer)",
    "chose": "the half that chose today's defaults (q01-q60, issue 13)",
    "choose": "the half that chooses (issue 20)",
    "report": "the half that only reports (issue 20)",
}


def markdown(result: dict[str, Any]) -> str:
    n = len(result["questions"])
    miss = result["missing"]
    lines = [
        f"Judged Similar Q&A boxes: {n} questions, top {K} per configuration, "
        f"{result['judgments']['pairs']} judged pairs (95 % bootstrap intervals over questions).",
    ]
    if miss["pairs"]:
        left = miss["questions_left_out"]
        lines.append(
            f"Not judged yet: {miss['pairs']} of the {miss['pooled_pairs']} pooled pairs, in "
            f"{miss['questions_with_missing']} questions; {len(left)} questions with no judged "
            f"pair are left out{' (' + ', '.join(left) + ')' if 0 < len(left) <= 5 else ''}."
        )
    lines += ["", *config_table(result["configs"])]
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
        *paired_table(result["comparisons"], n),
    ]
    origins = sorted({o for s in result["configs"].values() for o in s["by_origin"]})
    if len(origins) > 1:
        lines += ["", "By origin of the question (P@4 / nDCG@4):", ""]
        lines.append("| configuration | " + " | ".join(origins) + " |")
        lines.append("|---|" + "---|" * len(origins))
        for name, s in result["configs"].items():
            cells = [
                f"{s['by_origin'][o]['p@4']:.3f} / {s['by_origin'][o]['ndcg@4']:.3f} "
                f"(n={s['by_origin'][o]['questions']})"
                if o in s["by_origin"]
                else "-"
                for o in origins
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, sub in result["subsets"].items():
        if name == "all":
            continue
        title = (
            f"## {name}: {SUBSET_TITLES.get(name, name)}, {sub['questions']} judged questions "
            f"of {sub['questions_pooled']}"
        )
        if not sub["configs"]:
            lines += ["", title]
            continue
        ref = [c for c in result["reference"] if c in sub["configs"]] or None
        r = sub["reach"]
        lines += [
            "",
            title,
            "",
            *config_table(sub["configs"]),
            "",
            f"Best box from the judged pool: P@4 {r['best_p@4']:.3f}, same@4 "
            f"{r['best_same@4']:.3f}.",
        ]
        if sub["comparisons"]:
            lines[-1] += (
                f" Paired per question{' against ' + ', '.join(ref) if ref else ''} (on the "
                "questions both ranked):"
            )
            lines += ["", *paired_table(sub["comparisons"], sub["questions"], ref)]
    return "\n".join(lines) + "\n"


def extensions(run: dict[str, Any]) -> dict[str, Any]:
    """When a run was extended to more questions (run_configs.py --extend): when, how many,
    on which index."""
    notes = [
        {"date": e["date"], "qids": len(e["qids"]), "index": e["how"]["index"]}
        for e in run.get("extended", [])
    ]
    return {"extended": notes} if notes else {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=HERE / "runs")
    parser.add_argument("--judgments", type=Path, default=HERE / "judgments.jsonl")
    parser.add_argument("--questions", type=Path, default=HERE / "questions.jsonl")
    parser.add_argument("--halves", type=Path, default=HERE / "halves.json")
    parser.add_argument("--configs", help="comma-separated run names (default: every run)")
    parser.add_argument(
        "--reference",
        default=",".join(REFERENCE),
        help="in the subsets, compare every configuration with these (every pair when none "
        "ran); default: %(default)s",
    )
    parser.add_argument(
        "--only",
        help="comma-separated halves of --halves (e.g. chose,choose): score only their "
        "questions, so that a choice never sees the others' scores",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE.parent / "results" / "judged_scores",
        help="writes OUT.json and OUT.md",
    )
    args = parser.parse_args(argv)
    runs = load_runs(args.runs, args.configs.split(",") if args.configs else None)
    judgments = read_judgments(args.judgments)
    origin, words = {}, {}
    if args.questions.exists():
        for line in args.questions.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            origin[row["qid"]] = row.get("file", "").removeprefix("MEDIQA2019-Task3-QA-")
            words[row["qid"]] = word_count(row["text"])
    halves = {}
    if args.halves.exists():
        halves = json.loads(args.halves.read_text(encoding="utf-8"))["halves"]
    if args.only:
        wanted = args.only.split(",")
        unknown = [h for h in wanted if h not in halves]
        if unknown:
            raise SystemExit(f"--only: no half {', '.join(unknown)} in {args.halves}")
        keep = set().union(*(halves[h] for h in wanted))
        halves = {h: halves[h] for h in wanted}
        for r in runs.values():
            r["questions"] = {q: v for q, v in r["questions"].items() if q in keep}
        runs = {n: r for n, r in runs.items() if r["questions"]}
    reference = [c for c in args.reference.split(",") if c]
    result = score(runs, judgments.grades, origin, words, halves, reference)
    result["reference"] = [c for c in reference if c in result["configs"]]
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
            n: {"spec": r["spec"], "date": r["date"], "how": r["how"], **extensions(r)}
            for n, r in runs.items()
        },
        "halves": os.path.relpath(args.halves) if args.halves.exists() else None,
        "only": args.only,
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
