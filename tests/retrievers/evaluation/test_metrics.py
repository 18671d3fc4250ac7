"""evaluate(): exact trec_eval values on a tiny, hand-computed run."""

from __future__ import annotations

import math
from pathlib import Path

import ir_measures
import pytest

from pursuit.indexes.datasets.trec import write_run
from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Query, Ranking
from pursuit.retrievers.evaluation.metrics import DEFAULT_MEASURES, evaluate, run_dict

QRELS = {
    "q1": {"d1": 2, "d2": 1, "d3": 0, "d5": 1},  # d3 judged not relevant
    "q2": {"d9": 1},  # judged, but no ranking is given for it
}


def _ranking(qid: str, scored: list[tuple[str, float]]) -> Ranking:
    return Ranking.from_scores(Query(qid, "text"), scored, pipeline="test")


RUN = [
    _ranking("q1", [("d3", 3.0), ("d1", 2.0), ("d4", 1.0), ("d2", 0.5)]),
    _ranking("q3", [("d1", 1.0)]),  # no judgements: ignored
]


def test_hand_computed_values_per_query_and_means_over_all_judged_queries() -> None:
    result = evaluate(RUN, QRELS)
    # q1 relevances down the ranking: 0, 2, (unjudged) 0, 1; gain = grade, discount log2(r+1).
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    expected_q1 = {
        "nDCG@10": dcg / idcg,
        "R@100": 2 / 3,  # d1, d2 of d1, d2, d5
        "RR@10": 1 / 2,
        "AP": (1 / 2 + 2 / 4) / 3,
    }
    assert tuple(result.aggregate) == DEFAULT_MEASURES
    for name, value in expected_q1.items():
        assert result.per_query[name] == {"q1": pytest.approx(value), "q2": 0.0}
        # trec_eval -c: q2 has no ranking and counts 0; q3 has no judgements and is ignored.
        assert result.aggregate[name] == pytest.approx(value / 2)


def test_rr_cutoff_is_applied() -> None:
    ranking = _ranking("q", [(f"d{i:02d}", 100.0 - i) for i in range(1, 21)])
    result = evaluate([ranking], {"q": {"d11": 1}}, ["RR@10", "RR@20", "RR"])
    assert result.aggregate == {"RR@10": 0.0, "RR@20": pytest.approx(1 / 11),
                                "RR": pytest.approx(1 / 11)}


def test_ties_keep_the_ranking_order() -> None:
    # Ranking lists "a" before "b" (ties by id ascending); trec_eval alone would put "b"
    # first (ties by id descending). The ranking's order is what gets evaluated.
    ranking = _ranking("q", [("a", 1.0), ("b", 1.0)])
    assert ranking.doc_ids() == ["a", "b"]
    result = evaluate([ranking], {"q": {"a": 1}}, ["RR@10", "RR@1", "P@1"])
    assert result.aggregate == {"RR@10": 1.0, "RR@1": 1.0, "P@1": 1.0}
    result = evaluate([ranking], {"q": {"b": 1}}, ["RR@10", "RR@1", "P@1"])
    assert result.aggregate == {"RR@10": 0.5, "RR@1": 0.0, "P@1": 0.0}


def test_equals_trec_eval_on_the_written_run_file(tmp_path: Path) -> None:
    # With distinct scores, pytrec_eval over the written run.trec must agree.
    ranked = _ranking("q1", [("d3", 1.5), ("d2", 1.25), ("d1", 1.0), ("d5", 0.5)])
    path = write_run([ranked], tmp_path / "run.trec", "t")
    from_file = ir_measures.calc_aggregate(
        [ir_measures.parse_measure(m) for m in ("nDCG@10", "AP", "P@1")], {"q1": QRELS["q1"]},
        ir_measures.read_trec_run(str(path)))
    ours = evaluate([ranked], {"q1": QRELS["q1"]}, ["nDCG@10", "AP", "P@1"]).aggregate
    assert ours == {str(m): pytest.approx(v) for m, v in from_file.items()}
    assert ours["AP"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)  # relevant at ranks 2, 3, 4


def test_graded_relevance_threshold_and_single_measure_string() -> None:
    ranking = _ranking("q", [("x", 3.0), ("y", 2.0)])
    qrels = {"q": {"x": 1, "y": 2}}
    assert evaluate([ranking], qrels, "RR(rel=2)@10").aggregate == {"RR(rel=2)@10": 0.5}


def test_empty_ranking_counts_zero() -> None:
    result = evaluate([_ranking("q1", [])], QRELS, ["AP"])
    assert result.per_query == {"AP": {"q1": 0.0, "q2": 0.0}}


def test_unknown_measure_names_valid_ones() -> None:
    with pytest.raises(PursuitError, match=r"unknown measure 'Foo@10'.*nDCG@10, R@100, RR@10"):
        evaluate(RUN, QRELS, ["Foo@10"])


def test_duplicate_query_ids_and_empty_qrels_are_errors() -> None:
    with pytest.raises(PursuitError, match="two rankings for query id 'q1'"):
        evaluate([RUN[0], RUN[0]], QRELS)
    with pytest.raises(PursuitError, match="qrels are empty"):
        evaluate(RUN, {})


def test_run_dict_scores_fall_down_the_ranking_and_keep_first_position() -> None:
    ranking = Ranking(Query("q", "t"), RUN[0].hits + RUN[0].hits[:1], RUN[0].provenance)
    assert run_dict([ranking]) == {"q": {"d3": 4.0, "d1": 3.0, "d4": 2.0, "d2": 1.0}}
