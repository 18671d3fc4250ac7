"""Runs of the agent as a stream of typed events: what the terminal and the web chat show.

:class:`AgentSession` owns one compiled graph and turns a run into events, in order:

    {"type": "status", "phase"}                      a phase began (clarify, plan, review, ...)
    {"type": "plan", "plan"}                         the sub-question graph, each time it grows
    {"type": "node", "node_id", "status", ...}       a sub-question started / finished
    {"type": "sources", "node_id", "passages"}       the passages a sub-question read
    {"type": "token", "text"}                        a piece of the final answer
    {"type": "clarify", "question", "options"}       the run paused for the user
    {"type": "answer", "answer", "plan", "timings", "tokens", "estimated_tokens",
     "clarifications"}
    {"type": "done", "thread_id", "paused"}          always last

A paused thread is resumed with :meth:`AgentSession.resume` on the same thread id; with a
SQLite checkpointer that also works after the process restarted.

Example:
    >>> session = AgentSession(graph)                                    # doctest: +SKIP
    >>> for event in session.ask("Who wrote Dune?", thread_id="t1"):    # doctest: +SKIP
    ...     print(event["type"])
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langgraph.types import Command

from pursuit.agent.graph import thread
from pursuit.agent.state import new_turn

__all__ = ["AgentSession"]

class AgentSession:
    """Ask, resume and read threads of one compiled agent graph.

    Args:
        graph: A graph from :func:`~pursuit.agent.graph.build_graph`.
    """

    def __init__(self, graph: Any) -> None:
        self.graph = graph

    def ask(self, question: str, *, thread_id: str, as_of: str | None = None) -> Iterator[dict[str, Any]]:
        """Start a turn for ``question`` on ``thread_id`` and yield its events.

        A thread used before gets a new turn: plan, sub-answers, timings, token counts and
        clarifications start afresh (a question still pending from an earlier turn is
        dropped); the earlier turns stay in the thread (see :meth:`history`).
        """
        if not question.strip():
            raise ValueError("the question is empty; type what you want to know")
        yield from self._run(new_turn(question.strip(), as_of=as_of), thread_id)

    def resume(self, answer: str, *, thread_id: str) -> Iterator[dict[str, Any]]:
        """Answer the pending clarifying question of ``thread_id`` and continue its run."""
        if not self.pending(thread_id):
            raise ValueError(f"thread {thread_id!r} is not waiting for an answer")
        yield from self._run(Command(resume={"answer": answer}), thread_id)

    def pending(self, thread_id: str) -> dict[str, Any] | None:
        """The clarifying question ``thread_id`` waits on, if any."""
        snapshot = self.graph.get_state(thread(thread_id))
        for item in snapshot.interrupts:
            return dict(item.value)
        return None

    def history(self, thread_id: str) -> dict[str, Any]:
        """A thread's saved state as plain data (empty when the thread is unknown).

        The keys of :class:`~pursuit.agent.state.AgentState` describe the latest turn, plus
        ``turns``: every finished turn's question, clarifications and answer, oldest first;
        ``pending`` is the clarifying question the thread waits on, if any.
        """
        snapshot = self.graph.get_state(thread(thread_id))
        values = dict(snapshot.values or {})
        values["pending"] = self.pending(thread_id)
        return values

    def _run(self, payload: Any, thread_id: str) -> Iterator[dict[str, Any]]:
        config = thread(thread_id)
        paused = False
        for mode, chunk in self.graph.stream(payload, config, stream_mode=["updates", "custom"]):
            if mode == "custom":
                yield dict(chunk)
                continue
            for node, update in chunk.items():
                if node == "__interrupt__":
                    paused = True
                    for item in update:
                        yield {"type": "clarify", **dict(item.value)}
        if not paused:
            values = self.graph.get_state(config).values
            yield {"type": "answer", "answer": values.get("answer", {}),
                   "plan": values.get("plan", {}), "timings": values.get("timings", {}),
                   "tokens": values.get("tokens", 0),
                   "estimated_tokens": values.get("estimated_tokens", 0),
                   "clarifications": values.get("clarifications", [])}
        yield {"type": "done", "thread_id": thread_id, "paused": paused}
