"""bench/calibrate_cip.py: InteractComp cases, the policy's histories, pooled thresholds."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

from pursuit.agent.clarify.cip import conformal_threshold, prediction_set
from pursuit.agent.clarify.interpret import Interpretation
from pursuit.agent.llm.contract import ScriptedLLM
from pursuit.indexes.datasets.agent_questions import InteractTask

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def cal() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_calibrate_cip", BENCH / "calibrate_cip.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def task(tid: str, answer: str = "Blue Harbor") -> InteractTask:
    return InteractTask(id=tid, domain="Humanities", question="Which harbour town is it?",
                        answer=answer, context="hidden")


def test_a_proposal_naming_the_gold_answer_is_the_truth(cal: ModuleType) -> None:
    # the question itself and "a harbour town" (only the question's words) are no readings
    llm = ScriptedLLM(['["Red Harbor", "the town of Blue Harbor", "Which harbour town is it?",'
                       ' "a harbour town"]'])
    problem, named = cal.interactcomp_problem(task("7"), llm, 0.1, 4, 0)
    assert named is True
    assert problem.candidates == (Interpretation("I1", "Red Harbor"),
                                  Interpretation("I2", "the town of Blue Harbor"))
    assert problem.truth == "I2" and problem.group == "interactcomp:7"
    assert problem.questions == {"I1": "Are you looking for Red Harbor?",
                                 "I2": "Are you looking for the town of Blue Harbor?"}
    assert problem.replies == {"I1": "no", "I2": "yes"}
    assert problem.answer_prob("I2", "I2") == {"yes": 0.9, "no": pytest.approx(0.1)}
    assert problem.answer_prob("I2", "I1") == {"yes": 0.1, "no": 0.9}


def test_a_missed_gold_answer_joins_the_set_at_a_seeded_position(cal: ModuleType) -> None:
    positions = set()
    for tid in map(str, range(1, 13)):
        reply = '["Red Harbor", "Green Harbor", "Grey Harbor"]'
        problem, named = cal.interactcomp_problem(task(tid), ScriptedLLM([reply]), 0.1, 4, 0)
        again, _ = cal.interactcomp_problem(task(tid), ScriptedLLM([reply]), 0.1, 4, 0)
        assert named is False
        assert (again.candidates, again.truth) == (problem.candidates, problem.truth)
        texts = [c.text for c in problem.candidates]
        assert sorted(texts) == ["Blue Harbor", "Green Harbor", "Grey Harbor", "Red Harbor"]
        truth = next(c for c in problem.candidates if c.id == problem.truth)
        assert truth.text == "Blue Harbor"
        assert [problem.replies[c.id] for c in problem.candidates].count("yes") == 1
        positions.add(texts.index("Blue Harbor"))
    assert len(positions) >= 2  # not always first or last: the scorer's letter bias is no hint


def test_a_task_with_fewer_than_two_informative_readings_is_no_case(cal: ModuleType) -> None:
    # the deployed clarifier proceeds without scoring: nothing to calibrate
    reply = '["Red Harbor", "a harbour town", "Which harbour town is it?"]'
    assert cal.interactcomp_problem(task("5"), ScriptedLLM([reply]), 0.1, 4, 0) == (None, False)


class Weights:
    """A deterministic p(y | h): the first candidate weighs 2, the rest 1; a 'yes' to the
    question naming a candidate multiplies its weight by 9, a 'no' by 0.1."""

    passes = 0

    def probs(self, request: str, history: Sequence[tuple[str, str]],
              cands: Sequence[Interpretation]) -> dict[str, float]:
        self.passes += 1
        w = {c.id: 2.0 if i == 0 else 1.0 for i, c in enumerate(cands)}
        for question, answer in history:
            for c in cands:
                if question == f"Are you looking for {c.text}?":
                    w[c.id] *= 9.0 if answer == "yes" else 0.1
        total = sum(w.values())
        return {y: v / total for y, v in w.items()}


def test_pooled_thresholds_per_dataset_thresholds_and_heldout_coverage(cal: ModuleType) -> None:
    answers = ['["Red Harbor", "Green Harbor"]'] * 8
    cases = [cal.interactcomp_problem(task(str(i)), ScriptedLLM([a]), 0.1, 4, 0)[0]
             for i, a in enumerate(answers)]
    problems = [p for p in cases if p is not None]
    assert len(problems) == 8
    train, heldout = problems[:6], problems[6:]
    runner = cal.Runner(Weights())
    out = cal.calibrate_alpha(runner, train, heldout, 0.2, 1)

    first = [runner.probs(p, ())[p.truth] for p in train]
    assert out["qhat"]["0"] == round(conformal_threshold(first, 0.2), 6)
    assert out["qhat_by_dataset"] == {"interactcomp": {k: out["qhat"][k] for k in ("0", "1")}}
    assert out["n"] == {"0": 6, "1": 6} and out["n_by_dataset"] == {"interactcomp": 6}
    # after one turn every training history holds the policy's question and a truthful reply
    _, _, trail = cal.roll(runner, train, 1, lambda k: 0.0, calibrate=0.2)
    for p, history, asked in trail[1]:
        (question, reply), = history
        assert question == p.questions[asked[0]]
        assert reply == ("yes" if asked[0] == p.truth else "no")
    held = out["heldout"]["interactcomp"]["0"]
    sets = [prediction_set(runner.probs(p, ()), out["qhat"]["0"]) for p in heldout]
    assert held["n"] == 2
    assert held["coverage"] == sum(p.truth in s for p, s in zip(heldout, sets, strict=True)) / 2
    assert held["mean_set_size"] == sum(map(len, sets)) / 2
