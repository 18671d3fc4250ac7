"""A searcher's pool: the sub-question's own queries lead, the user's question adds context."""

from __future__ import annotations

import pytest
from scripted_agent import CORPUS, SEQUEL, ScriptedAgent

from pursuit.agent.config import AgentConfig
from pursuit.agent.coverage import is_gap
from pursuit.agent.extract import grounded_span, shown_parts
from pursuit.agent.llm.contract import ScriptedLLM
from pursuit.agent.prompts import EXTRACTOR
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


def answer_with(index: SearchIndex, first: str, words: str = "") -> tuple[dict, ScriptedLLM]:
    """One sub-question answered ``first``; a request for a passage's words gets ``words``."""
    config = AgentConfig(rerank=None, clarify=False, pool_k=4, read_k=3, queries_per_node=1)
    llm = ScriptedLLM(replies=['{"queries": []}', first, words])
    task: SearchTask = {"node_id": "n1", "question": "Who wrote Dune?", "parents": []}
    return search_subquestion(task, llm=llm, tools=SearchTools.over(index, config),
                              config=config), llm


def test_a_citation_in_the_answers_place_is_filled_with_the_passages_words(
        index: SearchIndex) -> None:
    got, llm = answer_with(index, "The author of Dune is [2]. It appeared in 1965 [1].",
                           '"Frank Herbert".')
    assert got["answer"] == "The author of Dune is Frank Herbert [2]. It appeared in 1965 [1]."
    assert got["bare_citation"] is True
    asked = llm.calls[-1]
    assert asked[0]["content"] == EXTRACTOR
    second = got["passages"][1]  # the cited passage alone, then the sub-question
    assert second["published_at"].startswith("2024-06-01")
    assert asked[1]["content"] == (f'<passage title="{second["title"]}" published='
                                   f'"June 1, 2024">{second["text"]}'
                                   "</passage>\n<question>Who wrote Dune?</question>")
    assert 'published="January 1, 2020"' in llm.calls[1][1]["content"]  # the answerer too


@pytest.mark.parametrize("words", ["January 1, 2020", "2020-01-01"])
def test_a_bare_citation_can_be_filled_from_the_publication_day(
        index: SearchIndex, words: str) -> None:
    got, _ = answer_with(index, "The day it was published is [1].", words)
    assert got["passages"][0]["published_at"][:10] == "2020-01-01"  # in no passage's text
    assert got["answer"] == f"The day it was published is {words} [1]."
    assert not is_gap(got["answer"])


def test_the_extractor_is_shown_title_day_and_text_each_on_its_own() -> None:
    passage = {"n": 1, "title": "Odds roundup", "published_at": "2023-10-01T09:00:00+00:00",
               "text": "Sportsbooks move their lines."}
    assert shown_parts(passage) == (("Odds roundup", 12), ("October 1, 2023", 12),
                                    ("2023-10-01", 12), ("Sportsbooks move their lines.", 12))
    assert shown_parts({**passage, "title": "", "published_at": None}) == (
        ("Sportsbooks move their lines.", 12),)
    assert shown_parts({**passage, "published_at": "soon"}) == (
        ("Odds roundup", 12), ("Sportsbooks move their lines.", 12))  # an unreadable day: none
    long_title = ("David Benavidez vs. Demetrius Andrade fight predictions, odds, undercard, "
                  "expert picks, start time, preview")  # 14 words: quoted whole, it is a name
    (title, cap), *_ = shown_parts({**passage, "title": long_title})
    assert cap == 14 and grounded_span(long_title, title, cap) == long_title
    assert grounded_span(long_title, long_title) is None  # too long for a span of text


def test_a_span_may_not_straddle_the_title_and_the_text(index: SearchIndex) -> None:
    got, _ = answer_with(index, "The sequel is [2].", "Dune Messiah Dune Messiah")
    assert got["passages"][1]["title"] == "Dune Messiah"  # its text opens "Dune Messiah, ..."
    assert got["answer"] == "The sequel is [2]."  # a title-then-text run is not a quote


@pytest.mark.parametrize("words", ["Isaac Asimov", "NONE", ""])
def test_words_the_passage_lacks_leave_the_sentence_bare_so_it_stays_a_gap(
        index: SearchIndex, words: str) -> None:
    got, llm = answer_with(index, "The author is [1].", words)
    assert got["answer"] == "The author is [1]." and got["bare_citation"] is True
    assert is_gap(got["answer"]) and len(llm.calls) == 3  # rewrite, answer, words: no more


@pytest.mark.parametrize("reply", ["Frank Herbert wrote Dune [1].",
                                   "The documents do not say who wrote it."])
def test_an_answer_or_an_abstention_asks_for_nothing_more(index: SearchIndex, reply: str) -> None:
    got, llm = answer_with(index, reply)
    assert got["answer"] == reply and got["bare_citation"] is False and len(llm.calls) == 2


@pytest.mark.parametrize(("reply", "span"), [
    ('"Frank Herbert".', "Frank Herbert"), ("frank  herbert [1]\nIt is him.", "frank herbert"),
    ("Herbert, Frank", None), ("none", None), (" ".join(["word"] * 13), None),
    ("D", None), ("Herb", None), ("1965", "1965")])
def test_grounded_span_takes_only_short_words_found_in_the_passage(reply: str,
                                                                  span: str | None) -> None:
    text = "Dune is a 1965 novel written by Frank Herbert. " + " ".join(["word"] * 13)
    assert grounded_span(reply, text) == span
