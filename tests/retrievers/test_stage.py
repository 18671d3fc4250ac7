"""The Stage algebra: exact fused scores, cutoffs, re-scoring, names and batching."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from pursuit.indexes.records import Hit, Query, Ranking
from pursuit.retrievers.stage import (
    RRF,
    Cutoff,
    Retriever,
    ScoreFusion,
    Stage,
    Then,
    Weighted,
    rrf_scores,
)


class FixedRetriever(Retriever):
    """Scores from a table: query text -> doc id -> score. Records every call."""

    def __init__(self, label: str, table: Mapping[str, Mapping[str, float]]) -> None:
        self.label, self.table = label, table
        self.index_name = f"/idx/{label}"
        self.calls: list[tuple[str, str, int | tuple[str, ...]]] = []

    def retrieve(self, query: Query, k: int) -> Ranking:
        self.calls.append(("retrieve", query.text, k))
        scored = self.table.get(query.text, {}).items()
        return Ranking.from_scores(query, scored, pipeline=self.name,
                                   index=self.index_name).top(k)

    def score(self, query: Query, doc_ids: Sequence[str]) -> np.ndarray:
        self.calls.append(("score", query.text, tuple(doc_ids)))
        row = self.table.get(query.text, {})
        return np.array([row.get(d, 0.0) for d in doc_ids], dtype=np.float64)


A_TABLE = {"q": {"d1": 10.0, "d2": 6.0, "d3": 2.0},
           "r": {"d1": 1.0, "d4": 3.0}}
B_TABLE = {"q": {"d2": 0.9, "d3": 0.5, "d4": 0.1},
           "r": {"d4": 0.2, "d5": 0.4}}
C_TABLE = {"q": {"d1": 1.0, "d2": 2.0, "d3": 3.0, "d4": 4.0},
           "r": {"d1": 5.0, "d4": 1.0, "d5": 3.0}}


@pytest.fixture()
def a() -> FixedRetriever:
    return FixedRetriever("a", A_TABLE)


@pytest.fixture()
def b() -> FixedRetriever:
    return FixedRetriever("b", B_TABLE)


@pytest.fixture()
def c() -> FixedRetriever:
    return FixedRetriever("c", C_TABLE)


def _pairs(r: Ranking) -> list[tuple[str, float]]:
    return [(h.doc_id, pytest.approx(h.score)) for h in r]


def test_plain_retriever_search_and_provenance(a: FixedRetriever) -> None:
    r = a.search("q")
    assert r.doc_ids() == ["d1", "d2", "d3"]
    assert (r.provenance.pipeline, r.provenance.index) == ("a", "/idx/a")
    assert r.query == Query("q", "q")


def test_score_fusion_minmax_with_missing_docs_at_member_floor(a, b) -> None:
    r = (a + b).search("q")
    # a normalised: d1 1, d2 0.5, d3 0 (d4 missing -> a's floor 0)
    # b normalised: d2 1, d3 0.5, d4 0 (d1 missing -> b's floor 0)
    assert _pairs(r) == [("d2", 1.5), ("d1", 1.0), ("d3", 0.5), ("d4", 0.0)]
    assert r.provenance.pipeline == "a + b"


def test_weighted_fusion_uses_the_weights(a, b) -> None:
    r = (0.3 * a + 0.7 * b).search("q")
    assert _pairs(r) == [("d2", 0.3 * 0.5 + 0.7), ("d3", 0.35), ("d1", 0.3), ("d4", 0.0)]
    assert r.provenance.pipeline == "0.3*a + 0.7*b"


def test_zscore_and_none_normalisation(a, b) -> None:
    z = (a + b).normalised("zscore").search("q")
    za = (np.array([10.0, 6.0, 2.0]) - 6.0) / np.array([10.0, 6.0, 2.0]).std()
    zb = (np.array([0.9, 0.5, 0.1]) - 0.5) / np.array([0.9, 0.5, 0.1]).std()
    expected = {"d1": za[0] + zb.min(), "d2": za[1] + zb[0], "d3": za[2] + zb[1],
                "d4": za.min() + zb[2]}
    assert z.scores() == pytest.approx(expected)
    raw = (a + b).normalised("none").search("q")
    assert raw.scores() == pytest.approx({"d1": 10.1, "d2": 6.9, "d3": 2.5, "d4": 2.1})
    assert raw.provenance.pipeline == "none(a + b)"


def test_weight_alone_scales_scores(a) -> None:
    r = (2 * a).search("q")
    assert _pairs(r) == [("d1", 20.0), ("d2", 12.0), ("d3", 4.0)]
    assert (a * 2).name == "2*a"


def test_rrf_exact_values(a, b) -> None:
    r = (a | b).search("q")
    # a ranks d1, d2, d3; b ranks d2, d3, d4.
    expected = {"d1": 1 / 61, "d2": 1 / 62 + 1 / 61, "d3": 1 / 63 + 1 / 62, "d4": 1 / 63}
    assert r.scores() == pytest.approx(expected)
    assert r.doc_ids() == ["d2", "d3", "d1", "d4"]
    assert r.provenance.pipeline == "a | b"


def test_cutoff_on_retriever_searches_k_deep(a) -> None:
    r = (a % 2).search("q")
    assert r.doc_ids() == ["d1", "d2"]
    assert a.calls == [("retrieve", "q", 2)]  # asked for 2, not the default 1000
    assert a.k == 1000 and a.name == "a"  # the cutoff made a copy
    assert (a % 2).name == "a%2"
    assert (a % 2 % 5).name == "a%2"


def test_cutoff_on_composite(a, b) -> None:
    stage = (a | b) % 2
    assert isinstance(stage, Cutoff)
    assert stage.search("q").doc_ids() == ["d2", "d3"]
    assert stage.name == "(a | b)%2"


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_cutoff_rejects_non_positive_int(a, bad) -> None:
    with pytest.raises(ValueError, match="cutoff must be a positive integer"):
        a % bad


def test_then_rescores_only_the_candidates(a, c) -> None:
    stage = a % 2 >> c
    r = stage.search("q")
    assert r.doc_ids() == ["d2", "d1"]  # c's scores 2.0, 1.0 over a's top 2
    assert r.provenance.pipeline == "a%2 >> c"
    assert ("score", "q", ("d1", "d2")) in c.calls
    assert not any(call[0] == "retrieve" for call in c.calls)


def test_then_with_cutoff_on_the_right(a, c) -> None:
    assert (a >> c % 1).search("q").doc_ids() == ["d3"]


def test_then_into_fusion_rescores_candidates_in_every_member(a, b, c) -> None:
    r = (a % 2 >> (b + c)).search("q")
    # candidates d1, d2; b: d1 0 (score 0.0), d2 0.9 -> 0, 1; c: d1 1, d2 2 -> 0, 1
    assert _pairs(r) == [("d2", 2.0), ("d1", 0.0)]


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda a, b, c: (a | b) >> c, "(a | b) >> c"),
        (lambda a, b, c: a | b >> c, "a | b >> c"),
        (lambda a, b, c: a % 10 >> c % 3 | b, "a%10 >> c%3 | b"),
        (lambda a, b, c: a >> (b >> c), "a >> (b >> c)"),
        (lambda a, b, c: (a >> b) >> c, "a >> b >> c"),
        (lambda a, b, c: 0.5 * (a + b) + c, "0.5*(a + b) + c"),
        (lambda a, b, c: (a + b) + c, "a + b + c"),
        (lambda a, b, c: a | (b | c), "a | b | c"),
        (lambda a, b, c: (a + b) % 5, "(a + b)%5"),
        (lambda a, b, c: 2 * (a | b), "2*(a | b)"),
        (lambda a, b, c: (a + b).normalised("zscore") + c, "(zscore(a + b)) + c"),
    ],
)
def test_names_print_the_parentheses_precedence_needs(a, b, c, build, name) -> None:
    assert build(a, b, c).name == name


def test_batch_equals_per_query_search(a, b, c) -> None:
    pipelines: list[Stage] = [a, a % 1, a + b, 0.3 * a + 0.7 * b, a | b, (a | b) % 2 >> c,
                              a % 2 >> (b + c), 2 * a, (a + b).normalised("zscore")]
    queries = [Query("1", "q"), Query("2", "r"), Query("3", "nothing")]
    for stage in pipelines:
        batched = stage.batch(queries)
        single = [stage.search(q) for q in queries]
        assert [(x.query, x.hits, x.provenance.pipeline) for x in batched] == \
               [(x.query, x.hits, x.provenance.pipeline) for x in single], stage.name


def test_rerank_given_hits(c) -> None:
    hits = [Hit("d1", 9.0), Hit("d4", 8.0), Hit("d9", 7.0)]
    r = c.rerank("q", hits)
    assert [(h.doc_id, h.score) for h in r] == [("d4", 4.0), ("d1", 1.0), ("d9", 0.0)]
    given = Ranking.from_scores(Query("7", "r"), [("d5", 1.0), ("d1", 0.5)], pipeline="x")
    assert c.rerank(given.query, given).doc_ids() == ["d1", "d5"]


def test_operator_type_errors(a) -> None:
    with pytest.raises(TypeError, match="'>>' needs a Stage on both sides, got int"):
        a >> 3
    with pytest.raises(TypeError, match=r"'\+' needs a Stage on both sides, got float"):
        a + 0.5
    with pytest.raises(ValueError, match="unknown normalisation 'l2'"):
        ScoreFusion([(1.0, a)], "l2")


def test_structure_is_flat_where_it_should_be(a, b, c) -> None:
    fused = 0.2 * a + 0.3 * b + c
    assert isinstance(fused, ScoreFusion)
    assert [(w, s.name) for w, s in fused.members] == [(0.2, "a"), (0.3, "b"), (1.0, "c")]
    rrf = a | b | c
    assert isinstance(rrf, RRF) and len(rrf.members) == 3
    assert isinstance(a >> b, Then) and isinstance(2 * a, Weighted)



def test_weights_survive_a_cutoff_written_after_them(a, b) -> None:
    # Python reads 0.3*a%2 as (0.3*a)%2; the user means weight 0.3 on a%2.
    written = (0.3 * a % 2 + 0.7 * b % 2).search("q")
    meant = (0.3 * (a % 2) + 0.7 * (b % 2)).search("q")
    assert written.scores() == pytest.approx(meant.scores())



def test_rrf_honours_weights(a, b) -> None:
    r = (2 * a | b).search("q")
    assert r.scores()["d1"] == pytest.approx(2 / 61)


def test_weights_print_so_they_read_back_exactly(a) -> None:
    assert (0.123456789 * a).name == "0.123456789*a"
    assert (0.3 * a).name == "0.3*a"
    assert (-1 * (a % 10)).name == "-1*(a%10)"
    assert (0.5 * a % 10).name == "0.5*a%10"


def test_rrf_keeps_a_score_fusion_as_one_member(a, b) -> None:
    fused = (a + b) | a
    assert isinstance(fused, RRF) and len(fused.members) == 2
    assert fused.name == "a + b | a"


def test_rrf_scores_of_finished_rankings_equal_the_operators(a, b) -> None:
    import doctest

    import pursuit.retrievers.stage as stage

    fused = rrf_scores([a.search("q"), b.search("q")])
    assert fused == (a | b).search("q").scores()  # the same formula, the same floats
    assert rrf_scores([a.search("q")], k=0) == {"d1": 1.0, "d2": 1 / 2, "d3": 1 / 3}
    assert doctest.testmod(stage).failed == 0
