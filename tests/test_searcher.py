"""A searcher's pool: the sub-question's own queries lead, the user's question adds context."""

from __future__ import annotations

import pytest
from scripted_agent import CORPUS, SEQUEL, ScriptedAgent

from pursuit.agent.config import AgentConfig
from pursuit.agent.llm import ScriptedLLM
from pursuit.agent.searcher import SearchTools, pool, search_subquestion
from pursuit.agent.state import SearchTask
from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.records import Query, Ranking

QUERY = Query("n1", "Who wrote Dune?")


def ranking(*ids: str) -> Ranking:
    return Ranking.from_scores(QUERY, [(d, float(len(ids) - i)) for i, d in enumerate(ids)],
                               pipeline="t")


def test_pool_fuses_by_reciprocal_rank() -> None:
    fused = pool([ranking("a", "b", "c"), ranking("b", "d")], QUERY, 3)
    assert fused.doc_ids() == ["b", "a", "d"]  # b: 1/62 + 1/61 beats a: 1/61


def test_context_takes_only_the_reserved_places_and_skips_what_the_pool_has() -> None:
    own = [ranking("a", "b", "c", "d", "e")]
    context = ranking("b", "x", "y", "z")
    assert pool(own, QUERY, 4, context, reserve=1).doc_ids() == ["a", "b", "c", "x"]
    assert pool(own, QUERY, 4, context, reserve=2).doc_ids() == ["a", "b", "x", "y"]
    # A short fused ranking still gets no more than the reserved context hits.
    assert pool([ranking("a")], QUERY, 4, context, reserve=1).doc_ids() == ["a", "b"]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> SearchIndex:
    return SearchIndex.build([*CORPUS, SEQUEL], tmp_path_factory.mktemp("s") / "idx",
                             source="fixture")


def run(index: SearchIndex, root: str | None) -> dict:
    config = AgentConfig(rerank=None, clarify=False, pool_k=4, read_k=3, queries_per_node=1)
    llm = ScriptedLLM(default=ScriptedAgent(plan={"nodes": []}, answers="Herbert {Dune}.",
                                            final="x"))
    task: SearchTask = {"node_id": "n1", "question": "Who wrote Dune?", "parents": []}
    if root is not None:
        task["root"] = root
    return search_subquestion(task, llm=llm, tools=SearchTools.over(index, config),
                              config=config)


def test_the_users_question_is_searched_for_context(index: SearchIndex) -> None:
    alone = run(index, None)
    with_root = run(index, "Where was the author of Dune born?")
    assert with_root["queries"][-1] == "Where was the author of Dune born?"
    assert with_root["searches"] == alone["searches"] + 1
    read_alone = [p["doc_id"] for p in alone["passages"]]
    read = [p["doc_id"] for p in with_root["passages"]]
    assert "herbert" not in read_alone and read[-1] == "herbert"
    assert read[:-1] == read_alone[:len(read) - 1]  # the sub-question's own hits still lead


def test_a_root_equal_to_the_sub_question_is_not_searched_twice(index: SearchIndex) -> None:
    got = run(index, "who wrote Dune")
    assert got["searches"] == run(index, None)["searches"]


def answer_with(index: SearchIndex, *replies: str) -> tuple[dict, ScriptedLLM]:
    """One sub-question answered by ``replies`` in order (the rewriter asks for nothing)."""
    config = AgentConfig(rerank=None, clarify=False, pool_k=4, read_k=3, queries_per_node=1)
    llm = ScriptedLLM(replies=['{"queries": []}', *replies])
    task: SearchTask = {"node_id": "n1", "question": "Who wrote Dune?", "parents": []}
    return search_subquestion(task, llm=llm, tools=SearchTools.over(index, config),
                              config=config), llm


def test_a_citation_in_the_answers_place_is_asked_for_once_more_in_words(
        index: SearchIndex) -> None:
    got, llm = answer_with(index, "The author of Dune is [1].", "Frank Herbert wrote Dune [1].")
    assert got["answer"] == "Frank Herbert wrote Dune [1]." and got["asked_again"] is True
    again = llm.calls[-1]
    # The second request continues the first: its passages, the bare reply, then the ask.
    assert again[:-2] == llm.calls[-2]
    assert again[-2] == {"role": "assistant", "content": "The author of Dune is [1]."}
    assert again[-1]["content"].startswith("Your first sentence put a citation where the "
                                           "answer belongs.")
    assert "<question>Who wrote Dune?</question>" in again[-1]["content"]


def test_a_second_bare_citation_is_kept_so_the_sub_question_stays_a_gap(
        index: SearchIndex) -> None:
    got, llm = answer_with(index, "The author is [1].", "The author is [2].")
    assert got["answer"] == "The author is [2]." and got["asked_again"] is True
    assert len(llm.calls) == 3  # rewrite, answer, one more: never a third answer


@pytest.mark.parametrize("reply", ["Frank Herbert wrote Dune [1].",
                                   "The documents do not say who wrote it."])
def test_an_answer_or_an_abstention_is_not_asked_again(index: SearchIndex, reply: str) -> None:
    got, llm = answer_with(index, reply)
    assert got["answer"] == reply and got["asked_again"] is False and len(llm.calls) == 2
