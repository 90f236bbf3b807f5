"""A base and its delta segments read as one index, and compaction keeps every record.

Real QuestionDoctors questions; small corpora (flat bases: exact search) so that every
answer can be checked against brute force over what should be live.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import simqa
import simqa.index.compact as compaction
import simqa.index.layout as layout
from simqa import Consultation
from simqa.errors import UnknownConsultation
from simqa.index.hits import question_key
from simqa.index.store import _TOPIC_DEPARTMENT, Filter

from .conftest import QUESTION_DOCTOR

#: builds its own indexes, starts servers or trains: `pytest -m "not slow"` skips it
pytestmark = pytest.mark.slow

FIELDS = "title+question"


@pytest.fixture(scope="module")
def pool() -> list[Consultation]:
    """500 real consultations, each given a department, a date and tags to filter by."""
    from simqa.ingest import load

    rng = random.Random(5)
    records = list(load([QUESTION_DOCTOR]))[:500]
    return [
        replace(r, department=rng.choice(["Neurology", "Skin", "Heart", "ENT"]),
                ask_date=f"{rng.randint(2010, 2019)}-{rng.randint(1, 12):02d}-10",
                tags=rng.sample(["Leg(Neurology)", "sleep", "Rash", "pain", "Ear"], 2))
        for r in records
    ]  # fmt: skip


class Expected:
    """What an index should hold: a plain dict of live records, and their vectors."""

    def __init__(self, index: simqa.Index) -> None:
        self.index = index
        self.records: dict[str, Consultation] = {}
        self._vectors: dict[str, np.ndarray] = {}

    def vector(self, record: Consultation) -> np.ndarray:
        text = record.embedding_text(FIELDS)
        if text not in self._vectors:
            self._vectors[text] = self.index.encoder.encode([text])[0]
        return self._vectors[text]

    def search(self, query: np.ndarray, k: int, exclude: str | None = None, **filters) -> list:
        """(score, id) of the best k, each question once (as a box shows them)."""
        keep = [r for r in self.records.values() if _passes(r, filters)]
        scored = sorted(((float(self.vector(r) @ query), r) for r in keep),
                        key=lambda pair: -pair[0])  # fmt: skip
        shown = {exclude} if exclude else set()
        best = []
        for score, r in scored:
            key = question_key(r, FIELDS)
            if key not in shown:
                shown.add(key)
                best.append((score, r.id))
            if len(best) == k:
                break
        return best

    def tag_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for r in self.records.values():
            counts.update({_TOPIC_DEPARTMENT.sub("", t).strip().casefold()
                           for t in r.tags if t.strip()})  # fmt: skip
        return dict(counts)


def _passes(record: Consultation, filters: dict) -> bool:
    where = Filter(**filters)
    if where.department and record.department.casefold() != where.department.casefold():
        return False
    if where.tag and where.tag.casefold() not in {
        _TOPIC_DEPARTMENT.sub("", t).strip().casefold() for t in record.tags
    }:
        return False
    return not (where.since and record.ask_date[: len(where.since)] < where.since)


def check(index: simqa.Index, expected: Expected, rng: random.Random, queries: int = 4) -> None:
    """Every id's record, the counts, tag counts, and the top hits of a few searches (with
    and without filters, by text and by id) equal the dict's."""
    live = expected.records
    assert len(index) == len(live) == len(index.snapshot.vectors)
    assert {r.id: r for r in index.records()} == live
    vids = [vid for vid, _ in index.records_by_vid()]
    ids, matrix = index.embeddings()
    assert vids == sorted(vids) == ids.tolist() and len(matrix) == len(live)
    for record_id, record in live.items():
        assert index.get(record_id) == record
    assert index.tag_counts() == expected.tag_counts()
    for _ in range(queries):
        query = expected.vector(rng.choice(list(live.values()))) + rng.gauss(0, 0.02)
        query = (query / np.linalg.norm(query)).astype(np.float32)
        filters = rng.choice([{}, {"department": "Skin"}, {"tag": "sleep"}, {"since": "2015"}])
        got = index.search_vectors(query, 5, min_score=-1, **filters)[0]
        want = expected.search(query, 5, **filters)
        assert [round(h.score, 4) for h in got] == [round(s, 4) for s, _ in want]
        for hit in got:  # ties aside, the same ids: each hit is live with its own score
            assert hit.record == live[hit.id]
            assert hit.score == pytest.approx(float(expected.vector(hit.record) @ query), abs=1e-4)
    some = rng.choice(list(live.values()))
    got = index.similar(some.id, k=4, min_score=-1)
    want = expected.search(expected.vector(some), 4, exclude=question_key(some, FIELDS))
    assert [round(h.score, 4) for h in got] == [round(s, 4) for s, _ in want]


def test_random_walk_against_a_dict(tmp_path, pool):
    """Adds, updates (same text, new text), deletes, batches, compactions and merges in a
    seeded random order; after every step the index answers as the dict says."""
    rng = random.Random(11)
    path = tmp_path / "walk"
    index = simqa.build(pool[:60], path)
    expected = Expected(index)
    expected.records = {r.id: r for r in pool[:60]}
    fresh = iter(pool[60:])
    steps = Counter()
    for step in range(70):
        action = rng.choice(["add", "add", "same_text", "new_text", "delete", "delete",
                             "batch", "compact", "merge", "missing"])  # fmt: skip
        steps[action] += 1
        live = list(expected.records)
        if action == "add":
            new = [next(fresh) for _ in range(rng.randint(1, 3))]
            index.add(new)
            expected.records.update((r.id, r) for r in new)
        elif action == "same_text":  # other fields change: same vector id and vector
            r = expected.records[rng.choice(live)]
            changed = replace(r, reply=f"reply {step}", department=rng.choice(["Skin", "Eye"]),
                              tags=[f"topic{step}", "sleep"])  # fmt: skip
            index.add([changed])
            expected.records[r.id] = changed
        elif action == "new_text":
            r = expected.records[rng.choice(live)]
            changed = replace(r, question=next(fresh).question)
            index.add([changed])
            expected.records[r.id] = changed
        elif action == "delete":
            gone = rng.sample(live, rng.randint(1, 2))
            assert index.delete(gone) == len(gone)
            for record_id in gone:
                del expected.records[record_id]
        elif action == "missing":
            assert index.delete(["no-such-id"]) == 0
        elif action == "batch":  # several writes, one version, in order
            a, b = next(fresh), rng.choice(live)
            a2 = replace(a, reply="second")
            results = index.apply([("add", [a]), ("delete", [b, a.id]), ("add", [a2])])
            assert [r.get("deleted", 0) for r in results] == [0, 2, 0]
            del expected.records[b]
            expected.records[a.id] = a2
        elif action == "compact":
            index.compact()
            assert index.snapshot.manifest.segments == []
        else:
            index.compact(kind="minor")
            assert len(index.snapshot.manifest.segments) <= 1
        check(index, expected, rng)
        if step % 10 == 9:
            reopened = simqa.open_index(path, verify=True)  # every checksum
            check(reopened, expected, rng, queries=1)
            boxes = dict(reopened.similar_all(3, min_score=-1))
            assert set(boxes) == set(expected.records)
            for record_id in rng.sample(list(boxes), 5):
                alone = reopened.similar(record_id, 3, min_score=-1)
                assert [(h.id, round(h.score, 5)) for h in boxes[record_id]] == [
                    (h.id, round(h.score, 5)) for h in alone
                ]
            reopened.close()
        for gone_id in set(live) - set(expected.records):
            with pytest.raises(UnknownConsultation):
                index.get(gone_id)
    assert all(steps[a] >= 3 for a in ("add", "delete", "compact", "merge", "batch"))
    index.close()


def test_a_rebuilt_index_answers_the_same(tmp_path, pool):
    """Duplicates, every box, questions and counts across base and deltas equal those of an
    index built from scratch from the same records (flat: both exact)."""
    from simqa.box.duplicates import find_duplicates

    path = tmp_path / "grown"
    records = {r.id: r for r in pool[:120]}
    index = simqa.build(list(records.values())[:100], path)
    index.add(list(records.values())[100:])
    twin = replace(pool[200], id="twin", title=pool[3].title, question=pool[3].question)
    index.add([twin])
    records["twin"] = twin
    index.delete([pool[7].id, pool[101].id])
    del records[pool[7].id], records[pool[101].id]
    changed = replace(records[pool[9].id], department="Eye", tags=["Eye"])
    index.add([changed])
    records[changed.id] = changed
    assert len(index.snapshot.manifest.segments) == 4
    rebuilt = simqa.build(list(records.values()), tmp_path / "rebuilt")

    def pairs(idx: simqa.Index) -> set:
        found = find_duplicates(idx, 0.9)
        return {(frozenset((p.a.id, p.b.id)), round(p.score, 4)) for p in found.pairs}

    assert pairs(index) == pairs(rebuilt)
    assert any(p == {"twin", pool[3].id} for p, _score in pairs(index))
    twins = {"twin", pool[3].id}

    def boxes(idx: simqa.Index) -> dict:
        """Every box's scores, and its ids where no two hits tie (the twins do)."""
        return {
            record_id: ([round(h.score, 4) for h in hits],
                        [h.id for h in hits] if not twins & {h.id for h in hits} else None)
            for record_id, hits in idx.similar_all(4)
        }  # fmt: skip

    assert boxes(index) == boxes(rebuilt)
    assert index.tag_counts() == rebuilt.tag_counts()
    assert sorted(index.questions()[0]) == sorted(rebuilt.questions()[0])
    assert index.snapshot.store.counts_by("department") == rebuilt.snapshot.store.counts_by(
        "department"
    )
    assert index.manifest.sources == rebuilt.manifest.sources
    for filters in ({"department": "Eye"}, {"tag": "leg"}, {"since": "2016", "until": "2017"}):
        got = [(h.id, round(h.score, 4)) for h in index.search("legs twitch at night", 6,
                                                                 min_score=-1, **filters)]
        assert got == [(h.id, round(h.score, 4)) for h in rebuilt.search(
            "legs twitch at night", 6, min_score=-1, **filters)]  # fmt: skip
    # the index's own threshold holds for delta hits too
    assert all(h.score >= index.min_score() for h in index.search("twitching legs", 10))


def test_hub_penalty_on_deltas_ranks_as_on_a_rebuilt_index(tmp_path, pool):
    records = pool[:80]
    path = tmp_path / "hub"
    index = simqa.build(records[:60], path, hub_penalty=0.5)
    index.add(records[60:])
    index.delete([records[2].id, records[65].id])
    live = [r for r in records if r.id not in (records[2].id, records[65].id)]
    rebuilt = simqa.build(live, tmp_path / "hub-rebuilt", hub_penalty=0.5)
    _ids, vectors = index.embeddings()
    sims = np.asarray(vectors) @ np.asarray(vectors).T
    np.fill_diagonal(sims, -np.inf)
    brute = -np.sort(-sims, axis=1)[:, :10].mean(axis=1)
    assert np.allclose(index.snapshot.density, brute, atol=1e-5)
    for text in ("my legs jerk at night", "itchy rash on my arm", "chest pain when running"):
        got = index.search(text, 5, min_score=-1)
        want = rebuilt.search(text, 5, min_score=-1)
        assert [h.id for h in got] == [h.id for h in want]
        assert [round(h.rank_score, 4) for h in got] == [round(h.rank_score, 4) for h in want]


def test_writes_published_during_a_compaction_are_kept(tmp_path, pool):
    path = tmp_path / "busy"
    index = simqa.build(pool[:80], path)
    index.add(pool[80:90])
    index.delete([pool[0].id])
    writer = simqa.open_index(path)

    def meanwhile() -> None:  # the base is built; the writer lock is free until it publishes
        writer.add(pool[90:95])
        writer.delete([pool[1].id, pool[85].id])  # one from the old base, one from a delta
        writer.add([replace(pool[82], reply="updated during compaction")])

    done = compaction.compact(path, pause=meanwhile)
    assert done["compacted"] and done["replayed_segments"] == 3 and done["kind"] == "major"
    index.refresh()
    assert len(index.snapshot.manifest.segments) == 3  # the writes', on the new base
    expected = {r.id for r in pool[:95]} - {pool[0].id, pool[1].id, pool[85].id}
    assert {r.id for r in index.records()} == expected
    assert index.get(pool[82].id).reply == "updated during compaction"
    assert index.search(pool[93].question, 1)[0].id == pool[93].id
    for gone in (pool[0], pool[1], pool[85]):
        assert gone.id not in {h.id for h in index.search(gone.question, 10, min_score=-1)}
    simqa.open_index(path, verify=True)


def test_a_rebuild_during_a_compaction_wins(tmp_path, pool):
    path = tmp_path / "rebuilt"
    index = simqa.build(pool[:40], path)
    index.add(pool[40:45])

    def rebuild() -> None:
        simqa.build(pool[100:130], path)

    done = compaction.compact(path, pause=rebuild)
    assert not done["compacted"] and "rebuilt" in done["reason"]
    assert {r.id for r in simqa.open_index(path).records()} == {r.id for r in pool[100:130]}
    assert not list(path.glob(f"{layout.COMPACTING_PREFIX}*"))


def test_compaction_thresholds_and_the_writes_own_limits(tmp_path, pool, monkeypatch):
    path = tmp_path / "limits"
    index = simqa.build(pool[:50], path)
    monkeypatch.setattr(compaction, "MERGE_SEGMENTS", 2)
    monkeypatch.setattr(compaction, "HARD_SEGMENTS", 3)
    monkeypatch.setattr(compaction, "DELTA_RECORDS", 6)
    monkeypatch.setattr(compaction, "HARD_DELTA_RECORDS", 12)
    for r in pool[50:53]:
        index.add([r])
    assert compaction.due(index.snapshot) == "minor"  # three segments, three records
    index.add([pool[53]])  # a fourth segment would pass the hard limit: merged by the write
    assert len(index.snapshot.manifest.segments) == 1 and len(index) == 54
    index.add(pool[54:57])
    assert compaction.due(index.snapshot) == "major"
    thread = compaction.in_background(path)  # what a server's writer does after a write
    thread.join()
    index.refresh()
    assert index.snapshot.manifest.segments == [] and len(index) == 57
    index.add(pool[57:75])  # 18 new records: past the hard limit, the write folds itself
    assert index.snapshot.manifest.segments == [] and len(index) == 75
    assert compaction.in_background(path) is None  # nothing due


def test_each_reading_thread_has_its_own_connection(tmp_path, pool):
    index = simqa.build(pool[:30], tmp_path / "threads")
    index.add(pool[30:33])
    seen: dict[int, list] = {}
    barrier = threading.Barrier(4)

    def read(n: int) -> None:
        barrier.wait()
        for _ in range(20):
            assert index.get(pool[n].id) == pool[n] and index.get(pool[31].id) == pool[31]
        seen[n] = [store._connection() for store in index.snapshot.store.stores]

    threads = [threading.Thread(target=read, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    base = [connections[0] for connections in seen.values()]
    assert len({id(c) for c in base}) == 4  # four threads, four connections to the base
    assert len({id(c[1]) for c in seen.values()}) == 4  # and to the delta


def test_an_index_written_before_segments_opens_and_takes_writes(tmp_path, pool):
    """An index written by simqa before delta segments (format 2: a whole copy per write,
    deletes as tombstones in vectors.live.npy) answers as before, then takes writes."""
    old = tmp_path / "old-simqa"
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(root), "archive", "ca14853", "src"],
                             capture_output=True, check=True).stdout  # fmt: skip
    old.mkdir()
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    path = tmp_path / "legacy"
    script = (
        "import sys, simqa; from simqa.ingest import load; from pathlib import Path\n"
        f"rs = list(load([Path({str(QUESTION_DOCTOR)!r})]))[:90]\n"
        f"i = simqa.build(rs[:80], {str(path)!r}, index_type='hnsw')\n"
        "i.add(rs[80:90]); i.delete([rs[0].id, rs[85].id])\n"
        "print(len(i), i.manifest.format_version)\n"
    )
    made = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(old / "src")})  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == ["88", "2"]
    index = simqa.open_index(path, verify=True)
    assert index.manifest.format_version == 2 and len(index) == 88
    records = list(index.records())
    from simqa.ingest import load

    originals = list(load([QUESTION_DOCTOR]))[:90]
    assert {r.id for r in records} == {r.id for r in originals} - {originals[0].id,
                                                                   originals[85].id}
    assert index.search(originals[3].question, 1)[0].id == originals[3].id
    assert originals[0].id not in {h.id for h in index.search(originals[0].question, 10,
                                                              min_score=-1)}  # fmt: skip
    index.add([Consultation(id="new", question="Ringing in both ears after a concert")])
    index.delete([originals[5].id])
    assert index.manifest.format_version == 3 and len(index.manifest.segments) == 2
    assert index.search("ears ringing after loud music", 1)[0].id == "new"
    vids = [vid for vid, _ in index.records_by_vid()]
    assert len(set(vids)) == len(vids) == 88 and max(vids) > 90  # new vids after the old ones
    index.compact()
    assert len(index) == 88 and index.snapshot.manifest.segments == []
    assert originals[5].id not in {h.id for h in index.search(originals[5].question, 10,
                                                              min_score=-1)}  # fmt: skip
    simqa.open_index(path, verify=True)


def test_killed_compactions_lose_nothing(tmp_path, pool):
    """``simqa compact`` sent SIGKILL at random moments: the index opens with every
    checksum and every record; the next write leaves nothing of it behind."""
    from .test_live_index import _duration, _kill_at_random, simqa_cmd

    path = tmp_path / "kill"
    index = simqa.build(pool[:150], path)
    rng = random.Random(4)
    expected = {r.id for r in pool[:151]}
    fresh = iter(pool[151:])
    index.add([pool[150]])
    full = _duration(simqa_cmd("compact", "--index", str(path)))
    for trial in range(5):
        batch = [next(fresh) for _ in range(3)]
        index.add(batch)
        index.delete([pool[trial].id])
        expected = (expected | {r.id for r in batch}) - {pool[trial].id}
        _kill_at_random(simqa_cmd("compact", "--index", str(path)),
                        rng.uniform(0.2 * full, 1.1 * full))  # fmt: skip
        reopened = simqa.open_index(path, verify=True)
        assert {r.id for r in reopened.records()} == expected
        reopened.close()
    index.add([next(fresh)])
    leftovers = [p.name for p in path.iterdir() if p.name.startswith(".") and
                 not re.fullmatch(r"\.(compact\.)?lock", p.name)]  # fmt: skip
    assert leftovers == []


def test_an_iterator_keeps_its_version_while_the_index_moves_on(tmp_path, pool):
    path = tmp_path / "iter"
    simqa.build(pool[:300], path)
    reader = simqa.open_index(path, refresh_every=0.0)
    seen = []
    for record in reader.records():  # pages of 2,000 rows... and one write half-way
        seen.append(record.id)
        if len(seen) == 10:
            simqa.open_index(path).add([pool[400]])
            reader.search("sore throat", 1)  # the index moves to the new version
            assert (path / "v000001").is_dir()  # still read by the iterator
    assert seen == [r.id for r in pool[:300]]
    assert sorted(v.name for v in path.glob("v*")) == ["v000002"]  # let go with it


def test_turning_the_hub_penalty_on_computes_every_density(tmp_path, pool):
    path = tmp_path / "turn"
    index = simqa.build(pool[:50], path)  # off by default
    index.add(pool[50:55])
    index.add([pool[55]], hub_penalty=0.5)  # on: every density, so a new base at once
    assert index.snapshot.manifest.segments == [] and index.info()["hub_penalty"]["weight"] == 0.5
    _ids, vectors = index.embeddings()
    sims = np.asarray(vectors) @ np.asarray(vectors).T
    np.fill_diagonal(sims, -np.inf)
    assert np.allclose(index.snapshot.density, -np.sort(-sims, axis=1)[:, :10].mean(axis=1),
                       atol=1e-5)  # fmt: skip
    index.add([pool[56]], hub_penalty=0.25)  # another weight: the densities serve as they are
    assert len(index.snapshot.manifest.segments) == 1 and index.snapshot.hub_weight == 0.25
    index.add([pool[57]], hub_penalty=0)  # off: densities no longer kept
    index.add([pool[58]])
    assert not index.snapshot.has_density and len(index.snapshot.manifest.segments) == 3
    index.add([pool[59]], hub_penalty=0.5)  # on again: computed anew, not from stale ones
    assert index.snapshot.manifest.segments == [] and len(index) == 60
    _ids, vectors = index.embeddings()
    sims = np.asarray(vectors) @ np.asarray(vectors).T
    np.fill_diagonal(sims, -np.inf)
    assert np.allclose(index.snapshot.density, -np.sort(-sims, axis=1)[:, :10].mean(axis=1),
                       atol=1e-5)  # fmt: skip
