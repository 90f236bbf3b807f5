"""Every consultation's box at once (similar --all) and duplicate questions, on real indexes."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers.util import paraphrase_mining_embeddings

import simqa
from simqa import Consultation
from simqa.box.all_boxes import all_boxes, fragment_name
from simqa.box.duplicates import find_duplicates, similar_pairs
from simqa.box.related import NEIGHBOURS, related_faq
from simqa.ingest import load
from simqa.ingest.page import parse_page
from tests.helpers import QUESTION_DOCTOR, SEED

from .test_cli import RECORDS, assert_short_error, run


def test_all_boxes_equal_similar_of_each_id(consult_index):
    boxes = {box.id: box for box in all_boxes(consult_index, k=4)}
    records = {r.id: r for r in consult_index.records()}
    assert boxes.keys() == records.keys()
    counts = consult_index.tag_counts()
    for record_id in random.Random(10).sample(sorted(boxes), 80):
        hits = consult_index.similar(record_id, k=NEIGHBOURS)
        box = boxes[record_id]
        assert [(h.id, round(h.score, 5)) for h in box.hits] == [
            (h.id, round(h.score, 5)) for h in hits[:4]
        ]
        assert box.related == related_faq(records[record_id], hits, counts)
    seed = boxes[parse_page(SEED.read_text(), SEED.name).id]
    assert seed.related[0].label() == "Leg(Neurology)"


@pytest.fixture(scope="module")
def small_index(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("boxes") / "small"
    odd = Consultation(  # an id that is no file name; a topic it shares with the seed
        id="a/b ?", title="Knee pain when running uphill", question="My knee hurts uphill.",
        tags=["leg"],
    )  # fmt: skip
    simqa.build([*RECORDS, odd, SEED], path)
    return path


def test_similar_all_writes_one_json_line_per_consultation(small_index, tmp_path):
    out = tmp_path / "boxes.jsonl"
    done = run("similar", "--all", "--index", str(small_index), "-k", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(
        ["knee", "cough", "sleep", "a/b ?", "6d9dcf339530815c"]
    )
    by_id = {line["id"]: line for line in lines}
    assert set(by_id["sleep"]) == {"id", "hits", "related_faq"}
    assert by_id["sleep"]["hits"][0]["id"] == "6d9dcf339530815c"
    assert {"topic": "Leg", "department": "Neurology"} in by_id["sleep"]["related_faq"]
    assert all(len(line["hits"]) <= 2 for line in lines)
    # the same box as asking for that one id
    one = json.loads(
        run("similar", "sleep", "--index", str(small_index), "-k", "2", "--format", "json").stdout
    )
    assert one == by_id["sleep"]
    stdout = run("similar", "--all", "--index", str(small_index), "-k", "2")
    assert [json.loads(x) for x in stdout.stdout.splitlines()] == lines


def test_similar_all_html_writes_one_fragment_per_consultation(small_index, tmp_path):
    folder = tmp_path / "fragments"
    args = ("similar", "--all", "--index", str(small_index), "--format", "html")
    done = run(*args, "--out", str(folder))
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted(
        ["knee.html", "cough.html", "sleep.html", "a%2Fb%20%3F.html", "6d9dcf339530815c.html"]
    )
    sleep = (folder / "sleep.html").read_text()
    assert sleep.startswith('<section class="similar-qa">') and "<html" not in sleep
    assert '<span class="topic">Leg</span><span class="department">(Neurology)</span>' in sleep

    assert_short_error(run(*args), "--out DIR")
    assert_short_error(run("similar", "sleep", "--all", "--index", str(small_index)), "one of")
    assert_short_error(
        run("similar", "sleep", "--index", str(small_index), "--out", "x"), "--out goes with --all"
    )


def test_fragment_names_are_plain_files():
    assert fragment_name("GARD-0000004-1", ".html") == "GARD-0000004-1.html"
    assert fragment_name("../etc/passwd", ".html") == "%2E.%2Fetc%2Fpasswd.html"
    assert "/" not in fragment_name("a/b", ".md") and not fragment_name(".x", ".md").startswith(".")
    long = fragment_name("é" * 300, ".html")
    assert len(long) < 200 and long != fragment_name("é" * 301, ".html")


# --- duplicates ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def duplicate_index(tmp_path_factory) -> tuple[Path, list[Consultation]]:
    """300 real QuestionDoctors consultations, the seed, and two seeded duplicates."""
    records = list(load([QUESTION_DOCTOR], format="lasseregin"))[:300]
    seed = parse_page(SEED.read_text(), SEED.name)
    copy = Consultation(id="seed-again", title=seed.title, question=seed.question)
    reworded = Consultation(
        id="hiv-reworded",
        title=records[0].title.rstrip("?") + ", please?",
        question=records[0].question,
    )
    path = tmp_path_factory.mktemp("dups") / "dups"
    simqa.build([*records, SEED, copy, reworded], path)
    return path, records


def test_duplicates_finds_the_seeded_pairs(duplicate_index):
    path, records = duplicate_index
    found = find_duplicates(simqa.open_index(path), 0.95)
    pairs = {frozenset((p.a.id, p.b.id)): p.score for p in found.pairs}
    assert pairs[frozenset(("seed-again", "6d9dcf339530815c"))] > 0.99
    assert pairs[frozenset(("hiv-reworded", records[0].id))] >= 0.95
    assert [p.score for p in found.pairs] == sorted((p.score for p in found.pairs), reverse=True)
    assert all(p.score >= 0.95 for p in found.pairs)
    grouped = [{r.id for r in g.members} for g in found.groups]
    assert {"seed-again", "6d9dcf339530815c"} in grouped
    assert sum(g.pairs for g in found.groups) == len(found.pairs)


def test_pairs_match_paraphrase_mining_on_the_stored_vectors(consult_index):
    _, vectors = consult_index.embeddings()
    vectors = np.array(vectors)
    mined = paraphrase_mining_embeddings(torch.from_numpy(vectors), top_k=50)
    expected = {(i, j) for score, i, j in mined if score >= 0.8}
    assert len(expected) > 20
    i, j, s = similar_pairs(vectors, 0.8)  # exact at this size
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == expected
    assert np.allclose(s, np.einsum("ij,ij->i", vectors[i], vectors[j]), atol=1e-5)
    # the inverted-file path (used above 20k vectors) finds nearly all of them
    ii, jj, _ = similar_pairs(vectors, 0.8, exact_max=0)
    approx = set(zip(ii.tolist(), jj.tolist(), strict=True))
    assert approx <= expected and len(approx) >= 0.97 * len(expected)


def test_duplicates_command_as_text_json_and_csv(duplicate_index):
    path, _ = duplicate_index
    text = run("duplicates", "--index", str(path))
    assert text.returncode == 0, text.stderr
    assert "duplicate pairs in" in text.stdout and "seed-again" in text.stdout
    data = json.loads(run("duplicates", "--index", str(path), "--format", "json").stdout)
    assert set(data) == {"min_score", "pairs", "groups"} and data["min_score"] == 0.95
    assert {"id", "title", "question", "source", "url"} == set(data["pairs"][0]["a"])
    rows = list(
        csv.reader(io.StringIO(run("duplicates", "--index", str(path), "-f", "csv").stdout))
    )
    assert rows[0][:3] == ["score", "id_a", "id_b"] and len(rows) == len(data["pairs"]) + 1
    groups = run("duplicates", "--index", str(path), "--groups", "--min-score", "0.99")
    assert groups.stdout.splitlines()[1].startswith("group 1: ")
    assert_short_error(run("duplicates", "--index", str(path), "--min-score", "2"), "cosine")
