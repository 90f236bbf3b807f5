"""The box's verifier: does a hit ask the same question as the query, or only one on its topic?

The nearest consultations are not always the same question: a box for "what causes X?"
also finds "how is X treated?". The verifier turns a hit's cosine (with the index's own
encoder, so it costs nothing at query time) into P(same question) with a logistic curve
fitted on labelled pairs the encoder was not trained on, and calls the hit the same question
when P >= 0.5. Hits judged different are flagged in JSON (``same_question``,
``same_question_probability``), or left out of the box with ``mode="drop"``.

Where the curve comes from: for an index adapted with ``simqa adapt``, the adapt run fits it
on labelled pairs held out from training, against their labelled and mined different
questions (``simqa.learn.adapt.calibrate_model``), and stores it beside the model; for the packaged
model, ``PACKAGED`` was fitted the same way (reproduce with
``python benchmarks/bench_verify.py packaged``). Its accuracy on MEDIQA RQE validation and
on the Curai MQP half, neither of which chose anything, is in benchmarks/results/.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import simqa.index.layout as layout
from simqa.encode.models import TRAINING_RECORD, training_record
from simqa.errors import SimqaError
from simqa.index.hits import Hit

MODES = ("flag", "drop", "off")


@dataclass(frozen=True)
class Verifier:
    """P(same question | cosine) = 1 / (1 + exp(-(slope * cosine + intercept)))."""

    slope: float
    intercept: float
    source: str = ""

    @property
    def threshold(self) -> float:
        """The cosine at which P = 0.5."""
        return -self.intercept / self.slope

    def probability(self, cosine: float) -> float:
        z = self.slope * float(cosine) + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z >= -60 else 0.0

    @classmethod
    def from_record(cls, record: dict[str, Any], source: str) -> Verifier:
        return cls(float(record["slope"]), float(record["intercept"]), source)

    @classmethod
    def for_index(cls, index: Any) -> Verifier | None:
        """The verifier of an opened ``Index``'s encoder, or None when none is known for it."""
        model = index.manifest.model
        if model in PACKAGED:
            return cls.from_record(PACKAGED[model], f"packaged ({model})")
        found = training_record(layout.model_location(index.root, model)).get("verifier")
        return cls.from_record(found, f"{model} ({TRAINING_RECORD})") if found else None


#: fitted for the packaged model on 300 packaged RQE training pairs (seed 0) against their
#: labelled and mined different questions: ``python benchmarks/bench_verify.py packaged``
PACKAGED: dict[str, dict[str, float]] = {
    "all-MiniLM-L6-v2": {"slope": 13.7775, "intercept": -8.9811},  # P = 0.5 at cosine 0.652
}


@dataclass
class VerifiedHit(Hit):
    """A hit with the verifier's verdict, which its JSON carries."""

    same_question: bool = True
    same_question_probability: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "same_question": self.same_question,
            "same_question_probability": round(self.same_question_probability, 4),
        }


def verifier_for(index: Any, mode: str) -> Verifier | None:
    """The verifier ``mode`` asks for on an opened ``Index`` (None for ``off``, or when
    none is known for its model); a bad mode is an error before any search."""
    if mode not in MODES:
        raise SimqaError(f"--verify must be one of {', '.join(MODES)}, got {mode!r}")
    return None if mode == "off" else Verifier.for_index(index)


def verify_hits(hits: Sequence[Hit], verifier: Verifier | None, mode: str = "flag") -> list[Hit]:
    """Each hit with its verdict (``flag``), only those judged the same question (``drop``),
    or the hits unchanged (``off``, or no verifier known for the index)."""
    if mode not in MODES:
        raise SimqaError(f"verify must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off" or verifier is None:
        return list(hits)
    out: list[Hit] = []
    for hit in hits:
        p = verifier.probability(hit.score)
        if mode == "drop" and p < 0.5:
            continue
        out.append(VerifiedHit(hit.id, hit.score, hit.record, hit.rank_score, p >= 0.5, p))
    return out


def fit_logistic(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of a one-feature logistic regression, classes weighted equally
    (so P = 0.5 falls where either kind of error is as likely, whatever the mix)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if y.all() or not y.any():
        raise SimqaError("fitting the verifier needs both same and different pairs")
    weights = np.where(y, 0.5 / y.mean(), 0.5 / (1 - y.mean()))

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = params[0] * x + params[1]
        p = expit(z)  # 1 / (1 + exp(-z)) without overflow for large |z|
        # log(1 + exp(-z)) for positives, log(1 + exp(z)) for negatives, computed stably
        value = np.sum(weights * np.logaddexp(0.0, np.where(y, -z, z)))
        grad_z = weights * (p - y)
        return float(value), np.array([np.sum(grad_z * x), np.sum(grad_z)])

    result = minimize(loss, np.array([10.0, -5.0]), jac=True, method="L-BFGS-B")
    slope, intercept = (float(v) for v in result.x)
    if slope <= 0:
        raise SimqaError("the verifier's curve does not rise with the cosine: check the pairs")
    return slope, intercept
