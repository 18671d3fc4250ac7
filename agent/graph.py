"""The compiled LangGraph graph: clarify -> plan -> parallel search -> review -> synthesise.

    START -> clarify --(question pending)--> ask -> clarify
                     \\-(none)-> plan -> [search x ready nodes] -> review -> ... -> synthesize -> END

``build_graph`` wires :class:`~pursuit.agent.nodes.Nodes` into a ``StateGraph`` and compiles
it with a checkpointer, so a thread paused by a clarifying question resumes later (in the
same process with :class:`InMemorySaver`, or after a restart with :func:`sqlite_checkpointer`).
Each question on a thread is a turn; start one with :func:`~pursuit.agent.state.new_turn` as
the input, so the thread's earlier turn does not add its counts and sub-answers to it.

Example:
    >>> graph = build_graph(AgentConfig(), llm=llm, tools=SearchTools.over(index, AgentConfig()))
    ...                                                              # doctest: +SKIP
    >>> graph.invoke(new_turn("Who wrote Dune?"), thread("t1"))  # doctest: +SKIP
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from pursuit.agent.config import AgentConfig
from pursuit.agent.llm.contract import LLMClient
from pursuit.agent.nodes import Clarifier, Nodes
from pursuit.agent.searcher import SearchTools
from pursuit.agent.state import AgentState

__all__ = ["build_graph", "sqlite_checkpointer", "thread"]


def thread(thread_id: str) -> dict[str, Any]:
    """The run config that names a conversation thread."""
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": 100}


def sqlite_checkpointer(path: str | Path) -> SqliteSaver:
    """A checkpointer in a SQLite file, so threads survive a process restart."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    return SqliteSaver(conn)


def build_graph(config: AgentConfig, *, llm: LLMClient, tools: SearchTools,
                clarifier: Clarifier | None = None,
                checkpointer: BaseCheckpointSaver[Any] | None = None) -> Any:
    """The agent graph, compiled.

    Args:
        config: Caps and retrieval settings.
        llm: The model that plans, rewrites, answers and synthesises.
        tools: First stage, reranker and document store.
        clarifier: Decides on clarifying questions (``None``: never ask).
        checkpointer: Where threads are kept (default: in memory).
    """
    nodes = Nodes(llm=llm, tools=tools, config=config, clarifier=clarifier)
    graph = StateGraph(AgentState)
    graph.add_node("clarify", nodes.clarify)
    graph.add_node("ask", nodes.ask)
    graph.add_node("plan", nodes.plan)
    graph.add_node("search", nodes.search)  # type: ignore[arg-type]  # fed by Send, not state
    graph.add_node("review", nodes.review)
    graph.add_node("synthesize", nodes.synthesize)
    graph.add_edge(START, "clarify")
    graph.add_conditional_edges("clarify", lambda s: "ask" if s.get("pending") else "plan",
                                ["ask", "plan"])
    graph.add_edge("ask", "clarify")
    graph.add_conditional_edges("plan", nodes.route, ["search", "synthesize"])
    graph.add_edge("search", "review")
    graph.add_conditional_edges("review", nodes.route, ["search", "synthesize"])
    graph.add_edge("synthesize", END)
    return graph.compile(checkpointer=checkpointer or InMemorySaver())
