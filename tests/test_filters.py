"""Filters never hide a match: filtered search against brute force over the matching records.

Real MedQuAD questions (four subsets of very different sizes, with their focus and question
type as tags) in an ivf_pq index, random filters from 0.1 % of the records upwards; then
the same after writes that leave delta segments on the base (added, deleted and updated
records), where a filter must hold across base and deltas alike.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import simqa
from simqa.index.hits import question_key
from simqa.index.store import Filter
from tests.helpers import DATA

#: builds its own indexes, starts servers or trains: `pytest -m "not slow"` skips it
pytestmark = pytest.mark.slow

SUBSETS = ("9_CDC_QA", "7_SeniorHealth_QA", "8_NHLBI_QA_XML", "12_MPlusHerbsSupplements_QA")
K = 5


@pytest.fixture(scope="module")
def medquad(tmp_path_factory):
    from simqa.ingest import load

    records = list(load([DATA / "medquad" / s for s in SUBSETS]))
    rng = random.Random(0)
    for r in records:  # MedQuAD has no dates: give each a day in 2010-2019 to filter by
        r.ask_date = f"{rng.randint(2010, 2019)}/{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}"
    path = tmp_path_factory.mktemp("filters") / "mq"
    index = simqa.build(records, path, index_type="ivf_pq", hub_penalty=0)
    return index, records


def random_filter(rng: random.Random, records: list) -> dict:
    pick = rng.choice(records)
    filters: dict = {}
    kinds = rng.sample(["department", "tag", "since", "until", "source"], rng.randint(1, 3))
    for kind in kinds:
        if kind == "department":
            filters["department"] = pick.department
        elif kind == "tag":
            filters["tag"] = rng.choice(pick.tags)
        elif kind == "since":
            filters["since"] = f"{rng.randint(2010, 2019)}-{rng.randint(1, 12):02d}"
        elif kind == "until":
            filters["until"] = str(rng.randint(2010, 2019))
        else:
            filters["source"] = pick.source
    return filters


def brute_force(index, query: np.ndarray, filters: dict, k: int) -> np.ndarray:
    """The k best cosines among the records the filter keeps, each question once (as a box
    shows them), sorted descending."""
    snap = index.snapshot
    vids = snap.store.vids_where(Filter(**filters))
    scores = np.asarray(snap.emb[snap.rows(vids)]) @ query
    records = snap.store.fetch(vids)
    best: dict[str, float] = {}
    for vid, score in zip(vids, scores, strict=True):
        key = question_key(records[int(vid)][0], snap.manifest.embed_fields)
        best[key] = max(best.get(key, -2.0), float(score))
    return np.sort(np.array(list(best.values())))[::-1][:k]


def compare(index, records, rng, n_filters: int) -> tuple[int, int, list[float]]:
    """(hits found, hits expected, selectivities tried) over random filters and queries."""
    ids, vectors = index.embeddings()
    found = expected = 0
    shares = []
    for _ in range(n_filters):
        filters = random_filter(rng, records)
        shares.append(len(index.snapshot.store.vids_where(Filter(**filters))) / len(ids))
        for row in rng.sample(range(len(ids)), 3):
            query = np.asarray(vectors[row])
            best = brute_force(index, query, filters, K)
            hits = index.search_vectors(query, K, min_score=-1, **filters)[0]
            assert len(hits) == len(best)  # never fewer than the matching records allow
            got = np.array([h.score for h in hits])
            found += int((got >= (best[-1] if len(best) else 0) - 1e-5).sum())
            expected += len(best)
            for hit in hits:  # every hit really matches the filter
                r = hit.record
                assert not filters.get("department") or r.department == filters["department"]
                assert not filters.get("tag") or filters["tag"] in r.tags
    return found, expected, shares


def test_narrow_filters_are_searched_exactly(medquad):
    index, records = medquad
    assert index.manifest.vector_index["kind"] == "ivf_pq"
    found, expected, shares = compare(index, records, random.Random(1), 60)
    assert found == expected  # equal to brute force over the matching records
    assert min(shares) <= 0.002 < 0.1 <= max(shares)  # from 0.1 % of the records upwards


def test_wide_filters_widen_the_approximate_search(medquad, monkeypatch):
    index, records = medquad
    # send every filter through the vector index instead of the exact path
    monkeypatch.setattr("simqa.index.search.EXACT_SUBSET_MAX", 20)
    found, expected, _ = compare(index, records, random.Random(2), 40)
    assert found / expected >= 0.97


def test_date_and_tag_filters_from_the_command_line(medquad):
    from .test_cli import assert_short_error, run

    index, _ = medquad
    args = ["--since", "2015", "--until", "2016-06", "--tag", "treatment", "--min-score", "-1"]
    out = run("query", "high blood pressure", "--index", str(index.root), "-f", "json", *args)
    assert out.returncode == 0, out.stderr
    data = __import__("json").loads(out.stdout)
    hits = data["hits"] if isinstance(data, dict) else data
    assert hits
    for hit in hits:
        record = index.get(hit["id"])
        assert "2015-01-01" <= record.ask_date.replace("/", "-") <= "2016-06-31"
        assert "treatment" in [t.lower() for t in record.tags]
    assert_short_error(
        run("query", "x", "--index", str(index.root), "--since", "soon"), "since must be a date"
    )


@pytest.fixture(scope="module")
def with_deltas(medquad, tmp_path_factory):
    """The same index after writes that leave deltas on its base: a subset added (its own
    department and source), base records deleted, others updated in place (a new
    department and tags, the same text: the same vector ids)."""
    import shutil
    from dataclasses import replace

    from simqa.ingest import load

    index, records = medquad
    path = tmp_path_factory.mktemp("filters-deltas") / "mq"
    shutil.copytree(index.root, path)
    grown = simqa.open_index(path)
    rng = random.Random(3)
    added = list(load([DATA / "medquad" / "5_NIDDK_QA"]))[:400]
    for r in added:
        r.ask_date = f"{rng.randint(2010, 2019)}/{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}"
    gone = set(rng.sample([r.id for r in records], 300))
    moved = [replace(r, department="Moved", tags=[*r.tags[:1], "moved"])
             for r in rng.sample([r for r in records if r.id not in gone], 150)]  # fmt: skip
    for start in range(0, len(added), 100):  # several writes, several segments
        grown.add(added[start : start + 100])
    grown.delete(sorted(gone))
    grown.add(moved)
    live = {r.id: r for r in records if r.id not in gone}
    live.update({r.id: r for r in [*added, *moved]})
    assert len(grown.snapshot.manifest.segments) == 6 and len(grown) == len(live)
    return grown, list(live.values())


def test_filters_stay_exact_across_base_and_deltas(with_deltas):
    index, records = with_deltas
    found, expected, shares = compare(index, records, random.Random(4), 60)
    assert found == expected
    assert min(shares) <= 0.002 < 0.1 <= max(shares)
    moved = index.search("diabetes", 5, department="Moved", min_score=-1)
    assert moved and all(h.record.department == "Moved" for h in moved)


def test_wide_filters_across_base_and_deltas(with_deltas, monkeypatch):
    index, records = with_deltas
    monkeypatch.setattr("simqa.index.search.EXACT_SUBSET_MAX", 20)
    found, expected, _ = compare(index, records, random.Random(5), 40)
    assert found / expected >= 0.97
