"""Fine-tuning and reranker training: tiny real runs (a few steps on real RQE pairs), the
protocol checks that keep evaluation files out of training, and the pair formats."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import simqa
from simqa import Consultation, SimqaError
from simqa.encode.models import TRAINING_RECORD
from simqa.evaluate.compare import evaluate
from simqa.evaluate.pairs import read_pairs
from simqa.files import sha256_file
from simqa.learn.training_pairs import (
    TrainPair,
    corpus_pairs,
    read_pairs_jsonl,
    read_training,
    source_kind,
    write_pairs,
)
from simqa.learn.tune import fine_tune
from tests.helpers import DATA

#: builds its own indexes, starts servers or trains: `pytest -m "not slow"` skips it
pytestmark = pytest.mark.slow

RQE = DATA / "mediqa2019" / "MEDIQA_Task2_RQE"
RQE_TRAIN = RQE / "MEDIQA2019-Task2-RQE-TrainingSet-AMIA2016.xml"
MQP = DATA / "curai_mqp" / "mqp.csv"

RECORDS = [
    Consultation(id="knee", title="Knee pain after running", question="My knee hurts after I run."),
    Consultation(id="cough", title="Dry cough for weeks",
                 question="I have had a dry cough for two weeks and no fever."),
    Consultation(id="sleep", title="Legs jerk as I fall asleep",
                 question="My legs twitch and wake me when I am falling asleep."),
    Consultation(id="rash", title="Itchy rash on my arms",
                 question="Red itchy bumps appeared on both arms after gardening."),
]


def _query_lines(queries) -> list[str]:
    return [
        json.dumps({"query": q.text, "positives": list(q.positives),
                    "negatives": list(q.negatives)})
        for q in queries
    ]


@pytest.fixture(scope="module")
def rqe_queries():
    """Real RQE training queries whose positive differs from the query."""
    queries = read_pairs(RQE_TRAIN).queries
    return [q for q in queries if any(p != q.text for p in q.positives) and q.negatives]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, rqe_queries):
    """`simqa tune` run as a user runs it: 32 pairs, 4 steps, on an eval-format jsonl file."""
    root = tmp_path_factory.mktemp("tune")
    train = root / "train.jsonl"
    train.write_text("\n".join(_query_lines(rqe_queries[:32])) + "\n", encoding="utf-8")
    held_out = root / "held_out.jsonl"
    held_out.write_text("\n".join(_query_lines(rqe_queries[32:52])) + "\n", encoding="utf-8")
    validation = root / "validation.jsonl"
    validation.write_text("\n".join(_query_lines(rqe_queries[52:82])) + "\n", encoding="utf-8")
    out = root / "model"
    done = subprocess.run(
        [sys.executable, "-m", "simqa", "tune", str(train), "--out", str(out),
         "--batch-size", "8", "--max-length", "32", "--seed", "1",
         "--calibrate-on", str(validation)],
        capture_output=True, text=True, timeout=900, env={**os.environ},
    )
    assert done.returncode == 0, done.stderr
    return {"train": train, "held_out": held_out, "out": out, "stdout": done.stdout}


def test_tuned_model_is_recorded_and_round_trips_through_build_and_query(tiny, tmp_path):
    record = json.loads((tiny["out"] / TRAINING_RECORD).read_text())
    assert record == json.loads(tiny["stdout"])
    assert record["seed"] == 1 and record["pairs"] == 32 and record["steps"] == 4
    assert record["files"] == {str(tiny["train"]): sha256_file(tiny["train"])}
    assert record["with_negative"] == 32  # RQE's "false" pairs are the hard negatives
    # the threshold calibrated on the validation pairs is the tuned model's default
    assert 0.0 < record["min_score"] < 1.0 and record["calibration"]["accuracy"] > 0.5

    index = simqa.build(RECORDS, tmp_path / "idx", model=str(tiny["out"]))
    assert index.info()["model"] == str(tiny["out"].resolve())
    assert index.info()["min_score"] == record["min_score"]
    hits = index.search("my knee aches when I go jogging", k=2, min_score=-1)
    assert hits[0].id == "knee"
    reopened = simqa.open_index(tmp_path / "idx")
    found = reopened.search("a cough that will not go away", k=1, min_score=-1)
    assert [h.id for h in found] == ["cough"]

    # the weights moved: the tuned model embeds differently from the base model
    from simqa.encode.encoder import load_encoder

    text = ["How should I treat polymenorrhea in a 14-year-old girl?"]
    tuned, base = load_encoder(str(tiny["out"])).encode(text), load_encoder().encode(text)
    assert not np.allclose(tuned, base, atol=1e-4)
    assert 0.8 < float((tuned @ base.T)[0, 0]) < 1.0  # a few steps at a small rate: still close


def test_eval_refuses_a_model_trained_on_the_evaluated_file(tiny):
    model = f"dense-exact:model={tiny['out']}"
    with pytest.raises(SimqaError, match="trained on that file"):
        evaluate(tiny["train"], methods=[model])
    rows = evaluate(tiny["held_out"], methods=[model])
    assert rows[0]["queries"] == 20 and 0.0 <= rows[0]["recall@1"] <= 1.0


def test_tune_refuses_evaluation_files(tmp_path):
    with pytest.raises(SimqaError, match="evaluation set"):
        fine_tune([MQP], tmp_path / "m")
    pairs = tmp_path / "pairs.jsonl"
    write_pairs([TrainPair("a b c", "d e f"), TrainPair("g h i", "j k l")], pairs)
    copy = tmp_path / "copy.jsonl"
    shutil.copy(pairs, copy)
    with pytest.raises(SimqaError, match="evaluation file"):
        fine_tune([pairs], tmp_path / "m", evaluating=[copy])
    assert not (tmp_path / "m").exists()

    done = subprocess.run(
        [sys.executable, "-m", "simqa", "tune", str(MQP), "--out", str(tmp_path / "m")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1
    assert "refusing to train on" in done.stderr and "Traceback" not in done.stderr


def test_training_pair_sources(tmp_path):
    pairs = corpus_pairs([
        *RECORDS,
        Consultation(id="same", title="My knee hurts", question="My knee hurts after I run."),
        Consultation(id="topic", title="Diabetes", question="What is diabetes?"),
        Consultation(id="only", title="", question="Just a question with no title?"),
    ])
    assert [p.anchor for p in pairs] == [r.title for r in RECORDS]
    assert all(p.negative is None for p in pairs)

    path = tmp_path / "pairs.jsonl"
    written = [TrainPair("a", "b"), TrainPair("c  d", "e", "f")]
    assert write_pairs(written, path) == 2
    assert source_kind(path) == "train"
    assert read_pairs_jsonl(path) == [TrainPair("a", "b"), TrainPair("c d", "e", "f")]
    assert "negative" not in json.loads(path.read_text().splitlines()[0])

    path.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "a"}\n')
    with pytest.raises(SimqaError, match=r"pairs\.jsonl, line 2: \"positive\""):
        read_pairs_jsonl(path)

    rqe = read_training(RQE_TRAIN)
    assert source_kind(RQE_TRAIN) == "pairs" and len(rqe) > 3000
    assert all(p.anchor != p.positive for p in rqe)
    assert sum(p.negative is not None for p in rqe) > 2500


def test_reranker_learns_to_put_the_paraphrase_first(tmp_path, rqe_queries):
    """A reranker trained briefly from the packaged MiniLM weights must prefer each held-out
    query's reformulation over unrelated questions far more often than chance."""
    from simqa.learn.rerank import Reranker, train_reranker

    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(_query_lines(rqe_queries[100:196])) + "\n", encoding="utf-8")
    out = tmp_path / "reranker"
    record = train_reranker([train], out, batch_size=16, max_length=96, epochs=1,
                            learning_rate=1e-4, mine=False, seed=0)
    assert record["kind"] == "cross-encoder" and record["files"] == {
        str(train): sha256_file(train)}
    reranker = Reranker(out)
    held_out = rqe_queries[:24]
    others = [q.positives[0] for q in rqe_queries[300:303]]
    first = 0
    for query in held_out:
        right = next(p for p in query.positives if p != query.text)
        order, scores = reranker.rerank(query.text, [*others, right])
        assert list(scores) == sorted(scores, reverse=True)
        first += int(order[0] == len(others))
    # chance is 1 in 4 (6 of 24)
    print(f"reranker put the reformulation first for {first} of {len(held_out)}")
    assert first >= 18, first


def test_negatives_mined_among_an_index_questions(tmp_path):
    """With an index's questions in the pool, the templated near misses it holds become the
    hard negatives: close to the anchor, yet clearly below its own positive."""
    from simqa.encode.encoder import load_encoder
    from simqa.learn.training_pairs import index_questions, mine_negatives

    templates = [
        "What are the symptoms of {}?", "What is the outlook for {}?", "Is {} inherited?",
        "What causes {}?", "How many people are affected by {}?", "How to diagnose {}?",
    ]
    family = [t.format(topic) for topic in ("Restless legs syndrome", "Psoriasis")
              for t in templates]
    simqa.build([Consultation(id=f"f{i}", question=q) for i, q in enumerate(family)],
                tmp_path / "faq", encoder="torch").close()
    texts, vectors = index_questions(tmp_path / "faq")
    assert texts == family  # built with the mining model: its stored vectors are reused
    assert np.allclose(vectors, load_encoder(kind="torch").encode(family), atol=1e-5)
    assert index_questions(tmp_path / "faq", model="another/model")[1] is None
    pairs = [
        TrainPair("My legs twitch and I cannot keep them still in bed, what treats this?",
                  "What are the treatments for Restless legs syndrome?"),
        TrainPair("Red scaly patches on my elbows keep coming back, how do I get rid of them?",
                  "How to treat Psoriasis?"),
    ]
    mined = mine_negatives(pairs, pool=texts, pool_vectors=vectors, seed=0)
    assert mine_negatives(pairs, pool=texts, seed=0) == mined  # same as embedding them anew
    assert all(m in family for m in mined)
    encoder = load_encoder(kind="torch")
    for pair, negative in zip(pairs, mined, strict=True):
        anchor, positive, hard = encoder.encode([pair.anchor, pair.positive, negative])
        assert float(anchor @ hard) < float(anchor @ positive) - 0.05  # the margin holds
    assert "Psoriasis" in mined[1] and "Restless" in mined[0]  # the anchor's own topic
