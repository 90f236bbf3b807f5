"""The hub penalty: neighbour densities on real vectors, and how the engine ranks with it."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

import simqa
from simqa import Consultation
from simqa.encode.encoder import load_encoder
from simqa.index.density import DEFAULT_K, DEFAULT_WEIGHT, neighbour_density
from tests.helpers import DATA

MEDQUAD_LIKE = [
    # a templated family: one focus, many question types, as MedQuAD has thousands of
    "What is (are) Restless legs syndrome?",
    "What causes Restless legs syndrome?",
    "What are the treatments for Restless legs syndrome?",
    "What are the symptoms of Restless legs syndrome?",
    "Is Restless legs syndrome inherited?",
    "How many people are affected by Restless legs syndrome?",
    "What is the outlook for Restless legs syndrome?",
    "How to diagnose Restless legs syndrome?",
]


def brute_force(vectors: np.ndarray, k: int) -> np.ndarray:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return -np.sort(-sims, axis=1)[:, :k].mean(axis=1)


@pytest.fixture(scope="module")
def questions() -> list[str]:
    rows = json.loads((DATA / "lasseregin_medical_qa" / "questionDoctorQAs.json").read_text())
    return [row["question"] for row in rows[:40]] + MEDQUAD_LIKE


def test_density_is_the_mean_cosine_to_the_k_nearest_others(questions):
    vectors = load_encoder(kind="torch").encode(questions)
    ids = np.arange(100, 100 + len(vectors), dtype=np.int64) * 3  # ids need not be positions
    index = faiss.IndexIDMap(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, ids)
    found = neighbour_density(index.search, vectors, ids, k=5)
    assert np.allclose(found, brute_force(vectors, 5), atol=1e-5)
    # the templated family sits in a crowded region; the patients' questions do not
    assert found[-len(MEDQUAD_LIKE):].min() > np.median(found[: -len(MEDQUAD_LIKE)])
    assert neighbour_density(index.search, vectors[:1], ids[:1]).tolist() == [0.0]


def test_engine_orders_by_cosine_less_the_penalty(tmp_path, questions):
    records = [Consultation(id=f"q{i}", question=q) for i, q in enumerate(questions)]
    records.append(Consultation(
        id="target", question="My legs feel restless and jumpy at night, what can help me?"))
    weight = 0.5
    index = simqa.build(records, tmp_path / "hub", encoder="torch", hub_penalty=weight)
    assert index.info()["hub_penalty"] == {"weight": weight, "k": DEFAULT_K}
    ids, vectors = index.embeddings()
    density = np.load(index.dir / "density.npy")
    assert np.allclose(density, brute_force(np.asarray(vectors), DEFAULT_K), atol=1e-5)

    query = "How can I treat restless legs syndrome at night?"
    hits = index.search(query, k=5, min_score=-1)
    vid = {r.id: v for v, r in index.snapshot.store.iter_records()}
    for hit in hits:
        row = int(np.searchsorted(ids, vid[hit.id]))
        assert hit.rank_score == pytest.approx(hit.score - weight * density[row], abs=1e-5)
    assert [h.rank_score for h in hits] == sorted((h.rank_score for h in hits), reverse=True)

    plain = simqa.build(records, tmp_path / "plain", encoder="torch")  # the default: off
    assert DEFAULT_WEIGHT == 0 and plain.info()["hub_penalty"] == {}
    assert not (plain.dir / "density.npy").exists()
    cosine = plain.search(query, k=5, min_score=-1)
    assert all(h.rank_score == h.score for h in cosine)
    assert [h.score for h in cosine] == sorted((h.score for h in cosine), reverse=True)
    # the family's templated questions lead by cosine; the penalty lifts the patient's own
    by_cosine, by_rank = [h.id for h in cosine], [h.id for h in hits]
    assert by_cosine.index("target") > by_rank.index("target")


def test_append_recomputes_densities(tmp_path, questions):
    first = [Consultation(id=f"q{i}", question=q) for i, q in enumerate(questions[:30])]
    more = [Consultation(id=f"q{i}", question=q) for i, q in enumerate(questions) if i >= 30]
    simqa.build(first, tmp_path / "grow", encoder="torch", hub_penalty=0.25)
    grown = simqa.build(more, tmp_path / "grow", append=True)
    assert grown.info()["hub_penalty"]["weight"] == 0.25  # kept from the first build
    _ids, vectors = grown.embeddings()
    expected = brute_force(np.asarray(vectors), DEFAULT_K)
    # the appended ones' densities are in the write's delta segment, with those of the old
    # questions near them recomputed; the base's density.npy is left as it was
    density = grown.snapshot.density
    assert len(density) == len(questions)
    assert np.allclose(density, expected, atol=1e-5)
    assert len(np.load(grown.dir / "density.npy")) == 30
    grown.compact()  # folded into the new base's file
    assert np.allclose(np.load(grown.dir / "density.npy"), expected, atol=1e-5)


def test_a_box_shows_each_question_once(tmp_path):
    """Sites and FAQ collections repeat questions under several ids: show each once."""
    text = "What are the symptoms of restless legs syndrome?"
    records = [
        Consultation(id="a", question=text, source="GARD"),
        Consultation(id="b", question=text.upper(), source="GHR"),  # same question, shouted
        Consultation(id="c", question="  what are the symptoms of  restless legs syndrome?"),
        Consultation(id="d", question="How is restless legs syndrome treated?"),
        Consultation(id="e", question="Why do my legs twitch when I fall asleep?"),
    ]
    index = simqa.build(records, tmp_path / "dups")
    hits = index.search("restless legs symptoms", k=3, min_score=-1)
    assert hits[0].id in {"a", "b", "c"} and {h.id for h in hits[1:]} == {"d", "e"}
    # an indexed consultation's box leaves out itself and every copy of its question
    assert {h.id for h in index.similar("a", k=4, min_score=-1)} == {"d", "e"}
