"""One box, whatever the door: the CLI's ``--format json``, the HTTP API and ``similar --all``
give the same hits and the same Related FAQ for the same consultation or question."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

import simqa
from simqa.cli.app import app
from tests.helpers import MEQSUM, Server

K = 4
SAMPLE = 50


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def _same(a: dict, b: dict) -> None:
    """Equal boxes: the same hits in the same order with the same scores (to the 4 decimals
    the JSON keeps; a batch and a single search may differ in the last float bit), the same
    fields, and the same Related FAQ."""
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    assert [h["id"] for h in a["hits"]] == [h["id"] for h in b["hits"]]
    for x, y in zip(a["hits"], b["hits"], strict=True):
        assert abs(x.pop("score") - y.pop("score")) <= 2e-4
        assert abs(x.pop("rank_score") - y.pop("rank_score")) <= 2e-4
        x.pop("same_question_probability", None), y.pop("same_question_probability", None)
        assert x == y
    assert a["related_faq"] == b["related_faq"]


@pytest.fixture(scope="module")
def server(consult_index, tmp_path_factory) -> Iterator[Server]:
    running = Server(consult_index.root, tmp_path_factory.mktemp("logs") / "box.log")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def ids(consult_index) -> list[str]:
    return random.Random(7).sample(sorted(r.id for r in consult_index.records()), SAMPLE)


@pytest.fixture(scope="module")
def questions() -> list[str]:
    """Long consumer questions (MeQSum): the kind a site receives."""
    with MEQSUM.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    return [" ".join(r["chq"].split()) for r in random.Random(7).sample(rows, SAMPLE)]


@pytest.mark.slow
def test_a_consultation_gets_the_same_box_from_cli_api_and_every_box(
    consult_index, server, ids, tmp_path
):
    path = str(consult_index.root)
    out = tmp_path / "boxes.jsonl"
    _cli("similar", "--all", "--index", path, "-k", str(K), "--out", str(out))
    every = {box["id"]: box for box in map(json.loads, out.read_text().splitlines())}
    assert len(every) == len(consult_index)
    with_topics = 0
    for record_id in ids:
        cli = json.loads(_cli("similar", record_id, "--index", path, "-k", str(K), "-f", "json"))
        api = server.get(f"/v1/similar/{record_id}", params={"k": K}).json()
        assert cli["id"] == api["id"] == record_id
        _same(cli, api)
        _same(every[record_id], api)
        with_topics += bool(api["related_faq"])
        assert all("same_question" in hit for hit in api["hits"])  # the verifier's flags
    assert with_topics > SAMPLE // 2  # Related FAQ is part of every door's box


@pytest.mark.slow
def test_a_question_gets_the_same_box_from_cli_api_and_library(
    consult_index, server, questions, tmp_path
):
    path = str(consult_index.root)
    listed = tmp_path / "questions.txt"
    listed.write_text("\n".join(questions) + "\n", encoding="utf-8")
    batch = [json.loads(line) for line in _cli("query", "--file", str(listed), "--index", path,
                                               "-k", str(K)).splitlines()]  # fmt: skip
    for text, from_file in zip(questions, batch, strict=True):
        cli = json.loads(_cli("query", text, "--index", path, "-k", str(K), "-f", "json"))
        api = server.get("/v1/search", params={"q": text, "k": K}).json()
        library = simqa.Box.for_question(consult_index, text, K).to_json()
        assert cli["query"] == api["query"] == text
        for other in (api, from_file, library):
            _same(cli, other)


def test_the_html_fragment_and_the_page_show_the_related_faq(consult_index, server):
    fragment = server.get("/v1/similar/6d9dcf339530815c", params={"k": K, "format": "html"})
    page = server.get("/c/6d9dcf339530815c")
    box = simqa.Box.for_id(consult_index, "6d9dcf339530815c", K)
    assert box.related, "the seed page carries Related FAQ lines of its own"
    for text in (fragment.text, page.text):
        assert '<section class="related-faq">' in text
        assert text.count("<li>") >= len(box.related)
        for hit in box.hits:
            assert f'data-id="{hit.id}"' in text
