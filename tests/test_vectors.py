"""Vector backends against exact search, on real faiss with clustered synthetic vectors.

The corpus is a Gaussian mixture (like sentence embeddings: tight topical clusters),
normalised, 5,000 x 64, with sparse non-contiguous ids as the record store hands out.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from simqa.errors import SimqaError
from simqa.vectors import choose, create, load
from simqa.vectors.faissio import set_threads
from simqa.vectors.tuning import exact_topk, recall_at_k, tune_search_params

N, DIM, K = 5000, 64, 10
KINDS = ["flat", "hnsw", "hnsw_sq8", "ivf_pq"]
#: kinds whose stored vectors are exact, so some setting reproduces flat's top-k
EXACT_CAPABLE = ["flat", "hnsw", "ivf_pq"]
#: 8-bit codes reorder near-ties; this is what hnsw_sq8 reaches at its largest efSearch
SQ8_FLOOR = 0.95


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def mixture(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    labels = rng.integers(0, len(centres), n)
    return unit(centres[labels] + 0.6 * rng.standard_normal((n, centres.shape[1])))


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    set_threads(1)  # the test machine is shared; one thread avoids OpenMP spin contention
    rng = np.random.default_rng(42)
    centres = rng.standard_normal((60, DIM))
    vectors = mixture(N, rng, centres)
    return {
        "vectors": vectors,
        "ids": np.arange(N, dtype=np.int64) * 3 + 1000,
        "fresh": mixture(300, rng, centres),  # queries not in the corpus
    }


@pytest.fixture(scope="module")
def built(data, tmp_path_factory) -> dict[str, Path]:
    """Each kind built once and saved; tests load private copies."""
    out = {}
    for kind in KINDS:
        index = create(kind, DIM)
        index.add(data["ids"], data["vectors"])
        folder = tmp_path_factory.mktemp(kind)
        index.save(folder)
        out[kind] = (folder, index.config)
    return out


def fresh_copy(built, kind: str, tmp_path: Path, mmap: bool = False):
    folder, config = built[kind]
    target = tmp_path / kind
    shutil.copytree(folder, target)
    return load(target, config, mmap=mmap), target


def exact_recall(index, queries, vectors, ids) -> float:
    kth = exact_topk(queries, vectors, K)[0][:, K - 1]
    _, found = index.search(queries, K)
    return float(recall_at_k(queries, found, kth, vectors, ids, K).mean())


def max_params(index) -> dict:
    """The most accurate setting worth trying (HNSW capped: efSearch 4096 crawls a 5k graph)."""
    grid = [p for p in index.search_grid(K) if p.get("efSearch", 0) <= 256]
    return grid[-1] if grid else {}


@pytest.mark.parametrize("kind", EXACT_CAPABLE)
def test_tuning_to_one_and_max_params_return_exact_top_k(kind, data, built, tmp_path):
    index, _ = fresh_copy(built, kind, tmp_path)
    report = tune_search_params(index, data["vectors"], data["ids"], target=1.0, k=K, sample=400)
    assert report["reached"], report
    assert report["heldout_recall"] >= 0.999
    # at its most accurate setting, on queries from outside the corpus, ids and order
    # match brute force
    index.set_search_params(**max_params(index))
    scores, ids = index.search(data["fresh"], K)
    exact_scores, rows = exact_topk(data["fresh"], data["vectors"], K)
    assert exact_recall(index, data["fresh"], data["vectors"], data["ids"]) == 1.0
    same = ids == data["ids"][rows]
    assert same.mean() > 0.99  # the rest are exact ties in score
    np.testing.assert_allclose(scores, exact_scores, atol=1e-4)


def test_sq8_reaches_its_floor_at_max_params(data, built, tmp_path):
    index, _ = fresh_copy(built, "hnsw_sq8", tmp_path)
    index.set_search_params(**max_params(index))
    assert exact_recall(index, data["fresh"], data["vectors"], data["ids"]) >= SQ8_FLOOR


@pytest.mark.parametrize("kind", KINDS)
def test_tuning_reaches_target_on_held_aside_queries(kind, data, built, tmp_path):
    index, _ = fresh_copy(built, kind, tmp_path)
    report = tune_search_params(
        index, data["vectors"], data["ids"], target=0.9, k=K, sample=600, seed=1
    )
    assert report["reached"]
    assert report["recall"] >= 0.9
    assert report["heldout_recall"] >= 0.9
    assert index.search_params() == report["params"]
    if kind == "flat":
        assert report["params"] == {} and report["recall"] == 1.0
    # the chosen setting is the cheapest: the one before it on the grid misses the target
    grid = index.search_grid(K)
    position = grid.index(report["params"]) if grid else 0
    if kind == "hnsw" and position > 0:
        index.set_search_params(**grid[position - 1])
        held = data["vectors"][np.random.default_rng(1).choice(N, 600, replace=False)[:300]]
        assert exact_recall(index, held, data["vectors"], data["ids"]) < 0.9 + 0.02


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mmap", [False, True])
def test_remove_and_update_stay_correct(kind, mmap, data, built, tmp_path):
    index, _ = fresh_copy(built, kind, tmp_path, mmap=mmap)
    index.set_search_params(**max_params(index))
    vectors, ids, queries = data["vectors"], data["ids"], data["fresh"][:100]
    # remove every current top-3 neighbour of the queries, plus a random quarter
    _, before = index.search(queries, 3)
    rng = np.random.default_rng(3)
    gone = np.union1d(before.ravel(), rng.choice(ids, N // 4, replace=False))
    assert index.remove(gone) == len(gone)
    assert index.remove(gone) == 0  # already gone
    keep = ~np.isin(ids, gone)
    assert len(index) == keep.sum()

    # update: 50 kept ids move to brand-new directions
    moved = ids[keep][:50]
    new_vectors = unit(rng.standard_normal((50, DIM)))
    index.update(moved, new_vectors)
    live_vectors = vectors[keep].copy()
    live_vectors[:50] = new_vectors

    def check(idx) -> None:
        _, found = idx.search(queries, K)
        assert not np.isin(found, gone).any(), "a removed id came back"
        recall = exact_recall(idx, queries, live_vectors, ids[keep])
        assert recall >= (SQ8_FLOOR if kind == "hnsw_sq8" else 1.0)
        _, top = idx.search(new_vectors, 1)
        assert (top[:, 0] == moved).all(), "an updated vector is not found at its new place"

    check(index)
    out = tmp_path / "saved"
    out.mkdir()
    index.save(out)
    reloaded = load(out, index.config, mmap=mmap)
    assert len(reloaded) == len(index)
    check(reloaded)


@pytest.mark.parametrize("kind", ["hnsw", "hnsw_sq8", "ivf_pq"])
def test_compaction_rebuilds_from_kept_vectors(kind, data, built, tmp_path):
    index, _ = fresh_copy(built, kind, tmp_path)
    index.set_search_params(**max_params(index))
    ids, vectors = data["ids"], data["vectors"]
    index.remove(ids[: N // 10])
    assert not index.needs_compaction()  # 10% dead
    index.remove(ids[N // 10 : N // 4])
    assert index.needs_compaction()  # 25% dead
    index.compact(ids[N // 4 :], vectors[N // 4 :])
    assert not index.needs_compaction()
    assert len(index) == index.n_stored == N - N // 4
    _, found = index.search(data["fresh"], K)
    assert not np.isin(found, ids[: N // 4]).any()
    floor = SQ8_FLOOR if kind == "hnsw_sq8" else 1.0
    assert exact_recall(index, data["fresh"], vectors[N // 4 :], ids[N // 4 :]) >= floor


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind, data, built, tmp_path):
    index, _ = fresh_copy(built, kind, tmp_path)
    if index.search_grid(K):
        index.set_search_params(**index.search_grid(K)[2])
    expected = index.search(data["fresh"], K)
    out = tmp_path / "again"
    out.mkdir()
    index.save(out)
    for mmap in (False, True):
        again = load(out, index.config, mmap=mmap)
        assert again.config == index.config
        assert len(again) == N
        got = again.search(data["fresh"], K)
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_mmap_load_maps_the_file_and_copies_before_writing(kind, data, built, tmp_path):
    index, folder = fresh_copy(built, kind, tmp_path, mmap=True)
    path = str((folder / index.filename).resolve())
    maps = Path("/proc/self/maps").read_text()
    assert index.mapped and path in maps
    on_disk = (folder / index.filename).read_bytes()
    index.add(np.array([1]), data["fresh"][:1])  # must not write through the mapping
    assert not index.mapped
    assert (folder / index.filename).read_bytes() == on_disk
    _, top = index.search(data["fresh"][:1], 1)
    assert top[0, 0] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_batched_search_equals_one_by_one(kind, data, built, tmp_path):
    index, _ = fresh_copy(built, kind, tmp_path)
    batch = index.search(data["fresh"][:20], K)[1]
    single = np.vstack([index.search(q, K)[1] for q in data["fresh"][:20]])
    np.testing.assert_array_equal(batch, single)


def test_edges(data):
    for kind in KINDS:
        index = create(kind, DIM)
        _, ids = index.search(data["fresh"][:2], 5)
        assert ids.shape == (2, 5) and (ids == -1).all()
        assert index.remove(np.array([1, 2])) == 0
    flat = create("flat", DIM)
    flat.add(np.array([5, 6]), data["vectors"][:2])
    with pytest.raises(ValueError):
        flat.add(np.array([5]), data["vectors"][:1])
    hnsw = create("hnsw", DIM)
    hnsw.add(np.array([5, 6]), data["vectors"][:2])
    with pytest.raises(ValueError):
        hnsw.add(np.array([6]), data["vectors"][:1])
    _, top = hnsw.search(data["vectors"][:2], 5)
    assert list(top[0][:2]) == [5, 6] and (top[:, 2:] == -1).all()
    with pytest.raises(SimqaError, match="at least"):
        create("ivf_pq", DIM).add(np.arange(10), data["vectors"][:10])
    with pytest.raises(SimqaError, match="unknown index type"):
        create("annoy", DIM)
    with pytest.raises(ValueError, match="efSearch"):
        create("ivf_pq", DIM).set_search_params(efSearch=10)


def test_choose_by_size_and_memory():
    kind, params, reason = choose(15_000, 384)
    assert kind == "flat" and params == {}
    assert reason.startswith("15,000 vectors x 384 dims: exact search")
    kind, params, reason = choose(47_441, 384)
    assert kind == "ivf_pq" and reason.startswith("47,441 vectors x 384 dims: too many")
    kind, params, reason = choose(1_000_000, 384)
    assert kind == "ivf_pq" and params["refine"] == "flat" and "exact float32 re-rank" in reason
    assert params["nlist"] == 4000
    # tighter budgets shrink the re-rank copy: float16, then 8-bit
    kind, params, reason = choose(1_000_000, 384, memory_budget_bytes=1200 * 2**20)
    assert kind == "ivf_pq" and params["refine"] == "fp16" and "memory budget" in reason
    kind, params, _ = choose(1_000_000, 384, memory_budget_bytes=600 * 2**20)
    assert params["refine"] == "sq8"
    kind, params, reason = choose(1_000_000, 384, memory_budget_bytes=100 * 2**20)
    assert params["refine"] == "sq8" and "exceeds" in reason
    # a small corpus over budget leaves exact search too
    kind, _, reason = choose(15_000, 384, memory_budget_bytes=10 * 2**20)
    assert kind == "ivf_pq" and "exact search exceeds the memory budget" in reason
    # every choice can be created with its parameters
    for n in (1_000, 1_000_000, 20_000_000):
        kind, params, _ = choose(n, 64)
        assert create(kind, 64, **params).kind == kind


def test_set_threads():
    assert set_threads(1) == 1
    assert faiss.omp_get_max_threads() == 1
