"""FaissIndex: ANN recall against exact search, filters that never leak, files, removal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pursuit.indexes.errors import IndexError_
from pursuit.indexes.exact import TorchExactSearch, exact_search
from pursuit.indexes.vectors.store import DEFAULT_EF_SEARCH, FaissIndex, VectorStore

FACTORIES = ["Flat", "HNSW32", "IVF32,Flat", "PQ8x4"]


def clustered(n: int = 2000, dim: int = 32, nq: int = 100, seed: int = 0):
    """Seeded unit vectors around 40 centres, and queries near random points."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    x = centres[rng.integers(0, 40, n)] + 0.5 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.integers(0, n, nq)] + 0.3 * rng.normal(size=(nq, dim))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x.astype(np.float32), q.astype(np.float32)


def built(factory: str, x: np.ndarray, rows: np.ndarray, metric: str = "ip") -> FaissIndex:
    index = FaissIndex(x.shape[1], factory=factory, metric=metric)
    index.add(x, rows)
    return index


@pytest.fixture(scope="module")
def data():
    x, q = clustered()
    return x, q, np.arange(len(x), dtype=np.int64) * 3 + 1  # rows are not positions


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(found, truth, strict=True)]))


def test_flat_is_exact_search(data):
    x, q, rows = data
    got_rows, got_scores = built("Flat", x, rows).search(q, 10)
    pos, scores = exact_search(x, q, 10)
    assert np.array_equal(got_rows, rows[pos])
    np.testing.assert_allclose(got_scores, scores, rtol=1e-5, atol=1e-6)
    assert isinstance(built("Flat", x, rows), VectorStore)


@pytest.mark.parametrize(("factory", "floor"), [("HNSW32", 0.95), ("IVF32,Flat", 0.95)])
def test_ann_recall_against_flat(data, factory, floor):
    # Measured 0.999-1.000 over seeds 0-2 with the default efSearch / nprobe.
    x, q, rows = data
    truth, _ = built("Flat", x, rows).search(q, 10)
    found, _ = built(factory, x, rows).search(q, 10)
    assert recall_at(found, truth, 10) >= floor


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("share", [0.01, 0.3, 0.9])
def test_filtered_search_never_leaks(data, factory, share):
    x, q, rows = data
    index = built(factory, x, rows)
    mask = np.zeros(int(rows.max()) + 5, dtype=bool)
    rng = np.random.default_rng(7)
    mask[rows[rng.random(len(rows)) < share]] = True
    n_allowed = int(mask[rows].sum())
    got, scores = index.search(q, 50, mask=mask)
    hits = got[got >= 0]
    assert mask[hits].all()
    assert ((got >= 0).sum(axis=1) == min(50, n_allowed)).all()
    assert np.isneginf(scores[got < 0]).all()
    if factory == "Flat":
        allowed_pos = np.flatnonzero(mask[rows])
        pos, _ = exact_search(x, q, 50, positions=allowed_pos)
        assert np.array_equal(got, np.where(pos >= 0, rows[np.maximum(pos, 0)], -1))


def test_mask_with_nothing_allowed_and_bad_length(data):
    x, q, rows = data
    index = built("HNSW32", x, rows)
    got, scores = index.search(q[:2], 3, mask=np.zeros(int(rows.max()) + 1, dtype=bool))
    assert got.tolist() == [[-1, -1, -1]] * 2 and np.isneginf(scores).all()
    with pytest.raises(ValueError, match=r"length > 5998 \(build it with DocStore.mask"):
        index.search(q[:1], 3, mask=np.ones(10, dtype=bool))


def test_padding_when_k_exceeds_count_and_empty_index():
    index = FaissIndex(2)
    assert index.search(np.ones((1, 2), np.float32), 2)[0].tolist() == [[-1, -1]]
    index.add(np.array([[1, 0], [0.6, 0.8]], np.float32), np.array([4, 9]))
    rows, scores = index.search(np.array([1, 0], np.float32), 4)
    assert rows.tolist() == [[4, 9, -1, -1]]
    assert scores[0, :2].tolist() == pytest.approx([1.0, 0.6]) and np.isneginf(scores[0, 2:]).all()


def test_l2_scores_are_negative_squared_distances():
    x = np.array([[0, 0], [3, 4], [1, 1]], np.float32)
    index = built("Flat", x, np.array([0, 1, 2]), metric="l2")
    rows, scores = index.search(np.array([[1, 0]], np.float32), 3)
    assert rows.tolist() == [[0, 2, 1]]
    assert scores.tolist() == [[-1.0, -1.0, -20.0]]
    pos, exact = exact_search(x, np.array([[1, 0]], np.float32), 3, "l2")
    assert pos.tolist() == [[0, 2, 1]] and exact.tolist() == [[-1.0, -1.0, -20.0]]


def test_torch_exact_search_matches_numpy(data):
    x, q, _ = data
    allowed = np.arange(len(x)) % 3 == 0
    torch_pos, torch_scores = TorchExactSearch(x, "ip", "cpu").search(q, 10, allowed)
    pos, scores = exact_search(x, q, 10, positions=np.flatnonzero(allowed))
    assert np.array_equal(torch_pos, pos)
    np.testing.assert_allclose(torch_scores, scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF32,Flat"])
@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_identical(data, tmp_path, factory, mmap):
    x, q, rows = data
    index = built(factory, x, rows)
    before = index.search(q, 10)
    index.save(tmp_path / "dense")
    assert sorted(p.name for p in (tmp_path / "dense").iterdir()) == [
        "index.faiss", "rows.npy", "vectors.json", "vectors.npy"]
    config = json.loads((tmp_path / "dense" / "vectors.json").read_text())
    assert (config["format_version"], config["factory"], config["metric"], config["count"],
            config["dim"]) == (1, factory, "ip", 2000, 32)
    assert config["ef_search"] == (DEFAULT_EF_SEARCH if factory == "HNSW32" else None)
    assert config["nprobe"] == (16 if factory.startswith("IVF") else None)
    loaded = FaissIndex.load(tmp_path / "dense", mmap=mmap)
    after = loaded.search(q, 10)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert np.array_equal(loaded.vectors_of(rows[[5, 0]]), x[[5, 0]])


def test_change_and_save_over_a_memory_mapped_folder(data, tmp_path):
    x, q, rows = data
    built("IVF32,Flat", x[:1500], rows[:1500]).save(tmp_path)
    index = FaissIndex.load(tmp_path, mmap=True)
    index.add(x[1500:], rows[1500:])
    assert index.remove(rows[:10]) == 10
    index.save(tmp_path)
    again = FaissIndex.load(tmp_path)
    assert len(again) == 1990 and json.loads((tmp_path / "vectors.json").read_text())["count"] == 1990
    found, _ = again.search(x[1990:], 1)
    assert found[:, 0].tolist() == rows[1990:].tolist()


@pytest.mark.parametrize("factory", FACTORIES)
def test_remove_and_replace_rows(data, factory):
    x, q, rows = data
    index = built(factory, x, rows)
    gone = rows[::2]
    assert index.remove(np.append(gone, 99999)) == len(gone)
    assert len(index) == len(rows) - len(gone)
    found, _ = index.search(q, 20)
    assert not np.isin(found, gone).any()
    with pytest.raises(KeyError, match=r"rows without a vector in this index: \[1\]"):
        index.vectors_of(np.array([1]))
    # Adding a row that is present replaces its vector.
    index.add(-x[1:2], rows[1:2])
    assert len(index) == len(rows) - len(gone)
    assert np.array_equal(index.vectors_of(rows[1:2]), -x[1:2])


def test_bad_input_errors(data):
    x, _, rows = data
    with pytest.raises(ValueError, match=r"factory 'IVF64,Flat' needs at least 64 vectors to "
                                         r"train its 64 lists but got 10"):
        built("IVF64,Flat", x[:10], rows[:10]).search(x[:1], 1)
    with pytest.raises(ValueError, match="invalid FAISS factory string 'Nonsense7'"):
        FaissIndex(32, factory="Nonsense7")
    with pytest.raises(ValueError, match=r"vectors must have shape \(n, 32\), got \(2, 3\)"):
        FaissIndex(32).add(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="rows repeat within one add"):
        FaissIndex(32).add(x[:2], np.array([3, 3]))


def test_damaged_folders_name_the_file_and_the_rebuild_command(data, tmp_path):
    x, q, rows = data
    built("HNSW32", x, rows).save(tmp_path / "dense")
    (tmp_path / "manifest.json").write_text("{}")  # the folder sits inside an index directory
    (tmp_path / "dense" / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexError_, match=rf"{tmp_path}/dense/index.faiss is damaged .*rebuild it "
                                          rf"with: pursuit index SOURCE --out {tmp_path}, or"):
        FaissIndex.load(tmp_path / "dense")
    # The stored vectors rebuild the structure without re-encoding.
    rebuilt = FaissIndex.load(tmp_path / "dense", factory="Flat")
    assert rebuilt.search(x[:3], 1)[0][:, 0].tolist() == rows[:3].tolist()
    np.save(tmp_path / "dense" / "rows.npy", rows[:5])
    with pytest.raises(IndexError_, match=r"rows.npy holds int64 \(5,\), expected int64 \(2000,\)"):
        FaissIndex.load(tmp_path / "dense")
    (tmp_path / "dense" / "vectors.json").unlink()
    with pytest.raises(IndexError_, match=rf"{tmp_path}/dense/vectors.json is missing, so "
                                          rf"{tmp_path}/dense is not a vector index"):
        FaissIndex.load(tmp_path / "dense")


def test_short_approximate_results_are_filled_exactly(data):
    # One IVF list probed holds ~60 vectors, fewer than k: those queries go exact.
    x, q, rows = data
    index = FaissIndex(32, factory="IVF32,Flat", nprobe=1)
    index.add(x, rows)
    found, _ = index.search(q[:5], 500)
    truth, _ = built("Flat", x, rows).search(q[:5], 500)
    assert ((found >= 0).sum(axis=1) == 500).all()
    assert np.array_equal(found, truth)


def test_backend_choice_without_a_gpu(monkeypatch):
    from pursuit.indexes.vectors import structure as vectorsearch

    monkeypatch.setattr(vectorsearch.faiss, "get_num_gpus", lambda: 0)
    monkeypatch.setattr(vectorsearch, "cuda_available", lambda: False)
    assert [vectorsearch.pick_backend(d) for d in ("cpu", "auto")] == ["faiss", "faiss"]
    with pytest.raises(ValueError, match=r"^device='cuda' but no CUDA device is visible; use "
                                         r"'auto'$"):
        vectorsearch.pick_backend("cuda")
    monkeypatch.setattr(vectorsearch, "cuda_available", lambda: True)  # torch sees a GPU, faiss not
    assert [vectorsearch.pick_backend(d) for d in ("cpu", "auto", "cuda")] == [
        "faiss", "torch", "torch"]
    monkeypatch.setattr(vectorsearch.faiss, "get_num_gpus", lambda: 1)
    assert vectorsearch.pick_backend("auto") == "faiss-gpu"


def test_describe_records_search_parameters(data, tmp_path):
    x, _, rows = data
    hnsw = built("HNSW32", x[:100], rows[:100])
    assert (hnsw.ef_search, hnsw.nprobe) == (DEFAULT_EF_SEARCH, None)
    described = hnsw.describe()
    assert {k: described[k] for k in ("factory", "metric", "dim", "count", "ef_search", "nprobe",
                                      "nlist", "ef_construction")} == {
        "factory": "HNSW32", "metric": "ip", "dim": 32, "count": 100, "ef_search": 128,
        "nprobe": None, "nlist": None, "ef_construction": 40}
    ivf = FaissIndex(32, factory="IVF8,Flat", nprobe=50)  # nprobe is capped at the lists
    assert (ivf.ef_search, ivf.nprobe, ivf.describe()["nlist"]) == (None, 8, 8)
    ivf.add(x, rows)
    ivf.save(tmp_path / "ivf")
    assert json.loads((tmp_path / "ivf" / "vectors.json").read_text())["nprobe"] == 8
    assert FaissIndex.load(tmp_path / "ivf").nprobe == 8
