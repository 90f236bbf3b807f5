"""The command line as a user runs it: real subprocesses, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import simqa
from simqa import Consultation
from simqa.encode.threshold import CALIBRATED
from tests.helpers import SEED

RECORDS = [
    Consultation(
        id="knee",
        title="Knee pain after running",
        question="My knee hurts after I run.",
        reply="Rest and ice it.",
        doctor="Ann Lee",
        department="Orthopedics",
    ),
    Consultation(
        id="cough",
        title="Dry cough",
        question="I have had a dry cough for two weeks.",
        reply="See a doctor if it lasts.",
        doctor="Bo Chen",
        department="Pulmonology",
    ),
    Consultation(
        id="sleep",
        title="Legs jerk as I fall asleep",
        question="My legs twitch and wake me when I am falling asleep.",
        reply="Likely hypnic jerks.",
        doctor="Cy Park",
        department="Neurology",
    ),
]

MODEL = "all-MiniLM-L6-v2"


def run(
    *args: str, input: str | None = None, home: Path | None = None
) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if home is not None:
        env["SIMQA_HOME"] = str(home)
    exe = shutil.which("simqa") or f"{sys.executable} -m simqa"
    return subprocess.run(
        [*exe.split(), *args],
        capture_output=True,
        text=True,
        input=input,
        env=env,
        timeout=300,
    )


def assert_short_error(result: subprocess.CompletedProcess, words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3


@pytest.fixture(scope="module")
def small_index(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "small"
    simqa.build(RECORDS, path)
    return path


def test_build_query_similar_info(tmp_path):
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("\n".join(json.dumps(r.to_dict()) for r in RECORDS) + "\n")
    built = run("build", str(jsonl), str(SEED), "--index", "mine", "--quiet", home=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "4 consultations" in built.stderr
    assert (tmp_path / "mine" / "CURRENT").exists()

    out = run(
        "query", "legs twitching when falling asleep", "--index", "mine", "-k", "2", home=tmp_path
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\nRelated FAQ\n")[0].splitlines()  # the box, then its topics
    assert lines[0] == "Similar Q&A" and len(lines) == 9
    assert "Dr. Cy Park reply Neurology" in lines or "Dr. Ding Xianwei reply Neurosurgery" in lines

    args = ("similar", "sleep", "--index", "mine", "-k", "3", "--format", "json")
    hits = json.loads(run(*args, "--min-score", "-1", home=tmp_path).stdout)["hits"]
    assert len(hits) == 3 and "sleep" not in [h["id"] for h in hits]
    assert hits[0]["id"] == "6d9dcf339530815c"  # the seed page is the closest to the sleep question
    # by default the calibrated threshold leaves out the knee and cough consultations
    default = json.loads(run(*args, home=tmp_path).stdout)["hits"]
    assert [h["id"] for h in default] == [h["id"] for h in hits if h["score"] >= CALIBRATED[MODEL]]
    assert 1 <= len(default) < 3

    page = run("similar", "--page", str(SEED), "--index", "mine", "-k", "1", home=tmp_path)
    assert page.returncode == 0 and "Legs jerk as I fall asleep" in page.stdout

    info = run("info", "--index", "mine", "--json", home=tmp_path)
    details = json.loads(info.stdout)
    assert details["records"] == 4 and details["model"] == MODEL
    assert details["min_score"] == CALIBRATED[MODEL]
    assert details["dimension"] == 384 and details["index_type"] == "flat"


def test_query_file_gives_one_json_line_per_query(small_index, tmp_path):
    queries = tmp_path / "q.txt"
    queries.write_text("knee hurts\n\ncoughing for weeks\nlegs jerk at night\n")
    out = run("query", "--file", str(queries), "--index", str(small_index), "-k", "1")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["hits"][0]["id"] for r in rows] == ["knee", "cough", "sleep"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("query", ""), "query is empty"),
        (("query", "   "), "query is empty"),
        (("query", "knee", "-k", "0"), "k must be between"),
        (("similar", "nope"), "no consultation with id 'nope'"),
        (("query", "x" * 30_000), "the limit is 20,000"),
    ],
)
def test_bad_queries_get_short_errors(small_index, args, words):
    assert_short_error(run(*args, "--index", str(small_index)), words)


def test_missing_index(tmp_path):
    assert_short_error(run("query", "knee", "--index", "absent", home=tmp_path), "no index at")


def test_missing_and_non_utf8_sources(tmp_path):
    assert_short_error(
        run("build", str(tmp_path / "none.jsonl"), "--index", "x", home=tmp_path), "none.jsonl"
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "1", "question": "caf\xe9 au lait spots"}\n')
    assert_short_error(run("build", str(bad), "--index", "x", home=tmp_path), "UTF-8")
    assert not (tmp_path / "x" / "CURRENT").exists()


def test_truncated_and_corrupted_files(small_index, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_index, copy)
    version = next(copy.glob("v*"))
    faiss_file = version / "vectors.faiss"
    data = faiss_file.read_bytes()
    faiss_file.write_bytes(data[: len(data) // 2])
    assert_short_error(run("query", "knee", "--index", str(copy)), "truncated")
    faiss_file.write_bytes(data[:100] + bytes(255 - b for b in data[100:200]) + data[200:])
    # opening and writes check sizes and headers only (a write checksums the files it
    # writes); --verify and compaction, which rewrites the base, read all checksums
    assert_short_error(run("info", "--verify", "--index", str(copy)), "checksum")
    assert_short_error(run("compact", "--index", str(copy)), "checksum")
    faiss_file.write_bytes(data)
    ids = version / "embedding_ids.npy"
    ids.write_bytes(b"garbage!" + ids.read_bytes()[8:])
    assert_short_error(run("query", "knee", "--index", str(copy)), "damaged header")
    (version / "manifest.json").write_text("{not json")
    assert_short_error(run("info", "--index", str(copy)), "not valid JSON")


def test_strict_build_stops_and_keeps_previous_index(small_index, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_index, copy)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "n1", "question": "Sore throat"}\n{"question": "no id here"}\n')
    result = run("build", str(bad), "--index", str(copy), "--append", "--strict", "--quiet")
    assert_short_error(result, "bad.jsonl")
    assert "2" in result.stderr  # the line number
    assert len(simqa.open_index(copy)) == 3
    loose = run("build", str(bad), "--index", str(copy), "--append", "--quiet")
    assert loose.returncode == 0
    assert "bad.jsonl, line 2" in loose.stderr and "skipped" in loose.stderr
    assert len(simqa.open_index(copy)) == 4
