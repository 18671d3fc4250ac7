"""DenseRetriever over a tiny corpus with the keyword encoder: exact, hand-computed rankings."""

from __future__ import annotations

import numpy as np
import pytest

from pursuit.indexes.docstore import DocStore
from pursuit.indexes.errors import IndexError_
from pursuit.indexes.filters import DocFilter, as_utc
from pursuit.indexes.records import Doc, Hit, Query
from pursuit.indexes.vectors.store import FaissIndex
from pursuit.retrievers.dense import DenseRetriever
from pursuit.retrievers.encoders import KeywordEncoder

VOCAB = ["tide", "moon", "sun", "ocean", "rain"]
DOCS = [
    Doc("d1", "tide moon", metadata={"lang": "en"}, published_at=as_utc("2023-01-05")),
    Doc("d2", "moon moon sun", metadata={"lang": "fr"}, published_at=as_utc("2023-03-01")),
    Doc("d3", "ocean tide tide", metadata={"lang": "en"}, published_at=as_utc("2023-06-01")),
    Doc("d4", "rain", metadata={"lang": "en"}),
    Doc("d5", "sun ocean", metadata={"lang": "fr"}),
]
S = 2 / np.sqrt(10)  # cos(moon tide, moon moon sun) == cos(moon tide, ocean tide tide)


@pytest.fixture
def parts(tmp_path):
    store = DocStore.create(tmp_path / "docs.sqlite")
    rows = store.add(DOCS)
    encoder = KeywordEncoder(VOCAB)
    index = FaissIndex(encoder.dim, factory="Flat")
    index.add(encoder.encode_document([d.contents() for d in DOCS]), rows)
    yield index, encoder, store
    store.close()


def test_exact_ranking_with_ties_broken_by_id(parts):
    dense = DenseRetriever(*parts, index_name="tiny")
    ranking = dense.search("Moon tide?")
    assert ranking.doc_ids() == ["d1", "d2", "d3", "d4", "d5"]
    assert [h.score for h in ranking] == pytest.approx([1.0, S, S, 0.0, 0.0], abs=1e-6)
    assert (ranking.provenance.pipeline, ranking.provenance.index) == ("dense", "tiny")
    assert dense.search("sun").doc_ids() == ["d5", "d2", "d1", "d3", "d4"]


def test_batch_cutoff_and_single_queries_agree(parts):
    # Cut-offs chosen where no tie straddles the cut: which of several equal scores makes
    # the cut is up to the vector index; within the list, ties are ordered by id.
    dense = DenseRetriever(*parts) % 3
    assert dense.name == "dense%3"
    batch = dense.batch(["moon tide", "sun ocean"])
    assert [r.doc_ids() for r in batch] == [["d1", "d2", "d3"], ["d5", "d2", "d3"]]
    assert [r.doc_ids() for r in batch] == [dense.search(q).doc_ids()
                                           for q in ["moon tide", "sun ocean"]]


def test_retriever_and_query_filters_are_anded(parts):
    english = DenseRetriever(*parts, filter=DocFilter(metadata={"lang": "en"}))
    assert english.search("moon tide").doc_ids() == ["d1", "d3", "d4"]
    early = Query("q1", "moon tide", metadata={"filter": DocFilter(published_before="2023-05-01")})
    plain = Query("q2", "moon tide")
    got = english.batch([early, plain])
    assert [r.doc_ids() for r in got] == [["d1"], ["d1", "d3", "d4"]]
    both = DenseRetriever(*parts).batch([early, plain])
    assert [r.doc_ids() for r in both] == [["d1", "d2"], ["d1", "d2", "d3", "d4", "d5"]]


def test_deleted_documents_are_never_returned(parts):
    index, encoder, store = parts
    store.delete(["d1"])  # the vector stays in the index; the store's tombstone hides it
    assert DenseRetriever(index, encoder, store).search("moon tide").doc_ids() == [
        "d2", "d3", "d4", "d5"]


def test_score_and_rerank_use_stored_vectors(parts):
    dense = DenseRetriever(*parts)
    scores = dense.score(Query("q", "moon tide"), ["d5", "d3", "d1"])
    assert scores.tolist() == pytest.approx([0.0, S, 1.0], abs=1e-6)
    reranked = dense.rerank("sun", [Hit("d1", 9.0), Hit("d2", 8.0), Hit("d5", 7.0)])
    assert reranked.doc_ids() == ["d5", "d2", "d1"]
    assert dense.score(Query("q", "sun"), []).shape == (0,)


def test_fetch_docs_attaches_documents(parts):
    ranking = DenseRetriever(*parts, fetch_docs=True, k=3).search("moon tide")
    assert [h.doc.text if h.doc else None for h in ranking] == [
        "tide moon", "moon moon sun", "ocean tide tide"]


def test_hnsw_and_saved_index_give_the_same_ranking(parts, tmp_path):
    index, encoder, store = parts
    index.save(tmp_path / "dense")
    hnsw = FaissIndex.load(tmp_path / "dense", factory="HNSW32")
    for vectors in (FaissIndex.load(tmp_path / "dense"), hnsw):
        assert DenseRetriever(vectors, encoder, store).search("moon tide").doc_ids() == [
            "d1", "d2", "d3", "d4", "d5"]


def test_encoder_of_another_dimension_is_refused(parts):
    index, _, store = parts
    with pytest.raises(IndexError_, match=r"the encoder keyword:tide,moon makes 2-d vectors but "
                                          r"the vector index holds 5-d ones"):
        DenseRetriever(index, KeywordEncoder(["tide", "moon"]), store)
