"""The judged-box metrics and benchmarks/judged/score.py, on a tiny hand-graded example.

Two configurations (A, B) over two questions; every expected number below is worked out by
hand from the grades, with linear gains and discount 1 / log2(rank + 1):

q01 pool grades {a: 2, b: 0, c: 1, d: 0, e: 2, f: 0}; ideal [2, 2, 1, 0]
    IDCG = 2 + 2/log2(3) + 1/2 = 3.761860
    A = [a, b, c, d] -> [2, 0, 1, 0]: DCG 2.5, nDCG 0.664565, P@4 .50, same@4 .25
    B = [c, a, e, f] -> [1, 2, 2, 0]: DCG 1 + 2/log2(3) + 1 = 3.261860, nDCG 0.867086, P@4 .75,
    same@4 .50
q02 pool grades {g: 1, h: 0, i: 0, j: 0, l: 0}, k unjudged; ideal [1, 0, 0, 0], IDCG 1
    A = [g, h, i, j] -> [1, 0, 0, 0]: nDCG 1, P@4 .25
    B = [h, g, k, l] -> [0, 1, 0, 0]: nDCG 1/log2(3) = 0.630930, P@4 .25, one unjudged hit
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from simqa.errors import SimqaError
from simqa.evaluate.judged import (
    ndcg_at,
    pair_id,
    paired_test,
    precision_at,
    read_judgments,
    same_at,
    text_key,
)

SCORE = Path(__file__).resolve().parents[1] / "benchmarks" / "judged" / "score.py"
LOG3 = math.log2(3)


def test_precision_same_and_ndcg_by_hand():
    assert precision_at([2, 0, 1, 0]) == 0.5
    assert same_at([2, 0, 1, 0]) == 0.25
    assert precision_at([1, 2]) == 0.5  # a box of two: the empty slots count as 0
    pool = [2, 0, 1, 0, 2, 0]
    assert ndcg_at([2, 0, 1, 0], pool) == pytest.approx(2.5 / (3 + 2 / LOG3 - 0.5))
    assert ndcg_at([1, 2, 2, 0], pool) == pytest.approx((2 + 2 / LOG3) / (2.5 + 2 / LOG3))
    assert ndcg_at([0, 1, 0, 0], [1, 0, 0]) == pytest.approx(1 / LOG3)
    assert ndcg_at([0, 0, 0, 0], [0, 0]) == 0.0  # nothing relevant pooled


def test_copies_differing_in_case_or_spacing_are_one_pair():
    key = text_key("Sickle Cell Anemia What is (are) Sickle Cell Anemia?")
    assert text_key("Sickle cell anemia  What is (are) sickle cell anemia?") == key
    assert text_key("Sickle cell anemia What are the treatments for sickle cell anemia?") != key
    assert pair_id("q01", key) != pair_id("q02", key)


def test_paired_test_counts_and_p_values():
    # 5 wins, 0 losses, 1 tie: sign test p = 2 * 0.5**5; Wilcoxon exact on 5 positive
    # differences: p = 2 / 2**5 as well
    wins, losses, ties, sign_p, wilcoxon_p = paired_test(
        [1, 1, 0.5, 0.8, 0.9, 0.2], [0, 0.5, 0.25, 0.7, 0.1, 0.2]
    )
    assert (wins, losses, ties) == (5, 0, 1)
    assert sign_p == pytest.approx(0.0625)
    assert wilcoxon_p == pytest.approx(0.0625)
    assert paired_test([0.5, 0.5], [0.5, 0.5]) == (0, 0, 2, 1.0, 1.0)


def test_read_judgments_takes_the_lower_median_and_refuses_bad_grades(tmp_path):
    path = tmp_path / "j.jsonl"
    rows = [("x", 2), ("x", 1), ("y", 0), ("z", 1), ("z", 1), ("z", 2)]
    path.write_text("".join(json.dumps({"pair_id": p, "grade": g}) + "\n" for p, g in rows))
    judged = read_judgments(path)
    assert judged.grades == {"x": 1, "y": 0, "z": 1}
    assert (judged.multiply_graded, judged.agreed) == (2, 0)
    path.write_text(json.dumps({"pair_id": "x", "grade": 3}) + "\n")
    with pytest.raises(SimqaError, match="grade must be 0, 1 or 2"):
        read_judgments(path)


def _score(tmp_path: Path, boxes: dict[str, dict[str, list[str]]], grades) -> dict:
    """Write run files and judgments, run score.py as a process, return its JSON."""
    runs = tmp_path / "runs"
    runs.mkdir()
    for name, box in boxes.items():
        _run_file(runs, name, box)
    judgments = tmp_path / "judgments.jsonl"
    judgments.write_text(
        "".join(
            json.dumps({"pair_id": pair_id(q, c), "grade": g, "note": ""}) + "\n"
            for q, per in grades.items()
            for c, g in per.items()
        )
    )
    out = tmp_path / "results" / "judged_test"
    subprocess.run(
        [sys.executable, str(SCORE), "--runs", str(runs), "--judgments", str(judgments),
         "--questions", str(tmp_path / "none.jsonl"), "--out", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert out.with_suffix(".md").read_text().startswith("Judged Similar Q&A boxes")
    return json.loads(out.with_suffix(".json").read_text())


def _run_file(directory: Path, name: str, boxes: dict[str, list[str]]) -> None:
    """Boxes of consultation ids; "id:key" gives a consultation asking the same question
    word for word as consultation "key" (the same text key, so the same pair)."""
    questions = {
        q: [
            {"id": c, "rank": r + 1, "pair_id": pair_id(q, c.partition(":")[2] or c)}
            for r, c in enumerate(ids)
        ]
        for q, ids in boxes.items()
    }
    run = {"config": name, "spec": name, "date": "", "how": {}, "questions": questions}
    (directory / f"{name}.json").write_text(json.dumps(run))


def test_score_script_on_hand_graded_runs(tmp_path):
    boxes = {
        "A": {"q01": list("abcd"), "q02": list("ghij")},
        "B": {"q01": list("caef"), "q02": list("hgkl")},
    }
    grades = {"q01": dict(a=2, b=0, c=1, d=0, e=2, f=0), "q02": dict(g=1, h=0, i=0, j=0, l=0)}
    result = _score(tmp_path, boxes, grades)
    a, b = result["configs"]["A"], result["configs"]["B"]
    ideal_q01 = 2 + 2 / LOG3 + 0.5
    assert a["p@4"] == pytest.approx((0.5 + 0.25) / 2)
    assert b["p@4"] == pytest.approx((0.75 + 0.25) / 2)
    assert a["same@4"] == pytest.approx(0.25 / 2)
    assert b["same@4"] == pytest.approx(0.5 / 2)
    assert a["ndcg@4"] == pytest.approx((2.5 / ideal_q01 + 1) / 2)
    assert b["ndcg@4"] == pytest.approx(((2 + 2 / LOG3) / ideal_q01 + 1 / LOG3) / 2)
    assert (a["unjudged_hits"], b["unjudged_hits"]) == (0, 1)
    ndcg = next(c for c in result["comparisons"] if c["metric"] == "ndcg@4")
    assert (ndcg["a"], ndcg["b"], ndcg["wins"], ndcg["losses"], ndcg["ties"]) == ("A", "B", 1, 1, 0)
    assert ndcg["sign_p"] == pytest.approx(1.0)
    precision = next(c for c in result["comparisons"] if c["metric"] == "p@4")
    assert (precision["wins"], precision["losses"], precision["ties"]) == (0, 1, 1)


def test_copies_of_a_question_share_its_grade_and_count_in_the_ideal(tmp_path):
    # C shows a2, a copy of a (another id, the same question), beside a itself. Pooled
    # consultations a 2, a2 2, b 0, c 1, d 0: ideal [2, 2, 1, 0] as in q01 above.
    boxes = {"A": {"q01": list("abcd")}, "C": {"q01": ["a2:a", "a", "c", "b"]}}
    result = _score(tmp_path, boxes, {"q01": dict(a=2, b=0, c=1, d=0)})
    a, c = result["configs"]["A"], result["configs"]["C"]
    assert a["ndcg@4"] == pytest.approx(2.5 / (2 + 2 / LOG3 + 0.5))
    assert (c["p@4"], c["same@4"], c["ndcg@4"]) == (0.75, 0.5, pytest.approx(1.0))
    assert (c["unjudged_hits"], c["repeated_questions"]) == (0, 1)
    assert a["repeated_questions"] == 0
