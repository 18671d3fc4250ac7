"""InteractComp simulated user and grader: strict reply parsing, no context leak, judge use."""

from __future__ import annotations

import pytest

from pursuit.agent.evaluation.simulator import (
    SimulatedUser,
    exact_match,
    grade_answer,
    names_answer,
    parse_yes_no,
)
from pursuit.agent.llm.contract import LLMError, ScriptedLLM

CONTEXT = "The club was founded in 1900 in Amsterdam and plays in red and white."


@pytest.mark.parametrize(("reply", "expected"), [
    ("yes", "yes"), ("Yes.", "yes"), ("  YES!", "yes"), ("**Yes**, it does.", "yes"),
    ('"yes"', "yes"), ("no", "no"), ("No.", "no"), ("No, it was founded later.", "no"),
    ("NO", "no"), ("I don't know", "unknown"), ("I don’t know.", "unknown"),
    ("i do not know", "unknown"), ("Don't know", "unknown"), ("Unknown.", "unknown"),
    # The upstream harness read these by substring; none of them is an answer.
    ("know", "unknown"), ("nothing", "unknown"), ("noted", "unknown"),
    ("yesterday", "unknown"), ("Nope", "unknown"), ("Yeah", "unknown"),
    ("no idea", "unknown"), ("No-one knows", "unknown"), ("yes/no", "unknown"),
    ("The answer is yes", "unknown"), ("", "unknown"), ("...", "unknown"),
    ("I know it is red", "unknown"),
])
def test_parse_yes_no(reply: str, expected: str) -> None:
    assert parse_yes_no(reply) == expected


def test_simulated_user_sees_context_and_question_only() -> None:
    llm = ScriptedLLM(["Yes, it was founded in 1900 in Amsterdam.", "Noted.", "No"])
    sim = SimulatedUser(llm, CONTEXT)
    answers = [sim.answer("Was it founded before 1950?"), sim.answer("Is it Dutch?"),
               sim.answer("Does it play in blue?")]
    # The agent gets one of three words: the model's wording, which quotes the context,
    # never reaches it.
    assert answers == ["yes", "unknown", "no"]
    assert all("Amsterdam" not in a for a in answers)
    assert sim.unparsed == 1
    assert sim.log[1] == ("Is it Dutch?", "Noted.", "unknown")
    first = llm.calls[0]
    assert [m["role"] for m in first] == ["system", "user"]
    assert CONTEXT in first[1]["content"] and "Was it founded before 1950?" in first[1]["content"]
    assert CONTEXT not in first[0]["content"]
    # Each question is asked afresh: no earlier question rides along.
    assert "Was it founded" not in llm.calls[1][1]["content"]
    assert "exactly one of: yes, no, I don't know" in first[1]["content"]


def test_simulated_user_model_failure_propagates() -> None:
    sim = SimulatedUser(ScriptedLLM([]), CONTEXT)
    with pytest.raises(LLMError, match="scripted model has no reply left for request 1"):
        sim.answer("Is it Dutch?")
    assert sim.log == []


@pytest.mark.parametrize(("gold", "predicted", "expected"), [
    ("The Beatles", "beatles.", True), ("Ilyushin Il-96", "ilyushin il 96", True),
    ("Café de Flore", "cafe de flore", True), ("A Tale", "tale", True),
    ("Ajax", "Ajax Amsterdam", False), ("", "", False), ("Ajax", "", False),
])
def test_exact_match(gold: str, predicted: str, expected: bool) -> None:
    assert exact_match(gold, predicted) is expected


@pytest.mark.parametrize(("gold", "predicted", "expected"), [
    ("Il-96", "It is the Ilyushin Il-96 [2].", True), ("The Beatles", "beatles", True),
    ("Ajax", "Ajax Amsterdam", True), ("Ajax", "Ajaxx", False), ("Il-96", "Il-62", False),
    ("Café de Flore", "the Cafe de Flore, Paris", True), ("de Flore", "Flore de", False),
    ("", "anything", False), ("Ajax", "", False),
])
def test_names_answer(gold: str, predicted: str, expected: bool) -> None:
    assert names_answer(gold, predicted) is expected


def test_grade_answer_exact_match_skips_judge() -> None:
    judge = ScriptedLLM([])
    assert grade_answer(judge, "Which club?", "AFC Ajax", "afc ajax") is True
    assert grade_answer(judge, "Which club?", "AFC Ajax", "  ") is False
    assert judge.calls == []


@pytest.mark.parametrize(("verdict", "expected"), [
    ("Correct", True), ("correct.", True), ("Yes", True), ("Incorrect", False),
    ("incorrect - different club", False), ("No", False), ("It is correct", False),
    ("", False),
])
def test_grade_answer_judge_verdicts(verdict: str, expected: bool) -> None:
    judge = ScriptedLLM([verdict])
    assert grade_answer(judge, "Which club?", "AFC Ajax", "Ajax Amsterdam") is expected
    [call] = judge.calls
    prompt = call[1]["content"]
    assert "Gold answer: AFC Ajax" in prompt and "Predicted answer: Ajax Amsterdam" in prompt
    assert "same entity" in call[0]["content"]
