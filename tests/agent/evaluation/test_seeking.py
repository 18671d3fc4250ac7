"""Information-seeking metrics: exact values and the defined edge cases."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pursuit.agent.evaluation.seeking import evidence_recall_at_k, ise, isr
from pursuit.indexes.datasets.agent_questions import load_multihop_queries


def test_isr_exact() -> None:
    assert isr({"a", "b", "c", "d"}, {"a", "c", "x", "y"}) == 0.5
    assert isr({"a", "b", "c"}, {"a", "b", "c"}) == 1.0
    assert isr({"a", "b", "c"}, {"b"}) == pytest.approx(1 / 3)
    assert isr({"a"}, set()) == 0.0
    assert math.isnan(isr(set(), {"a"}))
    assert math.isnan(isr(set(), set()))


def test_ise_exact() -> None:
    assert ise({"a", "b", "c"}, 2) == 1.5
    assert ise({"a", "b", "c", "d"}, 8) == 0.5
    assert ise(set(), 3) == 0.0
    assert math.isnan(ise({"a"}, 0))
    assert math.isnan(ise(set(), 0))
    with pytest.raises(ValueError, match="actions must be >= 0, got -1"):
        ise({"a"}, -1)


def test_evidence_recall_at_k_exact() -> None:
    ranked = ["u3", "u1", "u1", "u2", "u4"]
    assert evidence_recall_at_k(["u1", "u2"], ranked, 1) == 0.0
    # Duplicate chunks of u1 take positions 2 and 3 but count once.
    assert evidence_recall_at_k(["u1", "u2"], ranked, 3) == 0.5
    assert evidence_recall_at_k(["u1", "u2", "u2"], ranked, 4) == 1.0
    assert evidence_recall_at_k(["u1", "u5", "u6"], ranked, 100) == pytest.approx(1 / 3)
    assert evidence_recall_at_k(["u1"], [], 5) == 0.0
    assert math.isnan(evidence_recall_at_k([], ranked, 5))
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        evidence_recall_at_k(["u1"], ranked, 0)


@pytest.mark.data
def test_evidence_recall_on_multihop_gold(shared_data: Path) -> None:
    queries = load_multihop_queries(shared_data / "multihop-rag")
    first = queries[0]
    urls = [e.url for e in first.evidence]
    # The gold list ranked first recalls everything at k = its length; reversed and cut to
    # one position it recalls one of the three articles.
    assert evidence_recall_at_k(urls, urls, len(urls)) == 1.0
    assert evidence_recall_at_k(urls, urls[::-1], 1) == pytest.approx(1 / 3)
    defined = [evidence_recall_at_k([e.url for e in q.evidence], [], 10) for q in queries]
    assert sum(math.isnan(v) for v in defined) == 95  # the null queries
