"""Shared fixtures: real shared corpora, the real packaged model, real indexes on disk."""

from __future__ import annotations

import os

import pytest

from simqa.cli.app import OFFLINE
from tests.helpers import QUESTION_DOCTOR, SEED

# the tests never reach the network: the library asks for local files, and this makes sure
for _name, _value in OFFLINE.items():
    os.environ.setdefault(_name, _value)


@pytest.fixture(autouse=True)
def _index_home(tmp_path_factory, monkeypatch):
    """Index names resolve under a temporary folder, never the repo's indexes/."""
    monkeypatch.setenv("SIMQA_HOME", str(tmp_path_factory.getbasetemp() / "indexes"))


@pytest.fixture(scope="session")
def consult_index(tmp_path_factory):
    """The seed page plus every QuestionDoctors consultation (1,890 real questions)."""
    import simqa

    path = tmp_path_factory.mktemp("built") / "consults"
    return simqa.build([SEED, QUESTION_DOCTOR], path)
