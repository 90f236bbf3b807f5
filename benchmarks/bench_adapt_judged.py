"""What the judged set says so far about the adapted index and the verifier (issue 13).

    . .venv/bin/activate && python benchmarks/bench_adapt_judged.py

From benchmarks/judged (runs and judgments.jsonl), per configuration: P@4 and same@4 with
the not yet graded hits counted 0 and counted 2 (the bounds until the blind graders have
graded pool_new.jsonl), and the share of the graded shown hits that are "same problem";
how many hits are patient consultations rather than MedQuAD FAQ entries and how often
those were graded relevant; the packaged verifier's ``drop`` applied to today's default box
(cosine-distinct, whose hits are all graded); and the pool's ceiling: how many distinct
"same problem" consultations each question has among everything pooled.
Writes benchmarks/results/adapt_judged.json.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
from pathlib import Path
from typing import Any

from simqa.box.verify import PACKAGED, Verifier
from simqa.evaluate.judged import K, read_judgments

HERE = Path(__file__).resolve().parent
JUDGED = HERE / "judged"
#: id prefixes of the patient consultations (the rest of the quick-start index is MedQuAD)
CONSULTATIONS = {
    "questiondoctors",
    "icliniq",
    "ehealthforum",
    "covid",
    "healthtap",
    "healthcaremagic",
}
RUNS = ("cosine", "cosine-distinct", "adapt-engine", "adapt-cosine-distinct", "adapt-verified")


def box_stats(run: dict[str, Any], grades: dict[str, int], keep: Any = None) -> dict[str, Any]:
    p_lo = p_hi = s_lo = s_hi = 0.0
    shown = ungraded = same = related = 0
    sources: dict[str, list[int]] = {}
    for hits in run["questions"].values():
        if keep is not None:
            hits = [h for h in hits if keep(h)]
        for h in hits[:K]:
            kind = "consultation" if h["id"].split("-")[0] in CONSULTATIONS else "medquad"
            sources.setdefault(kind, []).append(grades.get(h["pair_id"], -1))
        g = [grades.get(h["pair_id"]) for h in hits][:K]
        shown += len(g)
        ungraded += sum(x is None for x in g)
        p_lo += sum(x is not None and x >= 1 for x in g) / K
        p_hi += sum(x is None or x >= 1 for x in g) / K
        s_lo += sum(x == 2 for x in g) / K
        s_hi += sum(x is None or x == 2 for x in g) / K
        same += sum(x == 2 for x in g)
        related += sum(x is not None and x >= 1 for x in g)
    n = len(run["questions"])
    graded = shown - ungraded

    return {
        "hits_shown": shown,
        "ungraded": ungraded,
        "p@4": [round(p_lo / n, 4), round(p_hi / n, 4)],
        "same@4": [round(s_lo / n, 4), round(s_hi / n, 4)],
        "same_share_of_graded_shown": round(same / graded, 4) if graded else None,
        "related_or_same_share_of_graded_shown": round(related / graded, 4) if graded else None,
        "by_source": {
            kind: {
                "hits": len(g),
                "graded_related_or_same": round(sum(x >= 1 for x in g) / len(g), 4),
            }
            for kind, g in sorted(sources.items())
        },
    }


def main() -> None:
    grades = read_judgments(JUDGED / "judgments.jsonl").grades
    runs = {n: json.loads((JUDGED / "runs" / f"{n}.json").read_text()) for n in RUNS}
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_adapt_judged.py",
        "note": "[low, high]: ungraded hits counted 0 and 2; empty slots count 0",
        "graded_pairs": len(grades),
        "boxes": {n: box_stats(r, grades) for n, r in runs.items()},
    }
    verifier = Verifier.from_record(PACKAGED["all-MiniLM-L6-v2"], "packaged")
    out["cosine-distinct, packaged verifier drops"] = box_stats(
        runs["cosine-distinct"], grades, lambda h: verifier.probability(h["score"]) >= 0.5
    )
    per_q: dict[str, int] = collections.Counter()
    for pid, grade in grades.items():
        per_q[pid.split("-")[0]] += grade == 2
    qids = list(runs["cosine"]["questions"])
    counts = [per_q.get(q, 0) for q in qids]
    out["pool_ceiling"] = {
        "questions_by_same_consultations": dict(sorted(collections.Counter(counts).items())),
        "best_same@4_of_a_distinct_box": round(sum(min(K, c) / K for c in counts) / len(qids), 4),
    }
    path = HERE / "results" / "adapt_judged.json"
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
