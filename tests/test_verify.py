"""The box's verifier: the fitted curve, the packaged model's verdicts, flag / drop / off."""

from __future__ import annotations

import numpy as np
import pytest

from simqa.box.verify import (
    PACKAGED,
    VerifiedHit,
    Verifier,
    fit_logistic,
    verifier_for,
    verify_hits,
)
from simqa.encode.threshold import KEEP_ALL
from simqa.errors import SimqaError
from tests.helpers import DATA

RQE_VAL = (
    DATA / "mediqa2019" / "MEDIQA_Task2_RQE" / "MEDIQA2019-Task2-RQE-ValidationSet-AMIA2016.xml"
)


def test_the_fitted_curve_crosses_one_half_between_the_classes():
    rng = np.random.default_rng(0)
    same = rng.normal(0.8, 0.05, 300)
    different = rng.normal(0.5, 0.05, 900)  # three times as many: classes are weighted equally
    slope, intercept = fit_logistic(
        np.concatenate([same, different]), np.r_[np.ones(300, bool), np.zeros(900, bool)]
    )
    verifier = Verifier(slope, intercept)
    assert verifier.threshold == pytest.approx(0.65, abs=0.02)
    assert verifier.probability(0.9) > 0.99 and verifier.probability(0.4) < 0.01
    probabilities = [verifier.probability(x) for x in np.linspace(-1, 1, 41)]
    assert probabilities == sorted(probabilities)


def test_fitting_needs_both_kinds_of_pair():
    with pytest.raises(SimqaError, match="both same and different"):
        fit_logistic(np.array([0.5, 0.6]), np.array([True, True]))


def test_the_packaged_verifier_tells_rqe_validation_pairs_apart_better_than_chance():
    from simqa.encode.encoder import shared_encoder
    from simqa.evaluate.pairs import read_pairs

    verifier = Verifier.from_record(PACKAGED["all-MiniLM-L6-v2"], "packaged")
    pairs = [p for p in read_pairs(RQE_VAL).pairs if p.left != p.right]
    encoder = shared_encoder(None)
    left = encoder.encode([p.left for p in pairs])
    right = encoder.encode([p.right for p in pairs])
    said = np.array([verifier.probability(c) >= 0.5 for c in np.sum(left * right, axis=1)])
    truth = np.array([p.label == 1 for p in pairs])
    majority = max(truth.mean(), 1 - truth.mean())
    assert (said == truth).mean() > majority + 0.05


def test_flag_drop_and_off_on_a_real_box(consult_index):
    verifier = verifier_for(consult_index, "flag")
    assert verifier is not None  # the packaged model has one
    hits = consult_index.search("my legs jerk when I am falling asleep", k=5, min_score=KEEP_ALL)
    flagged = verify_hits(hits, verifier, "flag")
    assert [h.id for h in flagged] == [h.id for h in hits]
    assert all(isinstance(h, VerifiedHit) for h in flagged)
    for hit in flagged:
        row = hit.to_json()
        assert row["same_question"] == (verifier.probability(hit.score) >= 0.5)
        assert 0 <= row["same_question_probability"] <= 1 and row["score"] == round(hit.score, 4)
    dropped = verify_hits(hits, verifier, "drop")
    assert [h.id for h in dropped] == [h.id for h in flagged if h.same_question]
    assert verify_hits(hits, verifier, "off") == hits
    assert verifier_for(consult_index, "off") is None
    with pytest.raises(SimqaError, match="--verify must be one of"):
        verifier_for(consult_index, "sometimes")
