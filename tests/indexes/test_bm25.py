"""BM25Index: exact scores and rankings, filters, save/load, parity with rank_bm25, damage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from pursuit.indexes.bm25 import Analyzer, BM25Index
from pursuit.indexes.errors import IndexError_

TEXTS = [
    "The moon pulls the tides.",                   # moon pull tide
    "Tides and tides: a study of ocean tides.",    # tide tide studi ocean tide
    "Rain falls on the ocean.",                    # rain fall ocean
    "The cat sat.",                                # cat sat
    "Moonlight on the water, 1.5 metres",          # moonlight water 1.5 metr
]
ROWS = np.array([10, 11, 12, 13, 14])
AVGDL = (3 + 5 + 3 + 2 + 4) / 5


def lucene(tf: int, dl: int, df: int, n: int = 5, k1: float = 0.9, b: float = 0.4) -> float:
    """Lucene's BM25 term score (bm25s method "lucene"), written out for the expectations."""
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + k1 * (1 - b + b * dl / AVGDL))


@pytest.fixture(scope="module")
def index() -> BM25Index:
    return BM25Index.build(TEXTS, ROWS)


def test_analyzer_lowercases_drops_stopwords_stems_and_keeps_decimals() -> None:
    a = Analyzer()
    assert a("Tides and tides: a study of ocean tides.") == ["tide", "tide", "studi", "ocean", "tide"]
    assert a("Moonlight on the water, 1.5 metres") == ["moonlight", "water", "1.5", "metr"]
    assert Analyzer(stemmer=None, stopwords=None)("The Cats") == ["the", "cats"]
    with pytest.raises(ValueError, match="unknown stemmer 'klingon'"):
        Analyzer(stemmer="klingon")


def test_exact_scores_and_ranking(index: BM25Index) -> None:
    rows, scores = index.search(["tides of the moon", "ocean", "cat", "the of", "zebra"], k=4)
    assert rows.dtype == np.int64 and scores.dtype == np.float32 and rows.shape == (5, 4)
    assert rows.tolist() == [[10, 11, -1, -1], [12, 11, -1, -1], [13, -1, -1, -1],
                             [-1] * 4, [-1] * 4]
    want0 = lucene(1, 3, 2) + lucene(1, 3, 1)
    want1 = lucene(3, 5, 2)
    np.testing.assert_allclose(scores[0], [want0, want1, 0, 0], rtol=1e-6)
    # Same tf of "ocean": the shorter document (row 12) wins.
    np.testing.assert_allclose(scores[1], [lucene(1, 3, 2), lucene(1, 5, 2), 0, 0], rtol=1e-6)
    assert scores[3].tolist() == [0.0] * 4


def test_shorter_doc_wins_on_equal_tf_and_ties_go_to_the_lower_row() -> None:
    idx = BM25Index.build(["red fox", "red fox", "red fox jumps high"], np.array([7, 3, 5]))
    rows, scores = idx.search(["fox"], k=3)
    assert rows.tolist() == [[3, 7, 5]]
    assert scores[0, 0] == scores[0, 1] > scores[0, 2] > 0
    rows, _ = idx.search(["fox"], k=1)  # the tie at the cut is broken by row too
    assert rows.tolist() == [[3]]


def test_mask_never_returns_a_filtered_out_document(index: BM25Index) -> None:
    mask = np.ones(15, dtype=bool)
    mask[10] = False  # the best document for the query
    rows, scores = index.search(["tides of the moon"] * 2, k=5, mask=mask)
    assert rows.tolist() == [[11, -1, -1, -1, -1]] * 2
    np.testing.assert_allclose(scores[:, 0], lucene(3, 5, 2), rtol=1e-6)
    everything_off = np.zeros(15, dtype=bool)
    assert (index.search(["tides moon ocean"], k=5, mask=everything_off)[0] == -1).all()
    with pytest.raises(ValueError, match="mask has shape \\(12,\\) but this index holds rows up to 14"):
        index.search(["moon"], k=1, mask=np.ones(12, dtype=bool))


def test_score_of_given_rows(index: BM25Index) -> None:
    got = index.score("tides of the moon", np.array([11, 10, 13, 99, 2]))
    np.testing.assert_allclose(got, [lucene(3, 5, 2), lucene(1, 3, 2) + lucene(1, 3, 1), 0, 0, 0],
                               rtol=1e-6)


def test_save_and_mmap_load_give_identical_results(index: BM25Index, tmp_path: Path) -> None:
    index.save(tmp_path / "bm25")
    files = sorted(p.name for p in (tmp_path / "bm25").iterdir())
    assert {"bm25.json", "rows.npy", "data.csc.index.npy", "vocab.index.json"} <= set(files)
    cfg = json.loads((tmp_path / "bm25" / "bm25.json").read_text())
    assert (cfg["format_version"], cfg["k1"], cfg["b"], cfg["method"], cfg["stemmer"],
            cfg["n_docs"]) == (1, 0.9, 0.4, "lucene", "english", 5)
    loaded = BM25Index.load(tmp_path / "bm25", mmap=True)
    assert isinstance(loaded.model.scores["data"], np.memmap)
    queries = ["tides of the moon", "ocean rain", "1.5 metres of water", "nothing here"]
    for got, want in zip(loaded.search(queries, k=5), index.search(queries, k=5), strict=True):
        np.testing.assert_array_equal(got, want)
    assert loaded.config == index.config


def _parity_corpus() -> tuple[list[list[str]], list[list[str]]]:
    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(40)]
    weights = 1.0 / np.arange(1, 41)
    weights /= weights.sum()
    docs = [list(rng.choice(vocab, size=rng.integers(3, 30), p=weights)) for _ in range(120)]
    df = {w: sum(w in d for d in docs) for w in vocab}
    # rank_bm25 floors negative idfs (df > N/2) at 0.25 * mean idf, bm25s at 0: query rarer terms.
    usable = [w for w in vocab if 0 < df[w] < len(docs) / 2]
    queries = [list(rng.choice(usable, size=rng.integers(1, 5))) for _ in range(25)]
    return docs, queries


def test_parity_with_rank_bm25_okapi() -> None:
    docs, queries = _parity_corpus()
    # BM25Okapi = Robertson's idf with ATIRE's (k1 + 1) term frequency; no stemming/stopwords,
    # and the tokens are joined with spaces so the analyzer splits them back exactly.
    ours = BM25Index.build([" ".join(d) for d in docs], np.arange(len(docs)), k1=1.5, b=0.75,
                           method="atire", idf_method="robertson", stemmer=None, stopwords=None)
    ref = BM25Okapi(docs, k1=1.5, b=0.75)
    rows, scores = ours.search([" ".join(q) for q in queries], k=30)
    for qi, q in enumerate(queries):
        full = ref.get_scores(q)
        want = np.lexsort((np.arange(len(docs)), -full))
        want = want[full[want] > 0][:30]
        got = rows[qi][rows[qi] >= 0]
        assert got.tolist() == want.tolist()
        np.testing.assert_allclose(scores[qi, :len(got)], full[want], atol=1e-5)
        np.testing.assert_allclose(ours.score(" ".join(q), np.arange(len(docs))), full, atol=1e-5)


def test_build_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="got 2 texts but rows of shape \\(3,\\)"):
        BM25Index.build(["a", "b"], np.arange(3))
    with pytest.raises(ValueError, match="rows must be distinct"):
        BM25Index.build(["a", "b"], np.array([1, 1]))


@pytest.mark.parametrize("damage", ["no_config", "bad_json", "old_version", "truncated_npy",
                                    "no_rows", "wrong_count"])
def test_damaged_folder_names_the_file_and_the_rebuild(index: BM25Index, tmp_path: Path,
                                                        damage: str) -> None:
    folder = tmp_path / "idx" / "bm25"
    index.save(folder)
    cfg = folder / "bm25.json"
    culprit = {"no_config": cfg, "bad_json": cfg, "old_version": cfg, "wrong_count": folder,
               "truncated_npy": folder, "no_rows": folder}[damage]
    if damage == "no_config":
        cfg.unlink()
    elif damage == "bad_json":
        cfg.write_text("{not json")
    elif damage == "old_version":
        cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "format_version": 0}))
    elif damage == "truncated_npy":
        data = folder / "data.csc.index.npy"
        data.write_bytes(data.read_bytes()[:20])
    elif damage == "no_rows":
        (folder / "rows.npy").unlink()
    else:
        np.save(folder / "rows.npy", np.arange(3))
    with pytest.raises(IndexError_) as err:
        BM25Index.load(folder)
    assert str(err.value).startswith(f"{culprit}: ")
    assert str(err.value).endswith(f"rebuild the index with: pursuit index SOURCE --out {tmp_path / 'idx'}")


@pytest.mark.data
def test_scifact_ndcg_matches_anserini_flat_bm25(shared_data: Path) -> None:
    from pursuit.indexes.datasets.beir import read_beir
    from pursuit.indexes.records import Ranking
    from pursuit.retrievers.evaluation.metrics import evaluate

    ds = read_beir(shared_data / "beir-scifact", "test")
    index = BM25Index.build([d.contents() for d in ds.corpus], np.arange(len(ds.corpus)))
    rows, scores = index.search([q.text for q in ds.queries], k=100)
    rankings = [Ranking.from_scores(q, [(ds.corpus[r].id, float(s))
                                        for r, s in zip(rows[i], scores[i], strict=True) if r >= 0],
                                    pipeline="bm25") for i, q in enumerate(ds.queries)]
    got = evaluate(rankings, ds.qrels, ["nDCG@10", "R@100"]).aggregate
    # Anserini's flat BM25 (k1=0.9, b=0.4) gets 0.6789 / 0.9253.
    assert round(got["nDCG@10"], 4) == 0.6823
    assert round(got["R@100"], 4) == 0.9227
