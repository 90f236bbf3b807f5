"""The engine end to end on real data: build, search, similar, append, render."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest

import simqa
from simqa import Consultation
from simqa.encode.threshold import CALIBRATED, KEEP_ALL
from simqa.errors import BadQuery, SimqaError
from simqa.evaluate.calibrate import calibrate
from simqa.ingest import load
from simqa.ingest.page import parse_page, parse_similar_section
from tests.helpers import DATA, QUESTION_DOCTOR, SEED

RQE_VALIDATION = (
    DATA / "mediqa2019" / "MEDIQA_Task2_RQE" / "MEDIQA2019-Task2-RQE-ValidationSet-AMIA2016.xml"
)

LEG_OR_SLEEP = re.compile(r"\b(leg|legs|sleep\w*|jerk\w*|twitch\w*|spasm\w*|restless)\b", re.I)


def seed_record() -> Consultation:
    return parse_page(SEED.read_text(), SEED.name)


def test_seed_question_finds_leg_and_sleep_consultations(consult_index):
    seed = seed_record()
    hits = consult_index.similar_to(seed, k=4)
    assert len(hits) == 4
    about = [h for h in hits if LEG_OR_SLEEP.search(h.record.title + " " + h.record.question)]
    assert len(about) >= 3, [h.record.title for h in hits]
    assert seed.id not in {h.id for h in hits}  # the page itself is indexed but left out
    assert all(a.rank_score >= b.rank_score for a, b in itertools.pairwise(hits))


def test_similar_by_id_excludes_itself_and_exact_duplicates(consult_index):
    seed = seed_record()
    hits = consult_index.similar(seed.id, k=5)
    assert seed.id not in {h.id for h in hits}
    query = consult_index.search(seed.embedding_text(), k=1)
    assert query[0].id == seed.id and query[0].score > 0.99


def test_free_text_search_returns_whole_consultations(consult_index):
    hits = consult_index.search("is my hiv test result conclusive or should I retest", k=3)
    assert "hiv" in hits[0].record.title.lower()
    assert hits[0].record.reply and hits[0].record.doctor
    assert hits[0].record.source == "questiondoctors"


def test_rendered_text_has_the_seed_layout(consult_index):
    hits = consult_index.similar_to(seed_record(), k=4)
    text = simqa.render(hits, "text")
    lines = text.split("\n")
    assert lines[0] == "Similar Q&A"
    assert 1 + 4 * 3 <= len(lines) <= 1 + 4 * 4  # a question that repeats its title is left out
    parsed = parse_similar_section(text)
    assert [p["title"] for p in parsed] == [h.record.title for h in hits]
    for entry, hit in zip(parsed, hits, strict=True):
        assert f"Dr. {hit.record.doctor} reply" in lines
        assert entry["reply_start"] and entry["doctor"] == hit.record.doctor
        question = entry["question_start"]
        assert len(question) <= 273 and (len(question) < 270 or question.endswith("..."))
        assert question.lower() != hit.record.title.lower()


def test_seed_entries_render_exactly_as_the_seed_shows_them():
    """Render the seed's own Similar Q&A entries: titles, bylines and short texts match."""
    from simqa.index import Hit

    text = SEED.read_text()
    entries = parse_similar_section(text)
    assert len(entries) == 4
    seed_lines = text.split("Similar Q&A\n", 1)[1].split("\nRelated FAQ")[0].split("\n")
    for n, entry in enumerate(entries):
        record = Consultation(
            id=str(n),
            title=entry["title"],
            question=entry["question_start"],
            doctor=entry["doctor"],
            department=entry["department"],
            reply=entry["reply_start"],
        )
        title, question, byline, reply = simqa.render([Hit(record.id, 1.0, record)]).split("\n")[1:]
        expected = seed_lines[4 * n : 4 * n + 4]
        assert title == expected[0]
        assert byline == expected[2]
        assert reply.endswith("[Read More] " + expected[0])
        if not expected[1].endswith("..."):
            assert question == expected[1]


@pytest.mark.parametrize("fmt", ["json", "markdown", "html"])
def test_other_formats(consult_index, fmt):
    hits = consult_index.search("restless legs at night", k=2)
    out = simqa.render(hits, fmt)
    if fmt == "json":
        box = json.loads(out)
        assert set(box) == {"hits", "related_faq"} and box["related_faq"] == []
        data = box["hits"]
        assert [d["id"] for d in data] == [h.id for h in hits]
        assert data[0]["tags"] == hits[0].record.tags
        assert set(data[0]) - {"tags"} == {
            "id",
            "score",
            "rank_score",
            "title",
            "question",
            "reply",
            "doctor",
            "department",
            "ask_date",
            "reply_date",
            "url",
            "source",
        }
    elif fmt == "markdown":
        assert out.startswith("## Similar Q&A") and out.count("\n### ") == 2
    else:
        assert out.count("<article") == 2 and "<script" not in out


def test_html_escapes_record_text(tmp_path):
    from simqa.index import Hit

    record = Consultation(id="x", title="<script>alert(1)</script>", question="a & b")
    out = simqa.render([Hit("x", 0.9, record)], "html")
    assert "<script>" not in out and "&lt;script&gt;" in out and "a &amp; b" in out


def test_min_score_says_nothing_similar(consult_index):
    hits = consult_index.search(
        "quarterly tax filing deadline for corporations", k=3, min_score=0.9
    )
    assert hits == []
    assert "Nothing similar was found" in simqa.render(hits, "text", min_score=0.9)


def test_calibrated_min_score_is_the_default(consult_index):
    default = CALIBRATED["all-MiniLM-L6-v2"]
    assert consult_index.info()["min_score"] == default
    off_topic = "quarterly tax filing deadline for corporations"
    assert consult_index.search(off_topic, k=3) == []
    kept = consult_index.search(off_topic, k=3, min_score=KEEP_ALL)
    assert len(kept) == 3 and all(h.score < default for h in kept)
    on_topic = consult_index.search("my legs jerk when I am falling asleep", k=3)
    assert len(on_topic) == 3 and all(h.score >= default for h in on_topic)


@pytest.mark.slow
def test_calibrate_reproduces_the_packaged_threshold():
    found = calibrate(RQE_VALIDATION)
    assert found["n_pairs"] == 302 and found["model"] == "all-MiniLM-L6-v2"
    assert abs(found["min_score"] - CALIBRATED["all-MiniLM-L6-v2"]) <= 0.01
    assert found["keeps_similar"] >= 0.95 > found["keeps_different"]
    assert found["accuracy"] > 0.75


def test_filters(consult_index):
    hits = consult_index.search("leg spasms", k=3, source="page")
    assert [h.id for h in hits] == [seed_record().id]
    assert (
        consult_index.search("leg spasms", k=3, department="Neurosurgery")[0].id == seed_record().id
    )
    assert consult_index.search("leg spasms", k=3, department="no such department") == []


def test_bad_queries(consult_index):
    with pytest.raises(BadQuery, match="empty"):
        consult_index.search("   \n\t ")
    with pytest.raises(BadQuery, match="limit"):
        consult_index.search("pain " * 210_000)
    with pytest.raises(BadQuery, match="k must be"):
        consult_index.search("headache", k=0)
    with pytest.raises(SimqaError, match="no consultation with id"):
        consult_index.similar("no-such-id")


def test_append_adds_updates_and_does_not_reembed_unchanged(tmp_path):
    base = [
        Consultation(
            id="a", title="Knee pain after running", question="My knee hurts after I run."
        ),
        Consultation(id="b", title="Dry cough", question="I have had a dry cough for two weeks."),
    ]
    path = tmp_path / "idx"
    first = simqa.build(base, path)
    ids_before, vecs_before = first.embeddings()
    vecs_before = np.array(vecs_before)
    updated = [
        Consultation(
            id="b",
            title="Dry cough",
            question="I have had a dry cough for two weeks.",
            reply="Try honey.",
            doctor="Lee",
        ),
        Consultation(id="a", title="Toothache", question="My molar aches when I drink cold water."),
        Consultation(
            id="c",
            title="Migraine",
            question="Throbbing headache with nausea and light sensitivity.",
        ),
    ]
    second = simqa.build(updated, path, append=True)
    assert len(second) == 3 and len(second.snapshot.vectors) == 3
    assert second.search("cough", k=1)[0].record.reply == "Try honey."
    assert second.search("tooth hurts with cold drinks", k=1)[0].id == "a"
    ids_after, vecs_after = second.embeddings()
    b_before = vecs_before[list(ids_before).index(2)]
    b_after = np.array(vecs_after)[list(ids_after).index(2)]
    assert np.array_equal(b_before, b_after)  # unchanged text kept its vector id and vector
    assert 1 not in list(ids_after)  # a's old vector left with its old text


def test_ingest_then_build_counts_match(tmp_path):
    records = list(load([SEED]))
    idx = simqa.build(records, tmp_path / "one")
    assert len(idx) == 1 and idx.info()["records"] == 1


def test_index_is_queried_with_the_encoder_it_was_built_with(consult_index):
    assert consult_index.manifest.encoder == "onnx"
    assert consult_index.encoder.kind == "onnx"
    reference = simqa.open_index(consult_index.root, encoder="torch")
    query = "I was diagnosed with restless leg syndrome, what helps?"
    fast, slow = consult_index.search(query, k=3), reference.search(query, k=3)
    assert fast[0].id == slow[0].id
    assert abs(fast[0].score - slow[0].score) < 0.02


@pytest.mark.parametrize("kind", ["hnsw_sq8", "ivf_pq"])
def test_approximate_index_builds_tunes_appends_and_updates(tmp_path, kind):
    records = list(load([QUESTION_DOCTOR]))[:300]
    path = tmp_path / kind
    idx = simqa.build(records, path, index_type=kind)
    info = idx.info()
    assert info["index_type"] == kind and info["recall"]["recall"] >= 0.95
    target = records[10]
    assert idx.search(target.embedding_text(), k=1)[0].id == target.id
    changed = Consultation(
        id=target.id, title="Ingrown toenail", question="My big toe nail grows into the skin"
    )
    idx = simqa.build([changed], path, append=True)
    assert idx.info()["index_type"] == kind and len(idx) == 300
    assert idx.search("toenail growing into skin", k=1)[0].id == target.id
    assert target.id not in {
        h.id
        for h in idx.search(target.embedding_text(), k=5)
        if h.record.title != "Ingrown toenail"
    }
