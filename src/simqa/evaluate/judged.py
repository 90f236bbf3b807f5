"""Scores of a box judged by people: graded relevance of each hit, compared per question.

The distractor benchmark (``simqa eval``) knows one right question per query and counts
everything else wrong; a reader of the Similar Q&A box does not. Here each shown hit has a
grade given blind by a person (benchmarks/judged/PROTOCOL.md):

- 0: a different problem
- 1: related (same condition or topic; a reader might find it useful, but it asks
  something else)
- 2: the same problem (asks essentially what the query asks; its reply would answer it)

Per question and box of ``k`` hits (unjudged or missing hits count as 0):

- ``p@k``: share of the k slots graded >= 1
- ``same@k``: share of the k slots graded 2
- ``ndcg@k``: linear gains 0/1/2, discount ``1 / log2(rank + 1)``, the ideal being the k
  best grades among every consultation pooled for that question (all configurations), so
  configurations are measured against the same ideal; 0 when nothing pooled is relevant.

A pair is (query, question text): consultations asking word for word the same question
(``text_key``) are graded once and each gets that grade.

Configurations are compared per question with a two-sided sign test on wins and losses
(ties dropped) and a Wilcoxon signed-rank test on the differences.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simqa.errors import SimqaError

GRADES = (0, 1, 2)
K = 4


def text_key(text: str) -> str:
    """What makes two consultations one pair for a query: their embedded text (title and
    question), compared without case or spacing. Such copies (MedQuAD repeats many FAQ
    entries across its sources, "Sickle cell anemia" / "Sickle Cell Anemia") embed to the
    same vector with the uncased model, so they are graded once."""
    return hashlib.sha1(" ".join(text.casefold().split()).encode("utf-8")).hexdigest()


def pair_id(question_id: str, key: str) -> str:
    """A stable, opaque id for a (question, consultation) pair, ``key`` being the
    consultation's ``text_key``: it says nothing about which configuration found the
    consultation or where it ranked it."""
    digest = hashlib.sha256(f"{question_id}\t{key}".encode()).hexdigest()
    return f"{question_id}-{digest[:10]}"


def precision_at(grades: Sequence[int], k: int = K) -> float:
    """Share of the first k slots graded 1 or 2 (an empty slot counts as 0)."""
    return sum(1 for g in grades[:k] if g >= 1) / k


def same_at(grades: Sequence[int], k: int = K) -> float:
    """Share of the first k slots graded 2."""
    return sum(1 for g in grades[:k] if g == 2) / k


def dcg(grades: Sequence[int], k: int = K) -> float:
    return float(sum(g / np.log2(rank + 2) for rank, g in enumerate(grades[:k])))


def ndcg_at(grades: Sequence[int], pooled: Iterable[int], k: int = K) -> float:
    """nDCG@k of a ranked list of grades; the ideal is the k best ``pooled`` grades."""
    ideal = dcg(sorted(pooled, reverse=True), k)
    return dcg(grades, k) / ideal if ideal > 0 else 0.0


@dataclass
class Paired:
    """How configuration ``a`` compares with ``b`` over the same questions on one metric."""

    a: str
    b: str
    metric: str
    mean_a: float
    mean_b: float
    wins: int  # questions where a scores higher
    losses: int
    ties: int
    sign_p: float
    wilcoxon_p: float

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def paired_test(a: Sequence[float], b: Sequence[float]) -> tuple[int, int, int, float, float]:
    """(wins, losses, ties, two-sided sign-test p, two-sided Wilcoxon signed-rank p) of
    ``a`` against ``b``, one value per question; p is 1.0 when every question ties."""
    from scipy.stats import binomtest, wilcoxon

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or not x.size:
        raise ValueError("need one value per question for both, at least one question")
    diff = x - y
    close = np.isclose(diff, 0.0, atol=1e-12)
    wins = int(np.sum((diff > 0) & ~close))
    losses = int(np.sum((diff < 0) & ~close))
    ties = int(close.sum())
    if wins + losses == 0:
        return wins, losses, ties, 1.0, 1.0
    sign_p = float(binomtest(wins, wins + losses, 0.5).pvalue)
    wilcoxon_p = float(wilcoxon(np.where(close, 0.0, diff), zero_method="wilcox").pvalue)
    return wins, losses, ties, sign_p, wilcoxon_p


def compare(
    per_question: Mapping[str, Mapping[str, Sequence[float]]], metric: str, a: str, b: str
) -> Paired:
    """The paired comparison of configurations ``a`` and ``b`` on ``metric``, given
    ``per_question[config][metric]`` lists aligned on the same questions."""
    xa, xb = per_question[a][metric], per_question[b][metric]
    wins, losses, ties, sign_p, wilcoxon_p = paired_test(xa, xb)
    return Paired(
        a,
        b,
        metric,
        float(np.mean(xa)),
        float(np.mean(xb)),
        wins,
        losses,
        ties,
        sign_p,
        wilcoxon_p,
    )


@dataclass
class Judgments:
    """One grade per judged pair, and how far graders agreed where a pair had several."""

    grades: dict[str, int]
    multiply_graded: int  # pairs with more than one grade
    agreed: int  # of those, pairs whose grades were all equal


def read_judgments(path: Path) -> Judgments:
    """``{pair_id, grade, note}`` per line. A pair graded several times (several graders)
    gets the lower median of its grades: with two graders, the stricter one."""
    seen: dict[str, list[int]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SimqaError(f"cannot read judgments {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pid, grade = str(row["pair_id"]), row["grade"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise SimqaError(f"{path}:{number}: expected {{pair_id, grade, note}}") from None
        if isinstance(grade, bool) or grade not in GRADES:
            raise SimqaError(f"{path}:{number}: grade must be 0, 1 or 2, got {grade!r}")
        seen.setdefault(pid, []).append(int(grade))
    multi = [g for g in seen.values() if len(g) > 1]
    return Judgments(
        {pid: sorted(g)[(len(g) - 1) // 2] for pid, g in seen.items()},
        len(multi),
        sum(1 for g in multi if len(set(g)) == 1),
    )
