"""BM25Retriever: rankings with provenance, filters (retriever and per query), tombstones,
batched retrieval equal to one-by-one, re-scoring after ``>>``, fetched documents."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from tiny_bm25 import bm25_over, store_with

from pursuit.indexes.docstore import DocStore
from pursuit.indexes.filters import DocFilter
from pursuit.indexes.records import Doc, Query, Ranking
from pursuit.retrievers.bm25 import BM25Retriever
from pursuit.retrievers.pipeline_parser import parse_pipeline

DOCS = [
    Doc("moon", "The moon pulls the tides.", published_at=datetime(2020, 1, 1, tzinfo=UTC),
        metadata={"topic": "astro"}),
    Doc("tides", "Tides and tides: a study of ocean tides.",
        published_at=datetime(2022, 1, 1, tzinfo=UTC), metadata={"topic": "sea"}),
    Doc("rain", "Rain falls on the ocean.", metadata={"topic": "sea"}),
    Doc("cat", "The cat sat.", title="Cats"),
    Doc("twin", "The moon pulls the tides.", published_at=datetime(2021, 1, 1, tzinfo=UTC),
        metadata={"topic": "astro"}),
]


@pytest.fixture
def store(tmp_path: Path) -> DocStore:
    return store_with(DOCS, tmp_path)


@pytest.fixture
def bm25(store: DocStore) -> BM25Retriever:
    return bm25_over(store)


def test_ranking_ids_scores_and_provenance(bm25: BM25Retriever) -> None:
    r = bm25.search("moon tides")
    # "moon" and "twin" tie exactly: Ranking's rule puts the lower doc id first.
    assert r.doc_ids() == ["moon", "twin", "tides"]
    assert r.hits[0].score == r.hits[1].score > r.hits[2].score > 0
    assert (r.provenance.pipeline, r.provenance.index) == ("bm25", "tiny")
    assert all(h.doc is None for h in r)
    np.testing.assert_allclose([h.score for h in r],
                               bm25.index.score("moon tides", np.array([0, 4, 1])), rtol=1e-6)


def test_cutoff_limits_depth_and_names_the_stage(bm25: BM25Retriever) -> None:
    r = (bm25 % 1).search("moon tides")
    assert (r.doc_ids(), r.provenance.pipeline) == (["moon"], "bm25%1")


def test_retriever_filter_applies_before_ranking(store: DocStore, bm25: BM25Retriever) -> None:
    filtered = BM25Retriever(bm25.index, store, filter=DocFilter(metadata={"topic": "sea"}))
    assert filtered.search("moon tides ocean").doc_ids() == ["tides", "rain"]
    dated = BM25Retriever(bm25.index, store, filter=DocFilter(published_before="2021-06-01"))
    assert dated.search("moon tides ocean").doc_ids() == ["moon", "twin"]


def test_per_query_filter_is_anded_with_the_retrievers(store: DocStore, bm25: BM25Retriever) -> None:
    astro = BM25Retriever(bm25.index, store, filter=DocFilter(metadata={"topic": "astro"}))
    q_after = Query("q1", "moon tides", {"filter": DocFilter(published_after="2020-06-01")})
    q_plain = Query("q2", "moon tides")
    q_sea = Query("q3", "moon tides", {"filter": DocFilter(metadata={"topic": "sea"})})
    got = astro.batch([q_after, q_plain, q_sea])
    assert [r.doc_ids() for r in got] == [["twin"], ["moon", "twin"], []]
    assert [r.query.id for r in got] == ["q1", "q2", "q3"]
    # A non-DocFilter value under "filter" is not a filter.
    assert astro.search(Query("q", "moon", {"filter": "topic=sea"})).doc_ids() == ["moon", "twin"]


def test_deleted_documents_are_never_returned(store: DocStore, bm25: BM25Retriever) -> None:
    store.delete(["moon"])
    assert bm25.search("moon tides").doc_ids() == ["twin", "tides"]


def test_batch_equals_one_by_one(bm25: BM25Retriever) -> None:
    texts = ["moon tides", "ocean", "cats", "the", "rain ocean tides"]
    batch = bm25.batch(texts)
    single = [bm25.search(t) for t in texts]
    assert [(r.doc_ids(), r.scores()) for r in batch] == [(r.doc_ids(), r.scores()) for r in single]
    assert [len(r) for r in batch] == [3, 2, 1, 0, 4]


def test_rescoring_candidates_of_another_stage(bm25: BM25Retriever) -> None:
    first = Ranking.from_scores(Query("q", "ocean"), [("cat", 9.0), ("rain", 8.0), ("tides", 7.0)],
                                pipeline="other")
    r = bm25.rerank("ocean", first)
    assert r.doc_ids() == ["rain", "tides", "cat"]
    assert r.hits[2].score == 0.0
    got = bm25.score(Query("q", "ocean"), ["tides", "rain"])
    assert got.dtype == np.float64 and got[1] > got[0] > 0
    assert bm25.score(Query("q", "ocean"), []).shape == (0,)


def test_fetch_docs_attaches_the_stored_documents(store: DocStore, bm25: BM25Retriever) -> None:
    fetching = BM25Retriever(bm25.index, store, fetch_docs=True, k=2)
    r = fetching.search("moon tides")
    assert [h.doc for h in r] == [DOCS[0], DOCS[4]]
    assert r.provenance.pipeline == "bm25%2"


def test_documents_added_after_the_index_was_built(store: DocStore, bm25: BM25Retriever) -> None:
    store.add([Doc("late", "moon moon moon")])
    # Not in the BM25 index yet: never returned, and re-scored as 0.
    assert "late" not in bm25.search("moon").doc_ids()
    assert bm25.score(Query("q", "moon"), ["late", "moon"])[0] == 0.0


class _DepthRecorder(BM25Retriever):
    """BM25 that records the depth of every index search it makes."""

    depths: list[int]

    def _search_rows(self, prepared, members, k, mask):  # type: ignore[no-untyped-def]
        self.depths.append(k)
        return super()._search_rows(prepared, members, k, mask)


def test_an_explicit_k_is_named_even_at_the_default_depth(store: DocStore,
                                                          bm25: BM25Retriever) -> None:
    unset = _DepthRecorder(bm25.index, store)
    unset.depths = []
    assert (unset.name, unset.cutoff, unset.k) == ("bm25", None, 1000)
    assert unset.search("moon tides").doc_ids() == ["moon", "twin", "tides"]
    # no cutoff given: the default depth, capped by the rows the store has
    assert unset.depths == [min(1000, store.n_rows)] == [store.n_rows]

    explicit = BM25Retriever(bm25.index, store, k=1000)
    assert (explicit.name, explicit.cutoff) == ("bm25%1000", 1000)
    assert (explicit % 2000).name == "bm25%1000"  # cutoffs compose: the smaller wins
    assert (explicit % 10).name == "bm25%10"
    assert (unset % 1000).name == "bm25%1000"

    stages = {"bm25": lambda **kw: BM25Retriever(bm25.index, store, **kw)}
    for text in ("bm25%1000", "bm25"):
        assert parse_pipeline(text, stages).name == text
    assert parse_pipeline("bm25%1000", stages).search("moon tides").provenance.pipeline \
        == "bm25%1000"
