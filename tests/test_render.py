"""The box as a reader sees it: Related FAQ, questions that repeat their titles, safe output."""

from __future__ import annotations

import json
import re

import pytest

import simqa
from simqa import Consultation
from simqa.box.related import Topic, join_tag, related_faq, split_tag, topics_of
from simqa.box.render import question_after_title, render, safe_url
from simqa.index import Hit
from simqa.ingest import load
from simqa.ingest.page import parse_page, parse_similar_section
from tests.helpers import DATA, QUESTION_DOCTOR, SEED

SEED_DEPARTMENTS = {"Neurology", "Neurosurgery"}  # what the seed's Related FAQ lines name


def seed_record() -> Consultation:
    return parse_page(SEED.read_text(encoding="utf-8"), SEED.name)


def hit(record: Consultation, score: float = 0.8) -> Hit:
    return Hit(record.id, score, record)


# --- Related FAQ ---------------------------------------------------------------------------


def test_tags_keep_a_department_only_where_one_is_written():
    assert split_tag("Leg(Neurology)") == ("Leg", "Neurology")
    assert split_tag("Eyelid Muscle Twitching(Neurology)") == (
        "Eyelid Muscle Twitching",
        "Neurology",
    )
    # parentheses inside real QuestionDoctors and MedQuAD topics are not departments
    for tag in (
        "i suffer from familial mediterranean fever(fmf)",
        "Prothrombin time (PT)",
        "belviq xr(20mg) and phentermine(15mg) for weight loss",
        "(Neurology)",
    ):
        assert split_tag(tag)[1] == "", tag
    assert join_tag("Leg", "Neurology") == "Leg(Neurology)"
    assert join_tag("Leg", "") == "Leg"


def test_medquad_topic_is_its_focus_with_its_collection_not_the_question_type():
    path = next((DATA / "medquad" / "2_GARD_QA").glob("*.xml"))
    record = next(r for r in load([path], format="medquad"))
    assert record.tags[1]  # [focus, question type]
    assert topics_of(record) == [(record.tags[0], record.department)]


def test_related_faq_of_the_seed_page(consult_index):
    seed = seed_record()
    hits = consult_index.similar_to(seed, k=10)
    topics = related_faq(seed, hits)
    assert Topic("Leg", "Neurology") in topics and Topic("Sleep", "Neurology") in topics
    assert len(topics) == 9
    # departments come only from the seed's lines (the QuestionDoctors tags name none)
    assert {t.department for t in topics} <= SEED_DEPARTMENTS | {""}
    own = {split_tag(t)[0] for t in seed.tags}
    assert {t.topic for t in topics if t.department} <= own

    text = render(hits[:4], "text", related=topics)
    box, faq = text.split("\nRelated FAQ\n")
    assert box.startswith("Similar Q&A\n") and len(parse_similar_section(text)) == 4
    assert faq.split("\n") == [t.label() for t in topics]
    assert "Leg(Neurology)" in faq.split("\n")


def test_neighbour_tags_count_by_similarity():
    own = Consultation(id="q", question="My legs jerk at night.", tags=["Leg(Neurology)"])
    near = Consultation(id="a", question="Leg cramps in bed", tags=["cramps", "leg"])
    far = Consultation(id="b", question="Ankle sprain", tags=["ankle"], department="Orthopedics")
    both = Consultation(id="c", question="Night cramps", tags=["Cramps"])
    topics = related_faq(own, [hit(near, 0.9), hit(both, 0.7), hit(far, 0.5)])
    # Leg: 1 + 0.9; Cramps: 0.9 + 0.7; ankle: 0.5 (its record's department)
    assert topics == [Topic("Leg", "Neurology"), Topic("Cramps"), Topic("Ankle", "Orthopedics")]
    assert related_faq(None, [hit(far, 0.5)]) == [Topic("Ankle", "Orthopedics")]
    assert related_faq(None, [hit(far, -0.2)]) == []  # an opposite question lends nothing


def test_a_neighbours_tag_counts_only_when_the_corpus_shares_it():
    own = Consultation(id="q", question="Legs jerk at night", tags=["Leg(Neurology)", "jerks"])
    phrase = Consultation(id="a", question="Leg cramps", tags=["my leg cramps at night", "leg"])
    shared = Consultation(id="b", question="Cramps again", tags=["cramps"])
    counts = {"leg": 1, "jerks": 1, "my leg cramps at night": 1, "cramps": 2}  # per topic
    topics = related_faq(own, [hit(phrase, 0.9), hit(shared, 0.6)], counts)
    # own topics count whatever their count ("leg" joins the own "Leg"); the phrase drops
    assert topics == [Topic("Leg", "Neurology"), Topic("Jerks"), Topic("Cramps")]


def test_json_box_has_hits_with_tags_and_related_faq(consult_index):
    seed = seed_record()
    hits = consult_index.similar_to(seed, k=10)
    box = json.loads(render(hits[:3], "json", related=related_faq(seed, hits)))
    assert set(box) == {"hits", "related_faq"}
    assert [h["id"] for h in box["hits"]] == [h.id for h in hits[:3]]
    assert all(h["tags"] == x.record.tags for h, x in zip(box["hits"], hits, strict=False))
    assert {"topic": "Leg", "department": "Neurology"} in box["related_faq"]
    assert all(set(t) == {"topic", "department"} for t in box["related_faq"])


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_related_faq_in_markdown_and_html(fmt):
    record = Consultation(id="a", title="Leg cramps", question="Cramps at night.")
    out = render([hit(record)], fmt, related=[Topic("Leg", "Neurology"), Topic("Cramps")])
    if fmt == "markdown":
        assert out.endswith("## Related FAQ\n\n- Leg(Neurology)\n- Cramps\n")
    else:
        assert '<section class="related-faq">' in out
        assert (
            '<li><span class="topic">Leg</span><span class="department">(Neurology)</span>' in out
        )
        assert '<li><span class="topic">Cramps</span></li>' in out
    assert "Related FAQ" not in render([hit(record)], fmt)


def test_cli_prints_the_related_faq_of_a_page(tmp_path):
    from .test_cli import RECORDS, run

    cramps = Consultation(
        id="cramps", title="Leg cramps in bed", question="My calves cramp at night.",
        tags=["leg", "calf cramps at night"],
    )  # fmt: skip
    simqa.build([*RECORDS, cramps, SEED], tmp_path / "idx")
    out = run("similar", "--page", str(SEED), "--index", str(tmp_path / "idx"), "-k", "2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    faq = lines[lines.index("Related FAQ") + 1 :]
    assert faq == [split_tag(tag)[0] + f"({split_tag(tag)[1]})" for tag in seed_record().tags]
    # a query has no tags of its own: only topics that two consultations share ("Leg": the
    # seed's, with its department, and the cramps question's) are listed
    as_json = run(
        "query", "legs jerk as I fall asleep", "--index", str(tmp_path / "idx"), "--format", "json"
    )
    box = json.loads(as_json.stdout)
    assert box["related_faq"] == [{"topic": "Leg", "department": "Neurology"}]


# --- a question that repeats its title ---------------------------------------------------


def test_question_that_only_repeats_its_title_is_shown_once():
    record = Consultation(
        id="hiv",
        title="Is my anti hiv test conclusive or need retest?",
        question="Is my Anti Hiv Test Conclusive or need retest?",
        doctor="Ayman Darrag",
        reply="Your results are enough.",
    )
    lines = render([hit(record)]).split("\n")
    assert lines == [
        "Similar Q&A",
        "Is my anti hiv test conclusive or need retest?",
        "Dr. Ayman Darrag reply",
        "Your results are enough.[Read More] Is my anti hiv test conclusive or need retest?",
    ]
    assert parse_similar_section("\n".join(lines))[0]["question_start"] == ""


def test_question_excerpt_starts_after_the_repeated_title():
    title = "Sudden pain in my left knee?"
    question = "Sudden pain in my left knee. I run 10 km a week and it started on Monday."
    assert question_after_title(title, question) == "I run 10 km a week and it started on Monday."
    # a first sentence that says more than the title stays whole
    longer = "Sudden pain in my left knee when I climb stairs. Since Monday."
    assert question_after_title(title, longer) == longer
    assert question_after_title("", question) == question
    # a title of two sentences
    assert question_after_title("Knee pain. Help!", "Knee pain! Help. It is swollen.") == (
        "It is swollen."
    )


def test_real_questiondoctors_boxes_never_repeat_the_title(consult_index):
    records = list(load([QUESTION_DOCTOR], format="lasseregin"))
    repeats = [r for r in records if question_after_title(r.title, r.question) == ""]
    assert len(repeats) > 100  # the corpus' question text is often its title again
    out = render([hit(r) for r in repeats[:20]])
    for entry, record in zip(parse_similar_section(out), repeats[:20], strict=True):
        assert entry["title"] == record.title and entry["question_start"] == ""


# --- safe output ---------------------------------------------------------------------------


def test_only_http_urls_become_links():
    assert safe_url("https://questiondoctors.com/a/") == "https://questiondoctors.com/a/"
    for bad in (
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "vbscript:x",
        "//evil.example/x",
        "http:alert(1)",
        "file:///etc/passwd",
    ):
        assert safe_url(bad) == "", bad
    evil = Consultation(id="x", title="Click me", question="q?", url="javascript:alert(1)")
    good = Consultation(id="y", title="Fine", question="q2?", url="https://a.example/p?q=1&r=2")
    html = render([hit(evil), hit(good)], "html")
    assert "javascript" not in html.lower()
    assert '<a href="https://a.example/p?q=1&amp;r=2">Fine</a>' in html
    md = render([hit(evil), hit(good)], "markdown")
    assert "javascript" not in md.lower() and "### Click me" in md
    assert "### [Fine](https://a.example/p?q=1&r=2)" in md


def test_markdown_link_cannot_be_broken_out_of():
    record = Consultation(
        id="x", title="T", question="q?", url="https://a.example/x) [pwn](https://evil.example"
    )
    md = render([hit(record)], "markdown")
    link = re.search(r"### \[T\]\((\S+)\)\n", md)
    assert link and "(" not in link.group(1) and ")" not in link.group(1)
    assert "[pwn](" not in md


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_control_characters_never_reach_the_output(fmt):
    record = Consultation(
        id="x\x1b[2J",
        title="Leg \x1b[31mpain\x1b[0m\x07",
        question="Why\x00 \u202eesrever\u202c?",
        doctor="Lee\x9b1m",
        department="Neuro\x08logy",
        reply="Rest.\r\x1b]0;owned\x07",
    )
    out = render([hit(record)], fmt, related=[Topic("Leg\x1b[1m", "Neuro\x7flogy")])
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", out)
    assert "pain" in out and "Neurology" in out
