"""The C-IP clarifier: when it asks, what it asks, and the graph pausing on it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from pursuit.agent.clarify.cip import Thresholds
from pursuit.agent.clarify.clarifier import OTHER, CIPClarifier, informative
from pursuit.agent.clarify.interpret import Interpretation
from pursuit.agent.llm.contract import ScriptedLLM
from pursuit.indexes.records import Doc, Hit

HITS = [Hit("a", 2.0, Doc("a", "The jaguar is a big cat of the Americas.", title="Jaguar")),
        Hit("c", 1.0, Doc("c", "Jaguar Cars is a British maker of luxury cars.",
                          title="Jaguar Cars"))]
MEANINGS = ["the animal jaguar", "the car maker Jaguar"]


class TableScorer:
    """p(y | history) from a table keyed by the last answer: a stand-in for a model's
    calibrated probabilities that makes the set sizes known exactly."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.seen: list[list[tuple[str, str]]] = []

    def probs(self, question: str, history: Sequence[tuple[str, str]],
              candidates: Sequence[Interpretation]) -> dict[str, float]:
        self.seen.append(list(history))
        key = history[-1][1] if history else ""
        return {c.id: p for c, p in zip(candidates, self.table[key], strict=True)}


def clarifier(table: dict[str, list[float]], qhats: dict[int, float],
              ask_cost: float = 3.0) -> tuple[CIPClarifier, ScriptedLLM, TableScorer]:
    llm = ScriptedLLM(default=json.dumps(MEANINGS))
    scorer = TableScorer(table)
    th = Thresholds(alpha=0.1, model="table", qhats=qhats)
    return (CIPClarifier(llm=llm, scorer=scorer, search=lambda q, d: HITS, thresholds=th,
                         ask_cost=ask_cost), llm, scorer)


def test_two_plausible_meanings_ask_the_most_informative_question() -> None:
    c, llm, _ = clarifier({"": [0.55, 0.45]}, {0: -0.3, 1: -0.3})
    asked = c.decide("jaguar top speed", [], None)
    # A yes/no answer always leaves one meaning; "Which do you mean?" can get "something
    # else" (probability noise/2), which leaves both: the yes/no question wins.
    assert asked == {"question": "Do you mean the animal jaguar?", "options": ["yes", "no"],
                     "interpretations": MEANINGS, "set_size": 2,
                     "expected_log2_size": pytest.approx(0.0)}
    scores = c.questions([Interpretation("I1", MEANINGS[0]), Interpretation("I2", MEANINGS[1])])
    assert scores["Which do you mean?"] == [*MEANINGS, OTHER]
    # The results went to the model as quoted data.
    assert "Jaguar Cars is a British maker" in llm.calls[0][-1]["content"]


def test_a_confident_prediction_set_of_one_does_not_ask() -> None:
    c, _, _ = clarifier({"": [0.9, 0.1]}, {0: -0.3, 1: -0.3})
    assert c.decide("jaguar top speed", [], None) is None


def test_the_answer_enters_the_history_and_ends_the_questions() -> None:
    c, llm, scorer = clarifier({"": [0.55, 0.45], "the animal jaguar": [0.97, 0.03]},
                               {0: -0.3, 1: -0.3})
    done = [{"question": "Which do you mean?", "answer": "the animal jaguar"}]
    assert c.decide("jaguar top speed", done, None) is None
    assert scorer.seen[-1] == [("Which do you mean?", "the animal jaguar")]
    c.decide("jaguar top speed", done, None)
    assert len(llm.calls) == 1  # interpretations are computed once per question


def test_asking_too_expensive_means_no_question() -> None:
    c, _, _ = clarifier({"": [0.55, 0.45]}, {0: -0.3, 1: -0.3}, ask_cost=1e9)
    # Searching cannot shrink the set, so any positive gain still asks: cost only matters
    # relative to searching, which gains nothing here.
    assert c.decide("jaguar top speed", [], None) is not None
    c2, _, _ = clarifier({"": [0.55, 0.45]}, {0: -0.3, 1: 1.0})  # next-turn set is everything
    assert c2.decide("jaguar top speed", [], None) is None


def test_no_interpretations_means_no_question() -> None:
    llm = ScriptedLLM(default="I cannot tell.")
    c = CIPClarifier(llm=llm, scorer=TableScorer({}), search=lambda q, d: HITS,
                     thresholds=Thresholds(alpha=0.1, model="t", qhats={0: -0.3}))
    assert c.decide("jaguar", [], None) is None


def test_graph_pauses_with_the_cip_question(tmp_path: Any) -> None:
    from langgraph.types import Command

    from pursuit.agent.config import AgentConfig
    from pursuit.agent.graph import build_graph, thread
    from pursuit.agent.searcher import SearchTools
    from pursuit.indexes.collection import SearchIndex

    index = SearchIndex.build([h.doc for h in HITS if h.doc], tmp_path / "idx", source="t")
    c, _, _ = clarifier({"": [0.55, 0.45], "no": [0.02, 0.98]},
                        {0: -0.3, 1: -0.3})
    plan = json.dumps({"nodes": [{"id": "n1", "question": "Jaguar Cars top speed"}]})
    llm = ScriptedLLM([plan, '{"queries": []}', "Fast [1].", '{"finish": true}', "Fast [1]."])
    config = AgentConfig(rerank=None)
    graph = build_graph(config, llm=llm, tools=SearchTools.over(index, config), clarifier=c)
    paused = graph.invoke({"question": "jaguar top speed"}, thread("j"))
    assert paused["__interrupt__"][0].value["question"] == "Do you mean the animal jaguar?"
    out = graph.invoke(Command(resume="No"), thread("j"))
    assert out["answer"]["citations"][0]["doc_id"] == "c"
    assert out["clarifications"][0]["answer"] == "no"


def test_readings_that_only_repeat_the_question_do_not_make_it_ambiguous() -> None:
    llm = ScriptedLLM(default=json.dumps(["decorator", "function", "lru_cache", "cache"]))
    c = CIPClarifier(llm=llm, scorer=TableScorer({"": [0.5, 0.5]}), search=lambda q, d: HITS,
                     thresholds=Thresholds(alpha=0.1, model="t", qhats={0: -0.3, 1: -0.3}))
    question = "How do I clear the cache of a function decorated with functools.lru_cache?"
    assert c.candidates(question, None) == []
    assert c.decide(question, [], None) is None
    kept = informative([Interpretation("I1", "the animal jaguar"),
                        Interpretation("I2", "Jaguar")], "jaguar top speed")
    assert [i.id for i in kept] == ["I1"]
