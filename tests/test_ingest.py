"""Ingest over the real shared data (small slices) and hand-made malformed files."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

import simqa.ingest as ingest
from simqa.errors import BadRecord, SimqaError
from simqa.ingest import IngestReport, parse_page, parse_similar_section, write_csv, write_jsonl
from simqa.records import Consultation, Reply
from tests.helpers import DATA, SEED

MEDQUAD = DATA / "medquad"
LASSE = DATA / "lasseregin_medical_qa"
COVID = DATA / "covid_dialogue_en" / "COVID-Dialogue-Dataset-English.txt"

SEED_QUESTION = (
    "Hello, doctor: I have been experiencing involuntary leg movements while sleeping for the "
    "past week.\nSometimes, it even affects my ability to fall asleep and causes feelings of "
    "tension and spasms.\nWhat could be the reason for this? Thank you! (It's really painful.)"
)
SEED_REPLY = (
    "Your issue requires further examination before a definitive answer can be provided.\n"
    "It is recommended that you consult a neurologist for additional testing and evaluation."
)

SECOND_PAGE = """\
Sudden knee pain when climbing stairs (Related FAQ?)
Hello doctor, my right knee hurts when I climb stairs.
It started two weeks ago after running.
b b, 40~49 year old male. Ask Date: 2014/05/01
Dr. Wang Ming reply Orthopedics
Rest the knee and apply ice.
Reply Date: 2014/05/03
More Info
Knee pain on stairs often comes from the kneecap.
Related FAQ
Knee(Orthopedics)
Running(Rehabilitation)"""

THIRD_PAGE = """\
Persistent dry cough at night
I have had a dry cough for a month, worse at night.
c, 20~29 year old female. Ask Date: 2015/01/09
Dr. Lin Hua reply Pulmonology
Please get a chest X-ray.
Reply Date: 2015/01/10
More Info
Chronic cough has many causes."""


def load_all(*paths: Path | str, **kwargs) -> tuple[list[Consultation], IngestReport]:
    report = IngestReport()
    records = list(ingest.load(list(paths), report=report, **kwargs))
    return records, report


# --- consultation pages -------------------------------------------------------------------


def test_seed_page_parses_to_its_fields() -> None:
    record = parse_page(SEED.read_text(encoding="utf-8"), name=SEED.name)
    assert record.id == "6d9dcf339530815c"
    assert record.title == "Experiencing involuntary leg movements during sleep?"
    assert record.question == SEED_QUESTION
    assert (record.asker_sex, record.asker_age) == ("female", "30~39")
    assert record.ask_date == "2013/02/10"
    assert (record.doctor, record.department) == ("Ding Xianwei", "Neurosurgery")
    assert record.reply == SEED_REPLY  # the doctor's reply only, not More Info
    assert record.reply_date == "2013/02/10"
    assert record.tags == [  # the Related FAQ lines, departments kept ("(Neurology)" alone is none)
        "Leg(Neurology)", "Sleep(Neurology)", "Cramps(Neurosurgery)", "Leg Numbness(Neurology)",
        "Body Shaking(Neurology)", "Foot Numbness(Neurosurgery)", "Tremors(Neurology)",
        "Eyelid Muscle Twitching(Neurology)", "Feet(Neurosurgery)"]
    assert record.source == "page" and record.url == "" and record.other_replies == []


def test_seed_page_loads_with_the_id_from_its_file_name() -> None:
    records, report = load_all(SEED.parent)
    assert [r.id for r in records] == ["6d9dcf339530815c"]
    assert report.summary() == "loaded 1 record from 1 file"


def test_page_id_without_a_file_name_is_a_stable_hash_of_title_and_question() -> None:
    text = SEED.read_text(encoding="utf-8")
    first, again = parse_page(text), parse_page(text + "\n")
    assert first.id == again.id and first.id.startswith("page-") and len(first.id) == 21
    assert parse_page(text.replace("past week", "past month")).id != first.id


def test_similar_section_of_the_seed() -> None:
    entries = parse_similar_section(SEED.read_text(encoding="utf-8"))
    assert [(e["doctor"], e["department"]) for e in entries] == [
        ("Ye Boshou", "Neurology"), ("Li Zhengfeng", "Psychiatry"),
        ("Huang Jianling", "Family Medicine"), ("Jiang Junyi", "Neurology")]
    first = entries[0]
    assert first["title"] == (
        "Understanding Involuntary Leg Jerks: Causes and Solutions for Better Sleep")
    assert first["question_start"].startswith("Hello, doctor! I have been troubled by a symptom")
    assert first["question_start"].endswith("but it...")
    assert first["reply_start"].endswith("can help prevent this condition.")
    assert "[Read More]" not in "".join(e["reply_start"] for e in entries)
    assert entries[3]["title"] == "Understanding Sudden Body Jerks Before Sleep: What Could It Be?"


def test_several_pages_in_one_file(tmp_path: Path) -> None:
    # seed then a page straight after its Related FAQ (no separator; the title even
    # contains parentheses), then a page after a blank line with no Similar/FAQ sections
    seed = SEED.read_text(encoding="utf-8")
    path = tmp_path / "000_6d9dcf339530815c.txt"  # a hex name gives no id to a multi-page file
    path.write_text(f"{seed}\n{SECOND_PAGE}\n\n{THIRD_PAGE}\n", encoding="utf-8")
    records, report = load_all(path)
    assert report.problems == []
    assert [r.title for r in records] == [
        "Experiencing involuntary leg movements during sleep?",
        "Sudden knee pain when climbing stairs (Related FAQ?)",
        "Persistent dry cough at night"]
    seed_record, knee, cough = records
    assert seed_record.question == SEED_QUESTION and seed_record.tags[-1] == "Feet(Neurosurgery)"
    assert knee.question.endswith("after running.") and knee.reply == "Rest the knee and apply ice."
    assert (knee.doctor, knee.department, knee.asker_sex, knee.asker_age) == (
        "Wang Ming", "Orthopedics", "male", "40~49")
    assert knee.tags == ["Knee(Orthopedics)", "Running(Rehabilitation)"]
    assert cough.reply == "Please get a chest X-ray." and cough.tags == []
    assert all(r.id.startswith("page-") for r in records)
    assert len({r.id for r in records}) == 3


def test_page_whose_start_cannot_be_found_is_reported(tmp_path: Path) -> None:
    # the third page follows More Info text directly: no section end, no blank line
    path = tmp_path / "pages.txt"
    path.write_text(f"{SECOND_PAGE}\n\n{THIRD_PAGE}\n{THIRD_PAGE.replace('dry', 'wet')}\n",
                    encoding="utf-8")
    records, report = load_all(path)
    assert [r.title for r in records] == ["Sudden knee pain when climbing stairs (Related FAQ?)",
                                          "Persistent dry cough at night"]
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert problem.line == 24 and "cannot tell where this page starts" in problem.message
    with pytest.raises(BadRecord, match=r"pages\.txt, line 24"):
        load_all(path, strict=True)


# --- JSONL and CSV --------------------------------------------------------------------------


def sample_records() -> list[Consultation]:
    seed = parse_page(SEED.read_text(encoding="utf-8"), name=SEED.name)
    seed.tags.append("Leg, numbness")  # a comma inside a tag must survive CSV
    other = Consultation(
        id="qd-1", question="Is my test conclusive?\nPlease answer.", title="HIV test",
        reply="Yes.", doctor="Ayman Darrag", tags=["hiv test"], url="https://example.org/q",
        source="questiondoctors",
        other_replies=[Reply(text="You are fine.", doctor="Honey"), Reply(text="Relax.")])
    return [seed, other]


@pytest.mark.parametrize(
    "writer, name", [(write_jsonl, "records.jsonl"), (write_csv, "records.csv")])
def test_tabular_round_trip(tmp_path: Path, writer, name: str) -> None:
    originals = sample_records()
    path = tmp_path / name
    assert writer(originals, path) == 2
    records, report = load_all(path)
    assert report.problems == [] and report.loaded == 2
    assert [r.to_dict() for r in records] == [r.to_dict() for r in originals]


def test_jsonl_malformed_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps({"id": "a", "question": "Why do I cough?", "extra": 1}),
        "{not json",
        json.dumps({"question": "no id here"}),
        json.dumps({"id": "c", "reply": "neither title nor question"}),
        "",
        json.dumps(["a", "list"]),
        json.dumps({"id": "d", "title": "Title only"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, report = load_all(path)
    assert [r.id for r in records] == ["a", "d"]
    assert [p.line for p in report.problems] == [2, 3, 4, 6]
    assert "invalid JSON" in report.problems[0].message
    assert "no id" in report.problems[1].message
    assert "neither a title nor a question" in report.problems[2].message
    assert report.summary() == "loaded 2 records from 1 file; skipped 4 malformed (see above)"
    with pytest.raises(BadRecord, match=r"bad\.jsonl, line 2: invalid JSON"):
        load_all(path, strict=True)


def test_csv_malformed_rows_and_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        'id,title,question,tags\n'
        'a,Cough,"Why do I cough\nat night?",cough;night\n'
        'b,Too,many,cells,here\n'
        ',No id,question text,\n'
        'c,Fever,,\n',
        encoding="utf-8")
    records, report = load_all(path)
    assert [(r.id, r.tags) for r in records] == [("a", ["cough", "night"]), ("c", [])]
    assert records[0].question == "Why do I cough\nat night?"
    assert [(p.line, p.message) for p in report.problems] == [
        (4, "row has 5 cells, header has 4"), (5, "record has no id")]

    headless = tmp_path / "headless.csv"
    headless.write_text("name,text\nx,y\n", encoding="utf-8")
    with pytest.raises(SimqaError, match="cannot tell the format"):
        load_all(headless)
    records, report = load_all(headless, format="csv")
    assert records == [] and "no 'id'" in report.problems[0].message


# --- MedQuAD --------------------------------------------------------------------------------


def test_medquad_subfolder_with_answers() -> None:
    records, report = load_all(MEDQUAD / "9_CDC_QA")
    assert report.loaded == 270 and len(report.counts) == 59 and report.problems == []
    assert all(r.reply and r.source == "medquad" and r.department == "CDC" for r in records)
    taeniasis = next(r for r in records if r.id == "CDC-0000397-1")  # the <DiseaseFile> layout
    assert taeniasis.title == "Parasites - Taeniasis"
    assert taeniasis.question == "What is (are) Parasites - Taeniasis?"
    assert taeniasis.tags == ["Parasites - Taeniasis", "information"]
    assert taeniasis.url == "http://www.cdc.gov/parasites/taeniasis/"


def test_medquad_answerless_records_are_loaded() -> None:
    records, _ = load_all(MEDQUAD / "10_MPlus_ADAM_QA" / "0000001.xml")
    assert records and all(r.reply == "" for r in records)
    first = records[0]
    assert (first.id, first.department, first.title) == (
        "ADAM-0000001-1", "ADAM", "A guide to clinical trials for cancer")
    assert first.question == "What is (are) A guide to clinical trials for cancer?"


def test_medquad_ids_are_unique_where_qids_repeat() -> None:
    # split CancerGov documents reuse their parent's qids; the old NINDS <doc> layout loads too
    cancer = MEDQUAD / "1_CancerGov_QA"
    records, report = load_all(cancer / "0000013_2.xml", cancer / "0000013_2_1.xml",
                               MEDQUAD / "6_NINDS_QA" / "0000007.xml")
    assert report.problems == []
    assert len({r.id for r in records}) == len(records)
    assert {"CancerGov-0000013_2-1", "CancerGov-0000013_2_1-1"} <= {r.id for r in records}
    ninds = [r for r in records if r.department == "NINDS"]
    assert len(ninds) == 4 and ninds[0].title == "Holmes-Adie" and ninds[0].reply


# --- LasseRegin -----------------------------------------------------------------------------


def test_questiondoctors_merges_replies_per_question() -> None:
    records, report = load_all(LASSE / "questionDoctorQAs.json")
    assert report.loaded == 1890 and report.problems == []
    assert sum(1 + len(r.other_replies) for r in records) == 5679
    hiv = records[0]
    assert hiv.id == "questiondoctors-is-my-anti-hiv-test-conclusive-or-need-retest"
    assert hiv.title == "Is my anti hiv test conclusive or need retest?"
    assert (hiv.doctor, [r.doctor for r in hiv.other_replies]) == (
        "Ayman Darrag", ["Ahmed Fawzy", "Honey"])
    assert hiv.source == "questiondoctors" and hiv.tags == ["hiv test"]
    # 443 of the file's question texts start with a scraped "Question:" label; none is kept
    raw = json.loads((LASSE / "questionDoctorQAs.json").read_text(encoding="utf-8"))
    labelled = {r["url"] for r in raw if (r.get("question_text") or "").startswith("Question:")}
    kept = [r for r in records if r.url in labelled]
    assert kept and not any(r.question.lower().startswith("question:") for r in records)


def test_lasseregin_directory() -> None:
    records, report = load_all(LASSE)
    assert report.summary() == "loaded 2,526 records from 3 files; ignored 3 other files"
    assert Counter(r.source for r in records) == {
        "questiondoctors": 1890, "icliniq": 465, "ehealthforum": 171}
    icliniq = next(r for r in records if r.id == "icliniq-is-it-fine-to-exercise-with-knee-pain")
    assert icliniq.question.startswith("Hi doctor,\nI am a 24 year old female.")
    assert "\t" not in icliniq.question and "\r" not in icliniq.question
    assert (icliniq.asker_age, icliniq.asker_sex) == ("24", "female")
    assert not any("<link>" in r.reply for r in records)


# --- COVID dialogues ------------------------------------------------------------------------


def test_covid_blocks() -> None:
    # the README says 603 consultations; the file has 604 blocks because id=18 is used for
    # two different ones: both load, the second as covid-18-2, with a warning
    records, report = load_all(COVID)
    assert report.loaded == 604 and report.skipped == 0 and report.warnings == 1
    assert "id=18 used again" in report.problems[0].message
    by_id = {r.id: r for r in records}
    assert by_id["covid-18"].title != by_id["covid-18-2"].title
    assert Counter(r.source for r in records) == {
        "healthtap": 455, "healthcaremagic": 145, "icliniq": 4}
    first = by_id["covid-1"]
    assert first.title == "I have cough with no travel history. Is this a symptom of Covid-19?"
    assert first.question.startswith("Hello doctor, I get a cough for the last few days")
    assert first.reply.startswith("Hello, I understand your concern. I just have a few more")
    assert "Patient:" not in first.reply and "\r" not in "".join(r.reply for r in records)


# --- files and errors -----------------------------------------------------------------------


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(SimqaError, match=r"nowhere\.jsonl: no such file"):
        ingest.load([tmp_path / "nowhere.jsonl"])
    notes = tmp_path / "notes.txt"
    notes.write_text("just some notes\n", encoding="utf-8")
    with pytest.raises(SimqaError, match=r"notes\.txt: cannot tell the format"):
        ingest.load([notes])
    with pytest.raises(SimqaError, match="unknown format 'xls'"):
        ingest.load([notes], format="xls")


def test_non_utf8_files(tmp_path: Path) -> None:
    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes(b'{"id": "a", "question": "ok"}\n{"id": "b", "question": "caf\xe9"}\n')
    with pytest.raises(SimqaError, match=r"latin1\.jsonl: not UTF-8 text .*line 2, byte offset 58"):
        ingest.load([jsonl])
    page = tmp_path / "page.txt"
    page.write_bytes(SEED.read_bytes().replace(b"Ding Xianwei", b"Ding Xi\xe0nwei"))
    with pytest.raises(SimqaError, match=r"page\.txt: not UTF-8 text .*line 6"):
        ingest.load([page])
    big = tmp_path / "big.jsonl"  # past the sniffed head: found while reading, lazily
    good = b"".join(b'{"id": "%d", "question": "ok"}\n' % i for i in range(3000))
    big.write_bytes(good + b'{"id": "z", "question": "\xff"}\n')
    with pytest.raises(SimqaError, match=r"line 3001"):
        list(ingest.load([big]))


def test_duplicate_ids_across_files_are_reported(tmp_path: Path) -> None:
    for name in ("one.jsonl", "two.jsonl"):
        (tmp_path / name).write_text(json.dumps({"id": "x", "question": name}) + "\n",
                                     encoding="utf-8")
    records, report = load_all(tmp_path)
    assert [r.question for r in records] == ["one.jsonl"]
    assert report.counts == {str(tmp_path / "one.jsonl"): 1, str(tmp_path / "two.jsonl"): 0}
    assert "'x' was already loaded" in report.problems[0].message


def test_problems_are_logged_without_a_report(tmp_path: Path, caplog) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "question": "fine"}\n{oops\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="simqa.ingest"):
        records = list(ingest.load([path]))
    assert len(records) == 1
    assert "bad.jsonl, line 2: invalid JSON" in caplog.text


def test_forced_format_reads_a_file_as_that_format() -> None:
    records, report = load_all(SEED, format="covid")
    assert records == [] and "no 'id=N' block" in report.problems[0].message
    assert ingest.detect_format(SEED) == "page" and ingest.detect_format(COVID) == "covid"
