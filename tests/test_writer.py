"""A server's writes: queued ones published together, many ids deleted in one request.

The writer's own child process (spawned, model loaded there) writes a real index on disk.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

import simqa
from simqa import Consultation
from simqa.errors import SimqaError
from simqa.serve.writer import Writer

from .conftest import QUESTION_DOCTOR

#: builds its own indexes, starts servers or trains: `pytest -m "not slow"` skips it
pytestmark = pytest.mark.slow

TOKEN = "test-write-token-0123456789"


@pytest.fixture(scope="module")
def real() -> list[Consultation]:
    from simqa.ingest import load

    return list(load([QUESTION_DOCTOR]))[:40]


def test_queued_writes_are_published_as_one_version(tmp_path, real):
    path = tmp_path / "idx"
    simqa.build(real[:20], path)
    fresh = [Consultation(id=f"n{i}", title=r.title, question=r.question)
             for i, r in enumerate(real[20:30])]  # fmt: skip

    async def writes() -> tuple:
        writer = Writer(path)
        try:
            first = await writer.add([fresh[0]])  # alone: nothing queued behind it yet
            together = await asyncio.gather(
                writer.add([fresh[1], fresh[2]]),
                writer.delete([real[0].id]),
                writer.delete_many([real[1].id, "no-such-id", fresh[1].id]),
                writer.add([replace(fresh[2], reply="the last word")]),
            )
            # one write of a batch refused (it would delete everything): only it fails
            everyone = [r.id for r in simqa.open_index(path).records()] + [fresh[3].id]
            refused = await asyncio.gather(
                writer.add([fresh[3]]), writer.delete_many(everyone), return_exceptions=True
            )
            return first, together, refused, list(writer.batches)
        finally:
            writer.close()

    first, together, refused, batches = asyncio.run(writes())
    assert batches == [1, 4, 2]  # the refused batch was retried in the child, write by write
    assert first["added"] == 1
    added, deleted, many, updated = together
    assert added["added"] == 2 and deleted == 1 and updated["updated"] == 1
    assert many["deleted"] == 2 and many["missing"] == ["no-such-id"]
    assert refused[0]["added"] == 1
    # one version for the first add, one for the batch of four, one for the add retried alone
    versions = [first["version"], *(r["version"] for r in (added, many, updated)),
                refused[0]["version"]]  # fmt: skip
    assert versions[1] == versions[2] == versions[3]
    assert len(set(versions)) == 3 and sorted(set(versions)) == [versions[0], versions[1],
                                                                 versions[4]]  # fmt: skip
    assert isinstance(refused[1], SimqaError) and "every consultation" in str(refused[1])
    index = simqa.open_index(path)
    assert {r.id for r in index.records()} == (
        {r.id for r in real[2:20]} | {"n0", "n2", "n3"}
    )
    assert index.get("n2").reply == "the last word"


def test_many_ids_deleted_in_one_request(tmp_path, real):
    from fastapi.testclient import TestClient

    from simqa.serve.app import create_app

    path = tmp_path / "served"
    simqa.build(real, path)  # 40: two deletes stay under the share that calls for compaction
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(path, TOKEN)) as client:
        gone = [real[0].id, real[1].id, "no-such-id"]
        answer = client.post("/v1/consultations/delete", json={"ids": gone}, headers=auth)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"deleted": 2, "missing": ["no-such-id"]}
        for record_id in gone:
            assert client.get(f"/v1/consultations/{record_id}").status_code == 404
        assert client.get(f"/v1/consultations/{real[2].id}").status_code == 200
        assert client.post("/v1/consultations/delete", json={"ids": gone}).status_code == 401
        for body in ({"ids": []}, {"ids": [3]}, ["a"], {"id": "a"}):
            bad = client.post("/v1/consultations/delete", json=body, headers=auth)
            assert bad.status_code == 400 and "error" in bad.json()
    index = simqa.open_index(path)
    assert len(index) == 38 and index.dir.name == "v000002"  # one version for the request
