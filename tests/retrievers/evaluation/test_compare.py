"""compare(): paired t-tests against a baseline, Holm correction, table and JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pytest
from rich.console import Console
from scipy.stats import t as student_t

from pursuit.indexes.datasets.beir import Dataset
from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Query, Ranking
from pursuit.retrievers.evaluation.compare import compare, holm
from pursuit.retrievers.stage import Retriever

QUERIES = [Query(f"q{i}", f"text {i}") for i in range(1, 5)]
# One relevant document per query; q9 is judged but not a listed query, so it is left out.
QRELS = {f"q{i}": {"rel": 1} for i in range(1, 5)} | {"q9": {"rel": 1}}
DATASET = Dataset(name="toy", corpus=[], queries=QUERIES, qrels=QRELS)


def _run(rel_ranks: Sequence[int | None], name: str) -> list[Ranking]:
    """Rankings that put "rel" at the given rank per query (None: no ranking at all)."""
    out = []
    for q, rank in zip(QUERIES, rel_ranks, strict=True):
        if rank is None:
            continue
        ids = [f"x{j}" for j in range(1, 6)]
        ids.insert(rank - 1, "rel")
        out.append(Ranking.from_scores(q, [(d, 10.0 - i) for i, d in enumerate(ids)],
                                       pipeline=name))
    return out


SYSTEMS = {
    "base": _run([1, 2, 4, 1], "base"),    # RR 1, .5, .25, 1
    "better": _run([1, 1, 1, 1], "better"),  # diffs 0, .5, .75, 0
    "worse": _run([2, 2, 2, 2], "worse"),    # diffs -.5, 0, .25, -.5
    "same": _run([1, 2, 4, 1], "same"),
}


def _two_sided_p(diffs: list[float]) -> float:
    d = np.array(diffs)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return float(2 * student_t.sf(abs(t), len(d) - 1))


def test_holm_hand_computed() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*.005, 3*.01, 2*.03, max(.06, 1*.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([0.02]) == [0.02]
    assert holm([]) == []


def test_paired_t_tests_with_holm_over_the_other_systems() -> None:
    c = compare(SYSTEMS, DATASET, "base", measures=["RR@10"], alpha=0.6)
    assert (c.queries, c.baseline, c.measures) == (4, "base", ("RR@10",))
    rows = {r.system: r.measures["RR@10"] for r in c.rows}
    assert [r.system for r in c.rows] == ["base", "better", "worse", "same"]
    assert rows["base"].mean == pytest.approx(0.6875) and rows["base"].p is None
    assert rows["better"].mean == 1.0 and rows["worse"].mean == 0.5

    p_better = _two_sided_p([0, 0.5, 0.75, 0])  # t = 0.3125 / (0.375 / 2) = 1.667
    p_worse = _two_sided_p([-0.5, 0, 0.25, -0.5])  # t = -1
    assert (rows["better"].p, rows["worse"].p, rows["same"].p) == \
        (pytest.approx(p_better), pytest.approx(p_worse), 1.0)
    # Holm over three: 3*p_better, max(that, 2*p_worse), max(that, 1*1.0)
    assert rows["better"].p_adj == pytest.approx(3 * p_better)
    assert rows["worse"].p_adj == pytest.approx(max(3 * p_better, 2 * p_worse))
    assert rows["same"].p_adj == 1.0
    assert [rows[s].significant for s in ("better", "worse", "same")] == [True, False, False]
    assert [(rows[s].wins, rows[s].ties, rows[s].losses) for s in ("better", "worse", "same")] \
        == [(2, 2, 0), (1, 1, 2), (0, 4, 0)]


def test_bonferroni_and_none() -> None:
    p_better = _two_sided_p([0, 0.5, 0.75, 0])
    bonf = compare(SYSTEMS, DATASET, "base", measures=["RR@10"], correction="bonferroni")
    assert bonf.rows[1].measures["RR@10"].p_adj == pytest.approx(3 * p_better)
    raw = compare(SYSTEMS, DATASET, "base", measures=["RR@10"], correction="none")
    assert raw.rows[1].measures["RR@10"].p_adj == pytest.approx(p_better)


def test_missing_ranking_counts_zero_in_the_pairing() -> None:
    systems = {"base": SYSTEMS["base"], "gappy": _run([1, 2, 4, None], "gappy")}
    row = compare(systems, DATASET, "base", measures=["RR@10"]).rows[1].measures["RR@10"]
    assert row.mean == pytest.approx((1 + 0.5 + 0.25) / 4)
    assert (row.wins, row.ties, row.losses) == (0, 3, 1)
    assert row.p == pytest.approx(_two_sided_p([0, 0, 0, -1]))


class TextRetriever(Retriever):
    """Puts "rel" at the rank given by the last digit of the query text."""

    label = "textual"

    def retrieve(self, query: Query, k: int) -> Ranking:
        return _run_one(query, int(query.text[-1])).top(k)

    def score(self, query: Query, doc_ids: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


def _run_one(query: Query, rank: int) -> Ranking:
    ids = ["a", "b", "c", "d"]
    ids.insert(rank - 1, "rel")
    return Ranking.from_scores(query, [(d, 5.0 - i) for i, d in enumerate(ids)], pipeline="t")


def test_stages_are_run_on_the_dataset_queries() -> None:
    c = compare({"base": SYSTEMS["base"], "stage": TextRetriever() % 3}, DATASET, "base",
                measures=["RR@10", "P@1"])
    stage_row = c.rows[1]
    assert stage_row.pipeline == "textual%3"
    # rel at ranks 1, 2, 3, and 4 (cut off at 3): RR 1, .5, 1/3, 0
    assert stage_row.measures["RR@10"].mean == pytest.approx((1 + 0.5 + 1 / 3) / 4)
    assert stage_row.measures["P@1"].mean == pytest.approx(0.25)


def test_table_and_json() -> None:
    c = compare(SYSTEMS, DATASET, "base", measures=["RR@10", "AP"], alpha=0.6)
    console = Console(record=True, width=200)
    console.print(c.to_table(show_p=True))
    text = " ".join(console.export_text().split())  # the caption wraps
    assert "base (baseline)" in text
    assert f"1.0000† p={3 * _two_sided_p([0, 0.5, 0.75, 0]):.3g} " in text
    assert "2/2/0" in text and "1/1/2" in text
    assert ("† holm-corrected p < 0.6 vs base (paired two-sided t-test over 4 queries, "
            "3 system(s) per measure)") in text
    data = json.loads(json.dumps(c.to_dict()))
    assert data["measures"] == ["RR@10", "AP"] and data["queries"] == 4
    assert data["rows"][0]["measures"]["AP"] == {"mean": pytest.approx(0.6875), "p": None,
                                                 "p_adj": None, "significant": False,
                                                 "wins": 0, "ties": 0, "losses": 0}
    assert data["rows"][1]["measures"]["RR@10"]["significant"] is True


def test_errors() -> None:
    with pytest.raises(PursuitError, match="baseline 'bm25' is not one of the systems: base"):
        compare(SYSTEMS, DATASET, "bm25")
    with pytest.raises(PursuitError, match="unknown correction 'fdr'; choose holm, bonferroni"):
        compare(SYSTEMS, DATASET, "base", correction="fdr")
    empty = Dataset(name="none", corpus=[], queries=[Query("z", "z")], qrels=QRELS)
    with pytest.raises(PursuitError, match="dataset 'none' has no judged query"):
        compare(SYSTEMS, empty, "base")


def test_single_query_runs_no_test() -> None:
    one = Dataset(name="one", corpus=[], queries=QUERIES[:1], qrels=QRELS)
    row = compare(SYSTEMS, one, "base", measures=["RR@10"]).rows[2].measures["RR@10"]
    assert (row.p, row.p_adj, row.significant, row.losses) == (None, None, False, 1)
