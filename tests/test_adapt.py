"""simqa adapt: a real fine-tuning run on a small real index, re-embedded and published."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import simqa
from simqa.errors import SimqaError
from simqa.learn.adapt import adapt, packaged_pairs
from simqa.records import Consultation
from tests.helpers import DATA, QUESTION_DOCTOR

#: builds its own indexes, starts servers or trains: `pytest -m "not slow"` skips it
pytestmark = pytest.mark.slow

SEED = 3
PAIRS = 64  # two steps of 32: the first is warm-up (learning rate 0)
RATE = 5e-4  # a large step, so that two steps visibly move the vectors


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """150 QuestionDoctors consultations, adapted once (a twin copy is kept un-adapted)."""
    from simqa.ingest import load

    records = list(load([QUESTION_DOCTOR]))[:150]
    root = tmp_path_factory.mktemp("adapt") / "small"
    simqa.build(records, root, hub_penalty=0).close()
    twin = root.parent / "twin"
    shutil.copytree(root, twin)
    record = adapt(root, seed=SEED, max_pairs=PAIRS, learning_rate=RATE)
    return root, record, twin


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "simqa", *args], capture_output=True, text=True, timeout=600
    )


def test_adapt_publishes_a_version_embedded_with_the_adapted_encoder(adapted):
    root, record, _twin = adapted
    idx = simqa.open_index(root)
    assert idx.manifest.model == record["model"]
    assert record["model"].startswith("models/") and idx.dir.name == record["version"]
    model_dir = root / record["model"]
    assert (model_dir / "onnx" / "model.int8.onnx").is_file()
    assert not (model_dir / "onnx" / "model.onnx").exists()  # the float export is not kept
    assert idx.encoder.dir == model_dir / "onnx"  # the export inside the index, not a cache
    training = json.loads((model_dir / "simqa_training.json").read_text())
    assert training["seed"] == SEED and training["pairs"] == PAIRS
    assert training["files"] == {"simqa/data/rqe_amia2016_train.jsonl.gz": packaged_pairs()[1]}
    assert training["date"] and training["verifier"]["slope"] > 0
    # "nothing similar" sits well below "the same question"
    assert idx.manifest.min_score == training["min_score"] < training["verifier"]["threshold"]
    # every stored vector is the adapted encoder's, not the packaged model's
    vids, stored = idx.embeddings()
    texts = [r.embedding_text(idx.manifest.embed_fields) for _vid, r in idx.records_by_vid()]
    sample = list(range(0, len(texts), 30))
    fresh = idx.encoder.encode([texts[i] for i in sample])
    assert np.allclose(np.sum(fresh * stored[sample], axis=1), 1.0, atol=2e-3)
    from simqa.encode.encoder import shared_encoder

    packaged = shared_encoder(None).encode([texts[i] for i in sample])
    assert np.min(np.sum(packaged * stored[sample], axis=1)) < 0.995
    assert len(vids) == 150 and len(idx) == 150


def test_an_append_embeds_with_the_adapted_encoder(adapted, tmp_path):
    root, record, _twin = adapted
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    idx = simqa.open_index(copy)
    text = "My knee clicks and hurts when I climb stairs after running. What could it be?"
    idx.add([Consultation(id="new-knee", question=text, title="Knee clicks on stairs")])
    assert idx.manifest.model == record["model"]
    vid = next(v for v, r in idx.records_by_vid() if r.id == "new-knee")
    ids, stored = idx.embeddings()
    vector = stored[int(np.searchsorted(ids, vid))]
    expected = idx.encoder.encode([idx.get("new-knee").embedding_text(idx.manifest.embed_fields)])
    assert float(vector @ expected[0]) > 0.999
    assert idx.search(text, k=1)[0].id == "new-knee"


def test_an_adapted_index_moves_as_one_folder(adapted, tmp_path):
    root, record, _twin = adapted
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    shutil.rmtree(moved / record["model"] / "onnx")  # the copy must not reach the original
    (moved / record["model"] / "model.safetensors").rename(moved / "weights.away")
    with pytest.raises(SimqaError):
        simqa.open_index(moved).search("knee pain", k=1)
    (moved / "weights.away").rename(moved / record["model"] / "model.safetensors")
    shutil.copytree(root / record["model"] / "onnx", moved / record["model"] / "onnx")
    idx = simqa.open_index(moved)
    assert idx.encoder.dir == moved / record["model"] / "onnx"
    assert len(idx.search("knee pain", k=3, min_score=-1)) == 3


def test_the_same_seed_gives_the_same_model(adapted):
    _root, record, twin = adapted
    again = adapt(twin, seed=SEED, max_pairs=PAIRS, learning_rate=RATE)
    assert again["model"] == record["model"]
    assert again["verifier"] == record["verifier"] and again["min_score"] == record["min_score"]


def test_info_says_which_model_trained_on_what_and_when(adapted):
    root, record, _twin = adapted
    out = cli("info", "--index", str(root), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["model"] == record["model"]
    card = info["adapted"]
    assert card["from"] == "all-MiniLM-L6-v2" and card["seed"] == SEED
    assert "rqe_amia2016_train" in card["trained_on"] and card["when"] == record["date"]


def test_the_box_flags_or_drops_hits_the_verifier_judges_different(adapted):
    root, record, _twin = adapted
    query = "my legs jerk when I am falling asleep"
    base = ["query", query, "--index", str(root), "-k", "5", "--format", "json", "--min-score",
            "-1"]  # fmt: skip
    flagged = json.loads(cli(*base).stdout)["hits"]
    slope, intercept = record["verifier"]["slope"], record["verifier"]["intercept"]
    for hit in flagged:
        p = 1 / (1 + np.exp(-(slope * hit["score"] + intercept)))
        assert hit["same_question_probability"] == pytest.approx(p, abs=1e-3)
        assert hit["same_question"] == (p >= 0.5)
    dropped = json.loads(cli(*base, "--verify", "drop").stdout)["hits"]
    assert [h["id"] for h in dropped] == [h["id"] for h in flagged if h["same_question"]]
    off = json.loads(cli(*base, "--verify", "off").stdout)["hits"]
    assert [h["id"] for h in off] == [h["id"] for h in flagged]
    assert all("same_question" not in h for h in off)
    bad = cli(*base, "--verify", "maybe")
    assert bad.returncode == 1 and bad.stderr.startswith("simqa: error: --verify must be")


def test_adapt_refuses_bad_input_in_one_line(adapted, tmp_path):
    root, _record, _twin = adapted
    missing = cli("adapt", "--index", str(tmp_path / "nothing"))
    assert missing.returncode == 1 and "simqa: error: no index at" in missing.stderr
    evaluation = DATA / "curai_mqp" / "mqp.csv"
    refused = cli("adapt", "--index", str(root), "--pairs", str(evaluation))
    assert refused.returncode == 1 and "it is an evaluation set" in refused.stderr
    assert len(refused.stderr.strip().splitlines()[-1]) < 300
    few = cli("adapt", "--index", str(root), "--max-pairs", "1")
    assert few.returncode == 1 and "max pairs must be at least 2" in few.stderr
