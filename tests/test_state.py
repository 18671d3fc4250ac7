"""The plan DAG: stable ids, merged duplicates, dropped bad edges, caps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pursuit.agent.state import DraftNode, PlanDraft, merge_plan, ready_nodes


def node(id_: str, question: str, *deps: str) -> DraftNode:
    return DraftNode(id=id_, question=question, depends_on=list(deps))


def test_parents_first_duplicates_merged_cycles_and_unknown_edges_dropped() -> None:
    draft = [node("b", "Where was he born?", "a"), node("a", "Who wrote Dune?"),
             node("c", "who WROTE dune", "c"), node("d", "How can I clear the cache?", "zz"),
             node("e", "How do I clear the cache?", "b"),
             node("x", "First of a cycle", "y"), node("y", "Second of a cycle", "x")]
    plan = merge_plan({}, draft, round_=1, max_nodes=10)
    assert list(plan) == ["a", "d", "b", "x", "y"]  # parents before children
    assert plan["b"]["depends_on"] == ["a"]
    assert plan["d"]["depends_on"] == []          # "zz" does not exist
    assert plan["x"]["depends_on"] == [] and plan["y"]["depends_on"] == ["x"]
    assert ready_nodes(plan, {}) == ["a", "d", "x"]
    assert ready_nodes(plan, {"a": {}, "x": {}}) == ["d", "b", "y"]


def test_extension_keeps_ids_renames_collisions_and_caps_nodes() -> None:
    plan = merge_plan({}, [node("n1", "Who wrote Dune?")], round_=1, max_nodes=3)
    grown = merge_plan(plan, [node("n1", "When was Dune published?"),
                              node("n5", "Which company printed it first?", "n1"),
                              node("n2", "Who wrote Dune"), node("n6", "Sixth", "n5")],
                       round_=2, max_nodes=3)
    # "n2" duplicates n1; "n6" comes after its parent n5 and is over the cap.
    assert list(grown) == ["n1", "n1-2", "n5"]
    assert grown["n1-2"] == {"id": "n1-2", "question": "When was Dune published?",
                             "depends_on": [], "round": 2}
    assert grown["n5"]["depends_on"] == ["n1-2"]  # the draft's own "n1", renamed


def test_the_schema_refuses_extra_fields_and_bad_ids() -> None:
    with pytest.raises(ValidationError):
        PlanDraft.model_validate({"nodes": [{"id": "n1", "question": "Who?", "tool": "exec"}]})
    with pytest.raises(ValidationError):
        PlanDraft.model_validate({"nodes": [{"id": "n 1; rm -rf", "question": "Who wrote it?"}]})
    with pytest.raises(ValidationError):
        PlanDraft.model_validate({"nodes": []})
