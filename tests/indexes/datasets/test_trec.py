"""TREC run and qrels files: exact lines, tie handling, error messages, round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pursuit.indexes.datasets.trec import (
    read_qrels,
    read_run,
    read_run_rankings,
    write_qrels,
    write_run,
)
from pursuit.indexes.errors import FormatError
from pursuit.indexes.records import Hit, Provenance, Query, Ranking


def ranking(qid: str, pairs: list[tuple[str, float]]) -> Ranking:
    # Built by hand (not from_scores) so the hit order is exactly as given.
    return Ranking(Query(qid, "text"), tuple(Hit(d, s) for d, s in pairs), Provenance("t"))


def test_write_run_exact_lines(tmp_path: Path) -> None:
    path = write_run([ranking("q1", [("d3", 2.5), ("d1", 0.125)]), ranking("q2", [("d9", -1.0)])],
                     tmp_path / "a.run", "bm25")
    assert path.read_text(encoding="utf-8") == (
        "q1 Q0 d3 1 2.5 bm25\n"
        "q1 Q0 d1 2 0.125 bm25\n"
        "q2 Q0 d9 1 -1.0 bm25\n"
    )


def _below(x: float) -> float:
    """The next float32 below ``x``: the tie step, visible to float32 readers too."""
    return float(np.nextafter(np.float32(x), np.float32(-np.inf)))


def test_ties_are_lowered_by_one_float32_step(tmp_path: Path) -> None:
    path = write_run([ranking("q", [("b", 1.0), ("a", 1.0), ("c", 1.0), ("d", 0.5)])],
                     tmp_path / "t.run", "x")
    run = read_run(path)
    below1 = _below(1.0)
    assert below1 == 1.0 - 2**-24
    assert run == {"q": {"b": 1.0, "a": below1, "c": _below(below1), "d": 0.5}}
    # float32 readers (pytrec_eval) still see three distinct scores.
    assert len({np.float32(v) for v in run["q"].values()}) == 4
    # Re-sorting by score (what trec_eval does) gives back the written order.
    assert sorted(run["q"], key=lambda d: -run["q"][d]) == ["b", "a", "c", "d"]


def test_out_of_order_score_is_capped(tmp_path: Path) -> None:
    path = write_run([ranking("q", [("a", 1.0), ("b", 3.0)])], tmp_path / "t.run", "x")
    assert read_run(path) == {"q": {"a": 1.0, "b": _below(1.0)}}


def test_fixed_digits_ties_step_by_last_digit(tmp_path: Path) -> None:
    # 0.12341 and 0.12339 both print as 0.1234: the second becomes 0.1233.
    path = write_run([ranking("q", [("a", 0.12341), ("b", 0.12339), ("c", 0.1), ("d", -0.00004)])],
                     tmp_path / "t.run", "x", digits=4)
    assert [line.split()[4] for line in path.read_text().splitlines()] == [
        "0.1234", "0.1233", "0.1000", "0.0000"]


def test_write_run_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run tag 'my run' is empty or holds whitespace"):
        write_run([], tmp_path / "x.run", "my run")
    with pytest.raises(ValueError, match="doc id 'd 1' is empty or holds whitespace"):
        write_run([ranking("q", [("d 1", 1.0)])], tmp_path / "x.run", "t")
    with pytest.raises(ValueError, match="query id 'q' has two rankings"):
        write_run([ranking("q", [("a", 1.0)]), ranking("q", [("b", 1.0)])], tmp_path / "x.run", "t")
    with pytest.raises(ValueError, match="score nan is not finite"):
        write_run([ranking("q", [("a", float("nan"))])], tmp_path / "x.run", "t")


def test_read_run_rankings(tmp_path: Path) -> None:
    path = tmp_path / "r.run"
    path.write_text("q1 Q0 a 1 0.5 t\nq1 Q0 b 2 0.9 t\n\nq2 Q0 c 1 1 t\n", encoding="utf-8")
    rankings = read_run_rankings(path, queries={"q1": Query("q1", "tides")})
    assert [(r.query, r.doc_ids(), r.provenance.pipeline) for r in rankings] == [
        (Query("q1", "tides"), ["b", "a"], "r.run"), (Query("q2", ""), ["c"], "r.run")]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("q Q0 a 1 0.5 t\nq Q0 b 2 0.4\n", 2, "expected 6 fields (qid Q0 docid rank score tag), found 5"),
        ("q Q0 a one 0.5 t\n", 1, 'rank "one" is not an integer'),
        ("q Q0 a 1 high t\n", 1, 'score "high" is not a number'),
        ("q Q0 a 1 0.5 t\nq Q0 a 2 0.4 t\n", 2, 'document "a" appears twice for query "q"'),
    ],
)
def test_read_run_errors(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "bad.run"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FormatError) as err:
        read_run(path)
    assert str(err.value) == f"{path}:{line}: {message}"


def test_qrels_round_trip_and_errors(tmp_path: Path) -> None:
    qrels = {"q1": {"d1": 2, "d2": 0}, "q2": {"d1": 1}}
    path = write_qrels(qrels, tmp_path / "qrels.txt")
    assert path.read_text(encoding="utf-8") == "q1 0 d1 2\nq1 0 d2 0\nq2 0 d1 1\n"
    assert read_qrels(path) == qrels
    path.write_text("q1 0 d1 2\nq1 0 d2\n", encoding="utf-8")
    with pytest.raises(FormatError) as err:
        read_qrels(path)
    assert str(err.value) == f"{path}:2: expected 4 fields (qid iteration docid relevance), found 3"
    path.write_text("q1 0 d1 yes\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r'qrels.txt:1: relevance "yes" is not an integer'):
        read_qrels(path)
    path.write_text("q1 0 d1 1\nq1 Q0 d1 1\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"qrels.txt:2: pair \(q1, d1\) is judged twice"):
        read_qrels(path)
    with pytest.raises(FormatError, match="qrels file not found"):
        read_qrels(tmp_path / "missing.txt")


def test_run_readable_by_ir_measures(tmp_path: Path) -> None:
    import ir_measures
    from ir_measures import nDCG

    path = write_run([ranking("q", [("b", 1.0), ("a", 1.0)])], tmp_path / "t.run", "x")
    qrels = write_qrels({"q": {"b": 1}}, tmp_path / "q.txt")
    result = ir_measures.calc_aggregate([nDCG @ 10], ir_measures.read_trec_qrels(str(qrels)),
                                        ir_measures.read_trec_run(str(path)))
    # With the tie broken in ranking order, b (relevant) stays first: nDCG@10 is exactly 1.
    assert result[nDCG @ 10] == 1.0
