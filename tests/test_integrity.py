"""What must never happen: a failed build losing the old index, or a model mix-up unnoticed."""

from __future__ import annotations

import shutil

import pytest

import simqa
from simqa import Consultation
from simqa.encode.models import resolve_model
from simqa.errors import IndexCorrupt, ModelMismatch

from .test_cli import assert_short_error, run

RECORDS = [
    Consultation(id=str(i), title=t, question=t)
    for i, t in enumerate(
        ["Knee pain after running", "Dry cough for two weeks", "Itchy rash on arms"]
    )
]


def test_interrupted_build_leaves_previous_index_intact(tmp_path):
    path = tmp_path / "idx"
    simqa.build(RECORDS, path)

    def exploding():
        yield Consultation(id="new", title="Back pain", question="Lower back pain when lifting")
        raise KeyboardInterrupt

    for append in (False, True):
        with pytest.raises(KeyboardInterrupt):
            simqa.build(exploding(), path, append=append)
        index = simqa.open_index(path)
        assert len(index) == 3 and index.search("rash", k=1)[0].id == "2"
        assert not list(path.glob(".staging-*"))


@pytest.fixture(scope="module")
def other_models(tmp_path_factory):
    """A copy of the packaged model under another name, and a 64-dimensional variant."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense

    base = tmp_path_factory.mktemp("models")
    packaged = resolve_model(None)[1]
    same_dim = base / "copy"
    shutil.copytree(packaged, same_dim)
    model = SentenceTransformer(packaged, device="cpu")
    model.append(Dense(384, 64))
    small = base / "small"
    model.save(str(small))
    return same_dim, small


def test_index_from_another_model_is_refused(tmp_path, other_models):
    same_dim, _ = other_models
    path = tmp_path / "idx"
    simqa.build(RECORDS, path, model=str(same_dim))
    assert simqa.open_index(path).manifest.model == str(same_dim.resolve())
    with pytest.raises(ModelMismatch, match="built with model"):
        simqa.open_index(path, model="all-MiniLM-L6-v2")
    with pytest.raises(ModelMismatch, match="built with model"):
        simqa.build(RECORDS, path, append=True, model="all-MiniLM-L6-v2")


@pytest.mark.slow
def test_model_that_changed_dimension_is_refused(tmp_path, other_models):
    _, small = other_models
    moved = tmp_path / "model"
    shutil.copytree(resolve_model(None)[1], moved)
    path = tmp_path / "idx"
    simqa.build(RECORDS, path, model=str(moved))
    shutil.rmtree(moved)
    shutil.copytree(small, moved)
    result = run("query", "knee", "--index", str(path))  # a new process loads the changed model
    assert_short_error(result, "gives 64-dimensional vectors")


def test_missing_version_folder_is_reported(tmp_path):
    path = tmp_path / "idx"
    simqa.build(RECORDS, path)
    shutil.rmtree(next(path.glob("v*")))
    with pytest.raises(IndexCorrupt, match="missing version"):
        simqa.open_index(path)


def test_index_from_another_encoder_recipe_is_refused(tmp_path):
    """An index whose vectors an older export of the int8 encoder computed is not mixed with
    this one's: queries and appends say so in one line."""
    import json

    path = tmp_path / "idx"
    index = simqa.build(RECORDS, path)
    assert index.manifest.encoder_recipe == index.encoder.recipe
    manifest = index.dir / "manifest.json"
    data = json.loads(manifest.read_text())
    data["encoder_recipe"] = "onnx-1-an-older-recipe"
    manifest.write_text(json.dumps(data))
    assert_short_error(run("query", "knee", "--index", str(path)), "rebuild the index")
    with pytest.raises(ModelMismatch, match="onnx-1-an-older-recipe"):
        simqa.build([Consultation(id="n", question="Sore throat")], path, append=True)
