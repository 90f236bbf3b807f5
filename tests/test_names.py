"""The names lever in the box (issue 20): a long question's rare condition and drug names
bring up the records holding them.

Real consultations (300 QuestionDoctors questions, the first question of 150 MedQuAD
A.D.A.M. topics, whose titles give the names), the real model, flat indexes (exact search):
every box is checked against brute force over the live records with ``simqa.lexicon``'s
definition (what benchmarks/judged's ``names-lw.2`` run ranked), through writes, deletes,
updates and compaction.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import simqa
from simqa import Box, Consultation
from simqa.index.hits import check_query, question_key
from simqa.index.names import NAMES as NAMES_FILE
from simqa.index.names import Phrases, boost
from simqa.lexicon import (
    NAMES,
    NameLever,
    holds_name,
    mentions,
    name_tokens,
    name_vocabulary,
    strong_names,
)

from .helpers import DATA, QUESTION_DOCTOR

FIELDS = "title+question"
ADAM = DATA / "medquad" / "10_MPlus_ADAM_QA"
DEPARTMENTS = ["Neurology", "Skin", "Heart", "ENT"]

#: 60 words about knees; one mention of a name one record holds (dense ranks it 6th)
KNEES = (
    "My knees hurt when I climb stairs and I have gained some weight since I stopped running "
    "last year, I also feel stiff in the morning for about half an hour. My doctor mentioned "
    "acanthosis nigricans on my neck at the last visit but did not explain much. Should I be "
    "worried about my knees and what exercise is safe?"
)
#: 54 words about a cough; the name's record is 11th by cosine
COUGH = (
    "For two months I have had a cough that gets worse at night and some heartburn after "
    "dinner, I sleep propped up on pillows and it helps a little. A friend said it might be "
    "an absence seizure thing because I sometimes stare off. What should I do about the "
    "cough and the heartburn?"
)
#: a name no record gives until a write adds one
KIKUCHI = (
    "I am 28 and a lymph node in my neck has been swollen and tender for six weeks, with "
    "night sweats and a low fever in the evenings. The biopsy report says Kikuchi disease "
    "and the surgeon was reassuring. How long does it last, can it come back, and is it "
    "linked to lupus?"
)
LONG = (KNEES, COUGH, KIKUCHI)


@pytest.fixture(scope="module")
def records() -> list[Consultation]:
    """300 QuestionDoctors consultations and 150 A.D.A.M. topics' first questions, each
    given a department and a tag to filter by."""
    from simqa.ingest import load

    found = list(load([QUESTION_DOCTOR]))[:300]
    for path in sorted(ADAM.glob("*.xml"))[:150]:
        found.extend(list(load([path]))[:1])
    rng = random.Random(20)
    return [
        replace(r, department=rng.choice(DEPARTMENTS), tags=[rng.choice(["sleep", "pain"])])
        for r in found
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory, records) -> Path:
    path = tmp_path_factory.mktemp("names") / "consults"
    simqa.build(records, path).close()
    return path


@pytest.fixture
def index(built, tmp_path):
    """A copy of the built index, for a test's own writes."""
    path = tmp_path / "consults"
    shutil.copytree(built, path)
    opened = simqa.open_index(path)
    yield opened
    opened.close()


def _passes(record: Consultation, filters: dict) -> bool:
    if "department" in filters and record.department != filters["department"]:
        return False
    return "tag" not in filters or filters["tag"] in record.tags


class Reference:
    """The box by brute force over a plain dict of the live records: every record's cosine,
    plus the lever's bonus computed from ``simqa.lexicon`` alone."""

    def __init__(self, index: simqa.Index, records: list[Consultation]) -> None:
        self.index = index
        self.records = {r.id: r for r in records}
        self._vectors: dict[str, np.ndarray] = {}

    def vector(self, record: Consultation) -> np.ndarray:
        text = record.embedding_text(FIELDS)
        if text not in self._vectors:  # the index's stored vector of this text
            vid = self.index.snapshot.store.get(record.id)[0]
            self._vectors[text] = self.index.snapshot.vectors_of(np.array([vid]))[0]
        return self._vectors[text]

    def box(self, text: str, k: int, lever: NameLever | None = NAMES, min_score: float = -1,
            **filters: str) -> list[tuple[str, float, float]]:  # fmt: skip
        query = check_query(text)
        q = self.index.encoder.encode([query])[0]
        live = list(self.records.values())
        bonus = dict.fromkeys(self.records, 0.0)
        if lever is not None and lever.applies(query):
            texts = {r.id: " ".join(name_tokens(r.embedding_text(FIELDS))) for r in live}
            found = mentions(query, name_vocabulary(r.title for r in live))
            df = {name: sum(holds_name(t, name) for t in texts.values()) for name in found}
            strong = strong_names(found, df, len(live), lever.min_idf)
            total = sum(strong.values())
            for r in live:
                held = sum(w for name, w in strong.items() if holds_name(texts[r.id], name))
                bonus[r.id] = lever.weight * held / total if total else 0.0
        scored = []
        for r in live:
            cos = float(self.vector(r) @ q)
            if _passes(r, filters) and cos >= min_score:
                scored.append((cos + bonus[r.id], cos, r))
        scored.sort(key=lambda x: -x[0])
        out, shown = [], set()
        for rank, cos, r in scored:
            key = question_key(r, FIELDS)
            if key not in shown:
                shown.add(key)
                out.append((key, cos, rank))
            if len(out) == k:
                break
        return out


def shown(box: Box) -> list[tuple[str, float, float]]:
    return [(question_key(h.record, FIELDS), h.score, h.rank_score) for h in box.hits]


def same(got: list, want: list) -> None:
    assert [key for key, _, _ in got] == [key for key, _, _ in want]
    for (_, cos, rank), (_, want_cos, want_rank) in zip(got, want, strict=True):
        assert cos == pytest.approx(want_cos, abs=1e-5)
        assert rank == pytest.approx(want_rank, abs=1e-5)


def check(index: simqa.Index, ref: Reference, k: int = 6) -> None:
    """Every live record and no other, and the boxes of the long questions (with and without
    filters and the threshold) as brute force has them."""
    assert {r.id: r for r in index.records()} == ref.records
    view = index.snapshot.names()
    vocabulary = {n for n in set(view.base_counts) | set(view.change) if n in view}
    assert vocabulary == name_vocabulary(r.title for r in ref.records.values())
    for text in LONG:
        for filters in ({}, {"department": "Skin"}, {"tag": "pain"}):
            got = Box.for_question(index, text, k, verify="off", min_score=-1, **filters)
            same(shown(got), ref.box(text, k, **filters))
        got = Box.for_question(index, text, k, verify="off")  # the index's threshold
        same(shown(got), ref.box(text, k, min_score=index.manifest.min_score))


def by_title(records: list[Consultation], title: str) -> Consultation:
    return next(r for r in records if r.title == title)


def test_a_long_question_brings_up_a_rare_name_that_cosine_ranks_lower(index, records):
    acanthosis = by_title(records, "Acanthosis nigricans")
    dense = Box.for_question(index, KNEES, 5, verify="off", names=None)
    assert acanthosis.id not in [h.id for h in dense.hits]  # 6th by cosine
    box = Box.for_question(index, KNEES, 5, verify="off")
    top = box.hits[0]
    assert top.id == acanthosis.id
    plain = Box.for_question(index, KNEES, 10, verify="off", names=None).hits
    cosine = next(h.score for h in plain if h.id == acanthosis.id)
    assert top.score == pytest.approx(cosine, abs=1e-6)  # score stays the cosine
    assert top.rank_score == pytest.approx(top.score + NAMES.weight, abs=1e-6)
    assert [h.rank_score for h in box.hits[1:]] == [h.score for h in box.hits[1:]]
    # every live record holding the name is a candidate, not only the vector index's
    seizure = by_title(records, "Absence seizure")
    assert seizure.id not in [h.id for h in index.search(COUGH, 9)]
    assert [h.id for h in index.search(COUGH, 1, names=NAMES)] == [seizure.id]
    ref = Reference(index, records)
    for text in LONG:
        same(shown(Box.for_question(index, text, 8, verify="off", min_score=-1)),
             ref.box(text, 8))  # fmt: skip


def test_short_questions_ids_and_pages_are_unchanged(index, records):
    short = "Is acanthosis nigricans on my neck a sign of diabetes and will it go away?"
    text = ("I have dark velvety skin on my neck and my doctor said acanthosis nigricans so "
            "I wonder what it means for my health and whether it goes away by itself")  # fmt: skip
    words = text.split(" ")
    assert len(words) == 30
    view = index.snapshot.names()
    assert boost(view, " ".join(words), NAMES) is None
    assert boost(view, " ".join([*words, "soon?"]), NAMES) is not None
    for text in (short, " ".join(words)):
        with_names = Box.for_question(index, text, 6, verify="off", min_score=-1)
        plain = Box.for_question(index, text, 6, verify="off", min_score=-1, names=None)
        assert shown(with_names) == shown(plain)
        assert all(h.rank_score == h.score for h in with_names.hits)
    acanthosis = by_title(records, "Acanthosis nigricans")
    for box in (Box.for_id(index, acanthosis.id, 6, verify="off"),
                Box.for_page(index, acanthosis, 6, verify="off")):  # fmt: skip
        assert all(h.rank_score == h.score for h in box.hits)


def test_writes_deletes_updates_and_compaction_follow_the_names(index, records):
    ref = Reference(index, records)
    check(index, ref)
    base = index.snapshot.names().parts[0][0]
    assert "kikuchi disease" not in index.snapshot.names()

    # a write whose title brings a new name: the next query sees it
    kikuchi = Consultation(
        id="kikuchi-1", title="Kikuchi disease", department="Skin", tags=["pain"],
        question="What is Kikuchi disease? A rare, benign cause of swollen lymph nodes in "
                 "the neck, with fever, mostly in young adults; it settles in months.",
    )  # fmt: skip
    index.add([kikuchi])
    ref.records[kikuchi.id] = kikuchi
    assert Box.for_question(index, KIKUCHI, 4, verify="off").hits[0].id == kikuchi.id
    assert index.snapshot.names().parts[0][0] is base  # the base's postings are kept
    check(index, ref)

    # a deleted record holding a name never comes back: a base row, then a delta row
    acanthosis = by_title(records, "Acanthosis nigricans")
    index.delete([acanthosis.id])
    del ref.records[acanthosis.id]
    assert "acanthosis nigrican" not in index.snapshot.names()
    for text in LONG:
        assert acanthosis.id not in [h.id for h in index.search(text, 30, names=NAMES,
                                                                 min_score=-1)]  # fmt: skip
    check(index, ref)

    # updates: a new department (same text: the row is restated), a new title holding a name
    seizure = by_title(records, "Absence seizure")
    renamed = replace(seizure, department="ENT" if seizure.department != "ENT" else "Skin")
    other = replace(records[0], title="Kikuchi disease")
    index.apply([("add", [renamed, other])])
    ref.records[renamed.id], ref.records[other.id] = renamed, other
    check(index, ref)
    index.delete([kikuchi.id])
    del ref.records[kikuchi.id]
    assert kikuchi.id not in [h.id for h in index.search(KIKUCHI, 30, names=NAMES, min_score=-1)]
    check(index, ref)

    # compaction folds the deltas into a new base, with its name postings: the same answers
    assert index.compact()["compacted"]
    assert not index.snapshot.deltas and (index.dir / NAMES_FILE).is_file()
    check(index, ref)
    assert index.snapshot.names().parts[0][0] is not base


def test_a_base_without_name_postings_makes_them_at_first_use(built, tmp_path, records):
    """An index built before the names lever: its base has no names.npz."""
    path = tmp_path / "older"
    shutil.copytree(built, path)
    version = next(path.glob("v*"))
    (version / NAMES_FILE).unlink()
    manifest = json.loads((version / "manifest.json").read_text())
    del manifest["files"][NAMES_FILE]
    (version / "manifest.json").write_text(json.dumps(manifest))
    index = simqa.open_index(path, verify=True)
    try:
        ref = Reference(index, records)
        check(index, ref)
        index.add([replace(records[0], title="Kikuchi disease")])  # a write on top of it
        ref.records[records[0].id] = replace(records[0], title="Kikuchi disease")
        check(index, ref)
    finally:
        index.close()


def test_filters_and_the_threshold_hold_for_name_holders(index, records):
    seizure = by_title(records, "Absence seizure")
    others = [d for d in DEPARTMENTS if d != seizure.department]
    for department in others:
        box = Box.for_question(index, COUGH, 6, verify="off", min_score=-1, department=department)
        assert box.hits and {h.record.department for h in box.hits} == {department}
        assert seizure.id not in [h.id for h in box.hits]
    box = Box.for_question(index, COUGH, 6, verify="off", department=seizure.department)
    assert box.hits[0].id == seizure.id
    # the threshold applies to the cosine, not to the boosted rank
    cosine = box.hits[0].score
    above = Box.for_question(index, COUGH, 6, verify="off", min_score=cosine + 1e-3)
    assert seizure.id not in [h.id for h in above.hits]
    assert all(h.score >= cosine + 1e-3 for h in above.hits)


def test_phrases_match_whole_names_as_brute_force_does(tmp_path):
    rows = [
        (1, "Burns", "My child's burns from hot water. Are the blisters burns or scalds?"),
        (2, "", "Complex regional pain syndrome after a fracture; the pain is worse"),
        (5, "Seizures", "Absence seizures in a 7-year-old"),
        (9, "What is gout?", "Is gout painful? Painful joints, no pain-free day"),
        (12, "Pain", "pain"),
    ]
    phrases = Phrases.of_rows(rows, FIELDS)
    texts = {
        vid: " ".join(name_tokens(Consultation(id=str(vid), title=t, question=q)
                                  .embedding_text(FIELDS)))
        for vid, t, q in rows
    }  # fmt: skip
    names = ["burn", "burns", "pain", "regional pain", "complex regional pain syndrome",
             "absence seizure", "seizure", "gout", "painful joint", "free day", "child",
             "pain syndrome after", "no", "syndrome after a fracture the pain"]  # fmt: skip
    for name in names:
        want = [vid for vid, text in texts.items() if holds_name(text, name)]
        assert phrases.holding(name.split(" ")).tolist() == want, name
    assert phrases.title_counts == {"burns": 1, "seizure": 1, "pain": 1}
    path = tmp_path / NAMES_FILE
    phrases.save(path)
    loaded = Phrases.load(path)
    assert loaded is not None and loaded.title_counts == phrases.title_counts
    for name in names:
        assert loaded.holding(name.split(" ")).tolist() == phrases.holding(name.split(" ")).tolist()


def test_name_holders_never_hide_a_closer_record_the_vector_index_reaches_later(index, records):
    """The vector candidates of a search for 2 hits (10) are all copies of one question:
    the one record holding the name (a small bonus: it ranks below the next distinct
    question) must not take the second place, the search widens to find that question."""
    question = COUGH.replace("an absence seizure thing", "nothing")  # holds no name
    copies = [Consultation(id=f"copy-{i}", title="Night cough", question=question)
              for i in range(10)]  # fmt: skip
    index.add(copies)
    ref = Reference(index, [*records, *copies])
    lever = NameLever(weight=0.01)
    found = index.search(COUGH, 2, names=lever, min_score=-1)
    assert found[0].id.startswith("copy-")
    assert found[1].id != by_title(records, "Absence seizure").id
    got = [(question_key(h.record, FIELDS), h.score, h.rank_score) for h in found]
    same(got, ref.box(COUGH, 2, lever=lever))
