"""The agent's data: the plan schema (validated JSON the model writes) and the graph state.

The planner's output is a typed JSON DAG, never code: :class:`PlanDraft` is what the model
may write (``extra="forbid"``, bounded strings, ids of a fixed alphabet), :func:`merge_plan`
turns a draft into plan nodes with stable ids, merging duplicate sub-questions and dropping
edges to unknown nodes and cycles. The graph state is plain data (dicts and lists) so the
checkpointer can store a thread and a later process can resume it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from typing import Annotated, Any, NotRequired, TypedDict

from langgraph.types import Overwrite
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from pursuit.agent.citations import content_words

__all__ = ["AgentState", "DraftNode", "PlanDraft", "PlanReview", "SearchTask", "merge_answers",
           "merge_plan", "new_turn", "normalise_question", "ready_nodes", "same_question"]

_ID = r"^[A-Za-z0-9_-]{1,24}$"
#: Most sub-questions one planner reply may hold (the plan itself is capped by the config).
_MAX_DRAFT = 12


class DraftNode(BaseModel):
    """A sub-question the planner proposes: one entity, time or fact."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID, description="short id, e.g. n1")
    question: str = Field(min_length=3, max_length=300)
    depends_on: list[str] = Field(default_factory=list, max_length=8)


def _valid_nodes(items: Any) -> Any:
    """The drafted nodes that validate, when at least one does (else ``items`` unchanged,
    so the validation error names what is wrong).

    Small models pad a plan with a run-on restatement of the whole question (over the
    length limit) or a node with an unknown key; dropping that node keeps the rest of the
    plan instead of re-asking the model for all of it, which costs minutes on a CPU.
    """
    if not isinstance(items, list):
        return items
    kept = []
    for item in items:
        try:
            kept.append(DraftNode.model_validate(item))
        except ValidationError:
            continue
    return kept[:_MAX_DRAFT] if kept else items


#: Drafted sub-questions, those that do not validate dropped (see :func:`_valid_nodes`).
DraftNodes = Annotated[list[DraftNode], BeforeValidator(_valid_nodes)]


class PlanDraft(BaseModel):
    """The planner's first plan: atomic sub-questions with their dependencies (nodes that
    do not validate are dropped while at least one does)."""

    model_config = ConfigDict(extra="forbid")

    nodes: DraftNodes = Field(min_length=1, max_length=_MAX_DRAFT)


class PlanReview(BaseModel):
    """The planner's verdict after a round: finish, or add sub-questions."""

    model_config = ConfigDict(extra="forbid")

    finish: bool
    add: DraftNodes = Field(default_factory=list, max_length=_MAX_DRAFT)


class SearchTask(TypedDict):
    """What one search node receives: its sub-question, its parents' answers and the
    user's question (``root``), which the searcher also searches for context."""

    node_id: str
    question: str
    parents: list[dict[str, Any]]
    as_of: NotRequired[str | None]
    root: NotRequired[str]


def merge_answers(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """Reducer of parallel search nodes' answers: union by node id."""
    return {**left, **right}


class AgentState(TypedDict, total=False):
    """One thread's state. Every value is plain data.

    A thread holds a conversation: each question asked on it is a turn. Every key but
    ``turns`` belongs to the turn in progress (the latest one) and starts afresh with each
    question (see :func:`new_turn`); ``turns`` keeps the finished ones.

    Keys:
        question: The user's question.
        clarifications: ``[{"question", "answer", "options"}]`` asked and answered so far.
        pending: The clarifying question waiting for the user (``ask`` interrupts on it).
        as_of: ISO date; retrieval never uses documents published at or after it.
        plan: ``{node_id: {"id", "question", "depends_on", "round"}}`` in creation order.
        answers: ``{node_id: sub-answer}`` (see :mod:`pursuit.agent.searcher`).
        round: Planning rounds done.
        tokens: Model tokens spent (prompt + completion), as the model reported them.
        estimated_tokens: Word counts standing in for tokens where the model reported none
            (a streamed final answer from a server that sends no usage).
        finished: The planner said the plan is complete (or a cap ended it).
        answer: The final answer (see :mod:`pursuit.agent.synthesis`).
        timings: ``{phase: seconds}`` summed over the run; ``search`` is wall time (each
            wave of parallel searches counts from its first start to its last end).
        search_spans: ``[start, end]`` wall-clock times of the searches of the wave in
            progress; ``review`` books them into ``timings["search"]`` and clears them.
        turns: The thread's finished turns, oldest first: ``[{"question", "as_of",
            "clarifications", "answer"}]``, one appended by each synthesis.
    """

    question: str
    clarifications: list[dict[str, Any]]
    pending: dict[str, Any] | None
    as_of: str | None
    plan: dict[str, dict[str, Any]]
    answers: Annotated[dict[str, Any], merge_answers]
    round: int
    tokens: Annotated[int, operator.add]
    estimated_tokens: Annotated[int, operator.add]
    finished: bool
    answer: dict[str, Any]
    timings: Annotated[dict[str, float], lambda a, b: {k: a.get(k, 0.0) + b.get(k, 0.0)
                                                      for k in {**a, **b}}]
    search_spans: Annotated[list[list[float]], operator.add]
    turns: Annotated[list[dict[str, Any]], operator.add]


def new_turn(question: str, *, as_of: str | None = None) -> dict[str, Any]:
    """The graph input that starts a turn for ``question``: every key of the turn written.

    A thread's state outlives a run, and the accumulating keys (``answers``, ``tokens``,
    ``estimated_tokens``, ``timings``, ``search_spans``) would add a second question's
    values to the first's; they are written with ``Overwrite``, which their reducers take
    as a replacement. Only ``turns`` is left alone, so the thread keeps its earlier turns.

    Example:
        >>> new_turn("Who wrote Dune?")["tokens"].value
        0
    """
    return {"question": question, "as_of": as_of, "clarifications": [], "pending": None,
            "plan": {}, "answers": Overwrite({}), "round": 0, "tokens": Overwrite(0),
            "estimated_tokens": Overwrite(0), "finished": False, "answer": {},
            "timings": Overwrite({}), "search_spans": Overwrite([])}


def normalise_question(text: str) -> str:
    """The form under which two sub-questions count as duplicates: their stemmed content
    words, sorted ("How do I clear X?" and "How can I clear X?" match); a question of stop
    words only falls back to its lower-cased words."""
    words = content_words(text)
    if words:
        return " ".join(sorted(words))
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def same_question(a: str, b: str, *, overlap: float = 0.8) -> bool:
    """Whether two :func:`normalise_question` forms ask the same thing: equal, or sharing
    at least ``overlap`` of their combined content words (Jaccard), which catches a small
    model's restatements ("What executive is promoted ...?" with or without "recently")."""
    if a == b:
        return True
    left, right = set(a.split()), set(b.split())
    return bool(left and right) and len(left & right) >= overlap * len(left | right)


def merge_plan(plan: Mapping[str, Mapping[str, Any]], draft: list[DraftNode], *, round_: int,
               max_nodes: int) -> dict[str, dict[str, Any]]:
    """``plan`` extended by ``draft``: stable ids, duplicates merged, bad edges dropped.

    A drafted node whose question duplicates an existing one (:func:`same_question`) is
    merged into it (edges to the draft id point at the existing node); a drafted id that is already taken gets a
    fresh one; dependencies on unknown ids, on itself or that would close a cycle are
    dropped (a node is only added after all of its kept parents); nodes beyond
    ``max_nodes`` are dropped.

    Example:
        >>> p = merge_plan({}, [DraftNode(id="a", question="Who wrote Dune?")], round_=1,
        ...                max_nodes=4)
        >>> list(p)
        ['a']
    """
    merged = {k: dict(v) for k, v in plan.items()}
    known = [(normalise_question(v["question"]), k) for k, v in merged.items()]
    alias: dict[str, str] = {}
    for node in _parents_first(draft):
        key = normalise_question(node.question)
        same = next((k for text, k in known if same_question(key, text)), None)
        if same is not None:
            alias[node.id] = same
            continue
        if len(merged) >= max_nodes:
            continue
        new_id = node.id
        n = 2
        while new_id in merged:
            new_id, n = f"{node.id}-{n}", n + 1
        alias[node.id] = new_id
        # Parents must already be in the plan, so the graph stays acyclic by construction.
        parents = []
        for dep in node.depends_on:
            target = alias.get(dep, dep if dep in plan else None)
            if target is not None and target in merged and target not in parents:
                parents.append(target)
        merged[new_id] = {"id": new_id, "question": node.question.strip(),
                          "depends_on": parents, "round": round_}
        known.append((key, new_id))
    return merged


def _parents_first(draft: list[DraftNode]) -> list[DraftNode]:
    """Draft nodes ordered so that parents come before children; a cycle is broken at its
    first node (whose edges into the cycle are then dropped by :func:`merge_plan`)."""
    ids = {n.id for n in draft}
    placed: list[DraftNode] = []
    done: set[str] = set()
    pending = list(draft)
    while pending:
        ready = [n for n in pending if all(d in done or d not in ids or d == n.id
                                           for d in n.depends_on)]
        for node in ready or pending[:1]:
            placed.append(node)
            done.add(node.id)
            pending.remove(node)
    return placed


def ready_nodes(plan: Mapping[str, Mapping[str, Any]], answers: Mapping[str, Any]) -> list[str]:
    """Unanswered nodes whose parents all have answers, in plan order."""
    return [k for k, v in plan.items()
            if k not in answers and all(p in answers for p in v["depends_on"])]
