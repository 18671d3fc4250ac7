"""The plan DAG: stable ids, merged duplicates, dropped bad edges, caps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pursuit.agent.state import (
    DraftNode,
    PlanDraft,
    PlanReview,
    merge_plan,
    normalise_question,
    ready_nodes,
    same_question,
)


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


def test_restatements_merge_but_distinct_sub_questions_stay() -> None:
    # A 1.5B planner's plan for a MultiHop-RAG question: n3 restates n1 without "recently".
    lead = ("What executive is known for leading the development of a key Apple device and "
            "recently promoted to oversee a broader range of projects?")
    restated = ("What executive is promoted to oversee a broader range of projects and is "
                "known for leading the development of a key Apple device?")
    narrower = "Which executive is promoted to oversee a broader range of projects?"
    plan = merge_plan({}, [node("n1", lead), node("n2", narrower, "n1"),
                           node("n3", restated, "n2"), node("n4", "Who wrote Dune?", "n3")],
                      round_=1, max_nodes=6)
    assert list(plan) == ["n1", "n2", "n4"]
    assert plan["n2"]["depends_on"] == ["n1"]
    assert plan["n4"]["depends_on"] == ["n1"]  # its parent n3 merged into n1


def test_same_question_is_word_overlap_of_normalised_forms() -> None:
    assert same_question(normalise_question("How do I clear the cache?"),
                         normalise_question("How can I clear the cache?"))
    assert not same_question(normalise_question("Who wrote Dune?"),
                             normalise_question("When was Dune published?"))
    assert same_question("cach clear", "cach clear")
    # 4 of 5 words shared is a restatement; 3 of 5 is another question.
    assert same_question("a b c d", "a b c d e")
    assert not same_question("a b c", "a b c d e")


def test_a_plan_keeps_its_valid_nodes_and_fails_only_when_none_is_valid() -> None:
    run_on = "What is the term for the entities that " + "change their lines, " * 20 + "?"
    got = PlanDraft.model_validate({"nodes": [
        {"id": "n1", "question": "Who wrote Dune?"},
        {"id": "n2", "question": run_on, "depends_on": ["n1"]},
        {"id": "n3", "question": "Where was he born?", "depends_on": ["n1"], "tool": "exec"},
        {"id": "n4", "question": "Where was Frank Herbert born?", "depends_on": ["n1"]}]})
    assert [(n.id, n.depends_on) for n in got.nodes] == [("n1", []), ("n4", ["n1"])]
    review = PlanReview.model_validate({"finish": False, "add": [
        {"id": "bad id!", "question": "Who?"}, {"id": "n5", "question": "When was it filmed?"}]})
    assert [n.id for n in review.add] == ["n5"]
    with pytest.raises(ValidationError, match="at most 300 characters"):
        PlanDraft.model_validate({"nodes": [{"id": "n1", "question": run_on}]})
