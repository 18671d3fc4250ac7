"""The graph's nodes: clarify, ask, plan, search, review and synthesise.

Each node is a method of :class:`Nodes`, which holds the run's tools (model, search tools,
clarifier) and config; nodes read the plain-data state and return updates. Routing
(:meth:`Nodes.route`) dispatches every ready sub-question (parents answered) as a ``Send``
to ``search``, at most ``max_parallel`` at a time, and goes to ``synthesize`` when nothing is
left or a cap is reached. Asking the user is its own node (``ask``) that only calls
``interrupt``, so resuming a thread re-runs nothing that costs model time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from langgraph.config import get_stream_writer
from langgraph.types import Overwrite, Send, interrupt

from pursuit.agent.citations import checked_answer, renumber
from pursuit.agent.config import AgentConfig
from pursuit.agent.coverage import NOTHING_FOUND, PARTLY_FOUND, split_gaps
from pursuit.agent.llm.contract import LLMClient
from pursuit.agent.llm.structured import StructuredOutputError, structured
from pursuit.agent.prompts import (
    plan_prompt,
    review_prompt,
    strip_echo,
    strip_markers,
    synthesis_prompt,
)
from pursuit.agent.searcher import SearchTools, search_subquestion
from pursuit.agent.state import (
    AgentState,
    DraftNode,
    PlanDraft,
    PlanReview,
    SearchTask,
    merge_plan,
    ready_nodes,
)

__all__ = ["Clarifier", "Nodes"]


class Clarifier(Protocol):
    """Decides whether to ask the user a closed question before planning."""

    def decide(self, question: str, clarifications: list[dict[str, Any]],
               as_of: str | None) -> dict[str, Any] | None:
        """``{"question", "options", "interpretations", ...}`` to ask, or ``None`` to proceed."""
        ...


def _emit(event: dict[str, Any]) -> None:
    """Send ``event`` to a ``stream_mode="custom"`` listener, if the run has one."""
    with contextlib.suppress(RuntimeError):  # outside a graph run (direct calls in tests)
        get_stream_writer()(event)


def _timed(phase: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Announce ``phase`` when the node starts and add its duration to the state's timings
    (next to any timings the node reports itself)."""
    def wrap(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        def run(*args: Any) -> dict[str, Any]:
            _emit({"type": "status", "phase": phase})
            started = time.perf_counter()
            out = fn(*args)
            return {**out, "timings": {**out.get("timings", {}),
                                       phase: time.perf_counter() - started}}
        run.__name__ = fn.__name__
        return run
    return wrap


def _book_searches(spans: list[list[float]]) -> dict[str, Any]:
    """The state update that turns the finished wave's search spans into wall time (from
    its first start to its last end) under ``timings["search"]``, and clears the spans."""
    if not spans:
        return {}
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return {"timings": {"search": wall}, "search_spans": Overwrite([])}


@dataclass
class Nodes:
    """The node functions of one compiled graph."""

    llm: LLMClient
    tools: SearchTools
    config: AgentConfig
    clarifier: Clarifier | None = None

    def _as_of(self, state: AgentState) -> str | None:
        """The run's "as of" date: the question's own, else the config's."""
        return state.get("as_of") or self.config.as_of

    @_timed("clarify")
    def clarify(self, state: AgentState) -> dict[str, Any]:
        """Decide whether to ask back (C-IP) or go on to planning."""
        asked = state.get("clarifications", [])
        if (not self.config.clarify or self.clarifier is None
                or len(asked) >= self.config.max_clarifications):
            return {"pending": None}
        decision = self.clarifier.decide(state["question"], list(asked), self._as_of(state))
        return {"pending": decision}

    def ask(self, state: AgentState) -> dict[str, Any]:
        """Pause the thread with the pending closed question; record the user's answer."""
        pending = dict(state["pending"] or {})
        reply = interrupt({"type": "clarify", "question": pending["question"],
                           "options": pending["options"]})
        answer = str(reply.get("answer", "") if isinstance(reply, dict) else reply).strip()
        for option in pending["options"]:  # a click or a typed option counts as that option
            if answer.casefold() == str(option).casefold():
                answer = option
        record = {"question": pending["question"], "options": pending["options"],
                  "answer": answer}
        return {"clarifications": [*state.get("clarifications", []), record], "pending": None}

    @_timed("plan")
    def plan(self, state: AgentState) -> dict[str, Any]:
        """The first plan: a validated DAG of sub-questions (the question itself on failure)."""
        cfg = self.config
        room = min(cfg.plan_nodes, cfg.max_nodes)
        messages = plan_prompt(state["question"], state.get("clarifications", []),
                               self._as_of(state), room)
        tokens = 0
        try:
            got = structured(self.llm, messages, PlanDraft, retries=2, max_tokens=400)
            tokens = got.prompt_tokens + got.completion_tokens
            nodes = got.value.nodes
        except StructuredOutputError:
            nodes = [DraftNode(id="n1", question=state["question"][:300])]
        plan = merge_plan({}, nodes, round_=1, max_nodes=room)
        _emit({"type": "plan", "plan": plan})
        return {"plan": plan, "round": 1, "tokens": tokens, "finished": False}

    def route(self, state: AgentState) -> list[Send] | str:
        """Dispatch ready sub-questions in parallel, or go to synthesis."""
        answers = state.get("answers", {})
        if state.get("tokens", 0) >= self.config.max_tokens:
            return "synthesize"
        ready = ready_nodes(state["plan"], answers)[: self.config.max_parallel]
        if not ready:
            return "synthesize"
        sends = []
        for node_id in ready:
            node = state["plan"][node_id]
            parents = [{k: answers[p][k] for k in ("node_id", "question", "answer")}
                       for p in node["depends_on"]]
            sends.append(Send("search", {"node_id": node_id, "question": node["question"],
                                         "parents": parents, "as_of": self._as_of(state),
                                         "root": state["question"]}))
        return sends

    def search(self, task: SearchTask) -> dict[str, Any]:
        """Answer one sub-question (runs in parallel with its siblings).

        Its span goes to ``search_spans`` rather than its duration to the timings: siblings
        overlap, so their durations would add up to more than the time the wave took.
        """
        # Wall-clock time, not perf_counter: the spans live in the checkpointed state, where
        # a perf_counter reading means nothing to another process.
        started = time.time()
        _emit({"type": "node", "node_id": task["node_id"], "status": "searching"})
        answer = search_subquestion(task, llm=self.llm, tools=self.tools, config=self.config,
                                    as_of=task.get("as_of"))
        _emit({"type": "sources", "node_id": task["node_id"], "passages": answer["passages"]})
        _emit({"type": "node", "node_id": task["node_id"], "status": "done",
               "answer": answer["answer"], "searches": answer["searches"]})
        return {"answers": {task["node_id"]: answer}, "tokens": answer["tokens"],
                "search_spans": [[started, time.time()]]}

    @_timed("review")
    def review(self, state: AgentState) -> dict[str, Any]:
        """Extend the plan or finish, once every dispatched sub-question is answered.

        It runs once after each wave of searches, so it books the wave's wall time.
        """
        booked = _book_searches(state.get("search_spans", []))
        out = self._review(state)
        return {**out, **booked}

    def _review(self, state: AgentState) -> dict[str, Any]:
        cfg, plan, answers = self.config, state["plan"], state.get("answers", {})
        if ready_nodes(plan, answers):
            return {}  # more of the current plan to run first
        room = cfg.max_nodes - len(plan)
        if (state.get("finished") or state.get("round", 1) >= cfg.max_rounds or room <= 0
                or state.get("tokens", 0) >= cfg.max_tokens):
            return {"finished": True}
        ordered = [answers[k] for k in plan if k in answers]
        try:
            got = structured(self.llm, review_prompt(state["question"], ordered, room),
                             PlanReview, retries=1, max_tokens=300)
        except StructuredOutputError:
            return {"finished": True}
        tokens = got.prompt_tokens + got.completion_tokens
        review = got.value
        merged = merge_plan(plan, review.add, round_=state.get("round", 1) + 1,
                            max_nodes=cfg.max_nodes)
        grew = len(merged) > len(plan)
        if grew:
            _emit({"type": "plan", "plan": merged})
        return {"plan": merged, "round": state.get("round", 1) + 1, "tokens": tokens,
                "finished": review.finish or not grew}

    @_timed("synthesize")
    def synthesize(self, state: AgentState) -> dict[str, Any]:
        """The final answer with global citations, checked against the document store.

        Sub-answers that abstain are gaps (:mod:`pursuit.agent.coverage`): the model sees
        their questions only, the answer opens with :data:`PARTLY_FOUND` and lists them
        under ``gaps``, and with nothing cited left the answer is :data:`NOTHING_FOUND`,
        written without the model.
        """
        plan, answers = state["plan"], state.get("answers", {})
        answered, gaps = split_gaps([answers[k] for k in plan if k in answers])
        notes, sources = renumber(answered)
        if not sources:
            _emit({"type": "token", "text": NOTHING_FOUND})
            return self._finish(state, {**checked_answer(NOTHING_FOUND, [], None), "gaps": gaps})
        messages = synthesis_prompt(state["question"], notes, gaps,
                                    state.get("clarifications", []), self._as_of(state))
        lead = f"{PARTLY_FOUND} " if gaps else ""
        if lead:
            _emit({"type": "token", "text": lead})
        pieces = []
        stream = self.llm.stream(messages, max_tokens=self.config.answer_tokens * 2)
        for piece in stream:
            pieces.append(piece)
            _emit({"type": "token", "text": piece})
        raw = "".join(pieces)
        text = lead + strip_echo(strip_markers(raw))
        out = self._finish(state, {**checked_answer(text, sources, self.tools.store),
                                   "gaps": gaps})
        if stream.reported_tokens is not None:
            return {**out, "tokens": stream.reported_tokens}
        # The model sent no counts with its stream: words stand in for tokens, kept apart.
        words = sum(len(m["content"].split()) for m in messages) + len(raw.split())
        return {**out, "estimated_tokens": words}

    def _finish(self, state: AgentState, answer: dict[str, Any]) -> dict[str, Any]:
        """The update that ends a turn: its answer, and the turn added to the thread's."""
        turn = {"question": state["question"], "as_of": self._as_of(state),
                "clarifications": list(state.get("clarifications", [])), "answer": answer}
        return {"answer": answer, "turns": [turn]}
