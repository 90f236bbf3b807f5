"""simqa.box.focus: the question-focus levers for long consumer questions (issue 20)."""

import numpy as np
import pytest

from simqa.box import focus

MESSAGE = (
    "Amlodipine. I am taking Amlodipine and it has caused my pulse rate to be very high. "
    "Is there a weaning process when you stop taking Amlodipine and start atenolol? "
    "Thank you!"
)


def test_subject_line_and_meqsum_fields():
    assert focus.split_subject(MESSAGE)[0] == "Amlodipine"
    fields = "SUBJECT: gout MESSAGE: Is coffee bad?"
    assert focus.split_subject(fields) == ("gout", "Is coffee bad?")
    # a story opening is no subject; one sentence has none
    assert focus.split_subject("I have gout. Is coffee bad?")[0] is None
    assert focus.split_subject("Is coffee bad for gout?")[0] is None


def test_generic_subjects_name_nothing():
    assert focus.is_generic_subject("ClinicalTrials.gov - Question - general information")
    assert focus.is_generic_subject("medication question")
    assert focus.is_generic_subject(None)
    assert not focus.is_generic_subject("Treatment, Paralysis")


def test_sentences_keep_abbreviations_and_decimals():
    text = "Dr. Smith gave me 2.5 mg. It did not help.What now? See ClinicalTrials.gov please"
    assert focus.sentences(text) == [
        "Dr. Smith gave me 2.5 mg.",
        "It did not help.",
        "What now?",
        "See ClinicalTrials.gov please",
    ]
    assert focus.sentences("My question is... does it spread?") == [
        "My question is... does it spread?"
    ]


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("Is there a weaning process?", True),
        ("Could second hand smoke cause AMD.", True),
        ("I was wondering if I could take them myself.", True),
        ("When he first had the transplant, things were ok.", False),
        ("I take four medicines.", False),
    ],
)
def test_is_question(text, asks):
    assert focus.is_question(text) is asks


def test_pieces_mark_kinds_and_drop_fillers():
    found = focus.pieces(MESSAGE)
    assert [p.kind for p in found] == ["subject", "statement", "question"]
    assert all("Thank" not in p.text for p in found)
    # the whole text when nothing else is left
    assert focus.pieces("Thanks!")[0].text == "Thanks!"


def test_clauses_cut_long_sentences_only():
    short = "My knee hurts when I run."
    assert focus.clauses(short) == [short]
    long = (
        "I constantly have this itch in both ears and sometimes they burn a little; in the "
        "day I do not notice it as much as in the evening, and at night I feel draining"
    )
    parts = focus.clauses(long)
    assert len(parts) > 1 and all(len(p.split()) >= 5 for p in parts)


def test_focus_text():
    assert focus.focus_text(MESSAGE, "sq") == (
        "Amlodipine Is there a weaning process when you stop taking Amlodipine and start atenolol?"
    )
    assert focus.focus_text(MESSAGE, "s") == "Amlodipine"
    # no question sentence: the first sentences
    assert focus.focus_text("Gout. My toe hurts. It is red. I am 40.", "q", first=1) == (
        "My toe hurts."
    )


def test_combine_and_blend():
    scores = np.array([[0.2, 0.9], [0.6, 0.1], [0.4, 0.3]], dtype=np.float32)
    assert np.allclose(focus.combine(scores, how="max"), [0.6, 0.9])
    assert np.allclose(focus.combine(scores, how="top", top=2), [0.5, 0.6])
    w = np.array([2.0, 1.0, 1.0])
    assert np.allclose(focus.combine(scores, w, how="mean"), [0.35, 0.55])
    assert np.allclose(focus.combine(scores, w, how="wmax"), [0.3, 0.9])
    assert np.allclose(focus.blend(np.array([1.0]), np.array([0.0]), 0.25), [0.25])
    with pytest.raises(ValueError):
        focus.combine(scores, np.ones(2))


def test_rare_terms_and_bonus():
    df, n = focus.document_frequencies(
        ["amlodipine dose", "atenolol", "pain dose", "pain", "pain relief", "dose"]
    )
    rare = focus.rare_terms("Amlodipine and atenolol for pain", df, n, min_idf=1.0)
    assert set(rare) == {"amlodipine", "atenolol"}  # "pain" is common, "and" a stopword
    assert focus.lexical_bonus(rare, focus.terms("amlodipine dose")) == pytest.approx(0.5)
    assert focus.lexical_bonus({}, ["x"]) == 0.0


def test_names_from_titles():
    names = focus.name_vocabulary(
        ["Complex regional pain syndrome", "Pain", "What is gout?", "Burns", "the"]
    )
    assert names == {"complex regional pain syndrome", "pain", "burns"}
    text = "Complex Regional Pain Syndrome (CRPS). Is it genetic? I have burns and pain."
    assert focus.mentions(text, names) == ["complex regional pain syndrome", "burns", "pain"]
    # no plural folding of short words: "Falls" (the title) is not "fall" (asleep)
    assert focus.mentions("my legs fall asleep", focus.name_vocabulary(["Falls"])) == []
    assert focus.mentions("two miscarriages", focus.name_vocabulary(["Miscarriage"])) == [
        "miscarriage"
    ]
    strong = focus.strong_names(["burn", "pain"], {"burn": 1, "pain": 50}, 100, min_idf=2.0)
    assert list(strong) == ["burn"]
    assert focus.holds_name("a complex regional pain syndrome b", "regional pain")
    assert not focus.holds_name("painful", "pain")


def test_record_focus_only_for_long_consultations():
    question = "Hi doctor, " + "I have had knee pain for a week after cycling. " * 4
    assert focus.record_focus("Is it fine to exercise with knee pain?", question) == (
        "Is it fine to exercise with knee pain?"
    )
    assert focus.record_focus("Knee pain", "Knee pain after running?") is None
    # a title repeating the question's start says nothing more
    assert focus.record_focus(question[:30], question) is None
