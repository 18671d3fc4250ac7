"""agent.structured: tolerant JSON extraction, schema hints, and validation with repair turns,
driven by the scripted model."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

from pursuit.agent.llm.contract import ScriptedLLM, system, user
from pursuit.agent.llm.structured import (
    Structured,
    StructuredOutputError,
    extract_json,
    schema_hint,
    structured,
)
from pursuit.indexes.errors import PursuitError


class Step(BaseModel):
    id: int
    question: str
    depends_on: list[int] = []


class Plan(BaseModel):
    goal: str
    steps: list[Step]


class Kind(Enum):
    FACT = "fact"
    LIST = "list"


class Answer(BaseModel):
    n: int
    kind: Kind
    mode: Literal["short", "long"] | None = None
    scores: dict[str, float] = {}


PLAN = {"goal": "tides", "steps": [{"id": 1, "question": "What pulls the ocean?",
                                    "depends_on": []},
                                   {"id": 2, "question": "Why twice a day?", "depends_on": [1]}]}


@pytest.mark.parametrize(("text", "expected"), [
    ('```json\n{"a": 1, "b": [1, 2]}\n```', {"a": 1, "b": [1, 2]}),
    ('Here is the plan:\n```\n[{"x": "y"}]\n```\nLet me know!', [{"x": "y"}]),
    ('Sure. {"answer": "yes", "note": "a {brace} and a ] inside"} Anything else?',
     {"answer": "yes", "note": "a {brace} and a ] inside"}),
    ('{"ids": [1, 2, 3,], "ok": true,}', {"ids": [1, 2, 3], "ok": True}),
    ("{'done': True, 'missing': None, 'bad': False}", {"done": True, "missing": None,
                                                        "bad": False}),
    ('{\u201cname\u201d: \u201cMoon\u201d, "quote": "she said \u201chi\u201d"}',
     {"name": "Moon", "quote": "she said \u201chi\u201d"}),
    ("{'it': 'don\\'t', 'q': 'say \"x\"'}", {"it": "don't", "q": 'say "x"'}),
    ('See [1] and [the docs]. {"k": "True stays a string"}', [1]),
    ('[the docs] then {"k": "True stays a string", "n": -1.5e2}',
     {"k": "True stays a string", "n": -150.0}),
    ('{"text": "line one\nline two"}', {"text": "line one\nline two"}),
])
def test_extract_json_tolerates_model_habits(text: str, expected: object) -> None:
    assert extract_json(text) == expected


def test_extract_json_prefers_the_fenced_block() -> None:
    text = 'Example: {"n": 0}.\n```json\n{"n": 7,}\n```'
    assert extract_json(text) == {"n": 7}


@pytest.mark.parametrize("text", ["", "no json here", "{unclosed: [1, 2", "{'a': nope}",
                                  "[1, 2} mismatched"])
def test_extract_json_fails_clearly(text: str) -> None:
    with pytest.raises(StructuredOutputError) as info:
        extract_json(text)
    assert str(info.value) == (f"the model's reply holds no JSON object or array: {text!r}; "
                               "ask for JSON only (see schema_hint)")
    assert isinstance(info.value, PursuitError)


def test_extract_json_never_runs_the_text(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    attacks = [f"__import__('pathlib').Path({str(target)!r}).touch()",
               f"{{\"a\": __import__('pathlib').Path({str(target)!r}).touch()}}",
               f"[__import__('os').system('touch {target}')]"]
    for text in attacks:
        with pytest.raises(StructuredOutputError):
            extract_json(text)
    assert not target.exists()


def test_schema_hint_names_fields_and_types() -> None:
    assert schema_hint(Plan) == ('{"goal": string, "steps": [{"id": integer, "question": string, '
                                 '"depends_on"?: [integer]}]}')
    assert schema_hint(Answer) == ('{"n": integer, "kind": "fact"|"list", '
                                   '"mode"?: "short"|"long"|null, "scores"?: {string: number}}')


def test_structured_reads_prose_wrapped_nested_json_first_time() -> None:
    reply = 'Here is my plan:\n```json\n' + str(PLAN).replace("'", '"') + "\n```\nDone."
    llm = ScriptedLLM([reply])
    out = structured(llm, [system("Plan."), user("Why are there tides?")], Plan)
    assert out == Structured(Plan.model_validate(PLAN), 1, (reply,),
                             out.prompt_tokens, out.completion_tokens)
    assert out.value.steps[1].depends_on == [1]
    assert (out.prompt_tokens, out.completion_tokens) == (5, len(reply.split()))
    assert len(llm.calls) == 1


def test_structured_repairs_a_wrong_type_on_retry() -> None:
    bad = '{"goal": "tides", "steps": [{"id": "first", "question": "What pulls?"}]}'
    good = '{"goal": "tides", "steps": [{"id": 1, "question": "What pulls?"}]}'
    llm = ScriptedLLM([bad, good])
    out = structured(llm, [user("Plan it.")], Plan, retries=2)
    assert out.attempts == 2 and out.raw == (bad, good)
    assert out.value.steps == [Step(id=1, question="What pulls?")]
    second = llm.calls[1]
    assert second[:2] == [{"role": "user", "content": "Plan it."},
                          {"role": "assistant", "content": bad}]
    assert second[2]["role"] == "user"
    assert second[2]["content"] == (
        "That reply does not fit: steps[0].id: Input should be a valid integer, unable to "
        "parse string as an integer. Answer again with the corrected JSON only, shaped as "
        + schema_hint(Plan))


def test_structured_asks_again_when_there_is_no_json() -> None:
    llm = ScriptedLLM(["I think the answer is five.", "{'n': 5, 'kind': 'fact'}"])
    out = structured(llm, [user("2+3?")], Answer)
    assert out.value == Answer(n=5, kind=Kind.FACT) and out.attempts == 2
    assert llm.calls[1][-1]["content"].startswith(
        "That reply does not fit: it holds no JSON object or array. Answer again")


def test_structured_gives_up_with_the_last_error() -> None:
    llm = ScriptedLLM(['{"n": "x", "kind": "fact"}', '{"n": 1, "kind": "opinion"}',
                       '{"kind": "list", "mode": "medium"}'])
    with pytest.raises(StructuredOutputError) as info:
        structured(llm, [user("2+3?")], Answer, retries=2)
    assert str(info.value) == (
        "scripted gave no valid Answer JSON in 3 attempts; last error: n: Field required; "
        "mode: Input should be 'short' or 'long'")
    assert len(llm.calls) == 3


def test_structured_without_retries_makes_one_request() -> None:
    llm = ScriptedLLM(["nothing"])
    with pytest.raises(StructuredOutputError) as info:
        structured(llm, [user("?")], Answer, retries=0)
    assert str(info.value) == ("scripted gave no valid Answer JSON in 1 attempt; last error: "
                               "it holds no JSON object or array")
