"""Which sub-answers are gaps: the abstention detector the agent and its evaluation share."""

from __future__ import annotations

import pytest

from pursuit.agent.coverage import abstains, first_sentence, split_gaps, states_nothing


@pytest.mark.parametrize(("text", "expected"), [
    ("The documents do not say.", True),
    ("The documents don't say when Gemini Ultra launches [1].", True),
    ("The passages do not mention the company's headquarters.", True),
    ("It cannot be determined from the passages.", True),
    ("Insufficient information.", True),
    ("I could not find documents that answer this question.", True),
    ("There is no information about his university.", True),
    # a finding first, a caveat after it: an answer, not an abstention
    ("Gemini Ultra launches in January [1]. The documents do not say more.", False),
    ("Yes, both reports say so [1].", False),
    ("The sayings of the documents were not unknown.", False),
    ("", False),
])
def test_abstains_reads_the_first_sentence(text: str, expected: bool) -> None:
    assert abstains(text) is expected


def test_first_sentence_keeps_a_single_sentence_whole() -> None:
    assert first_sentence("No full stop here") == "No full stop here"
    assert first_sentence("One [1]. Two.") == "One [1]."


@pytest.mark.parametrize(("text", "expected"), [
    ("The name of the city where it has its headquarters is [1].", True),
    ("The term for them is: [2, 3]. See also [1].", True),
    ("[1].", True),
    ("The city is Tokyo [1].", False),
    ("Yes [1].", False),
    ("Sportsbooks are [1] the ones that adjust lines [2].", False),  # it names them
])
def test_states_nothing_spots_a_citation_in_the_answers_place(text: str, expected: bool) -> None:
    assert states_nothing(text) is expected


def test_split_gaps_keeps_plan_order() -> None:
    answers = [{"question": "q1", "answer": "Herbert wrote it [1]."},
               {"question": "q2", "answer": "The documents do not say where he studied."},
               {"question": "q3", "answer": "In 1965 [2]."},
               {"question": "q4", "answer": "The passages don't specify the year."},
               {"question": "q5", "answer": "The city where he studied is [3]."}]
    answered, gaps = split_gaps(answers)
    assert [a["question"] for a in answered] == ["q1", "q3"]
    assert gaps == ["q2", "q4", "q5"]
