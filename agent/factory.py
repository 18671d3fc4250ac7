"""One call from an open index to a ready agent: tools, clarifier, graph and threads.

Example:
    >>> with SearchIndex.open("demo-index") as index:                      # doctest: +SKIP
    ...     session = build_agent(index, llm=load_llm(), threads="threads.sqlite")
    ...     events = list(session.ask("What does functools.cache do?", thread_id="t1"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pursuit.agent.clarify.clarifier import default_clarifier
from pursuit.agent.config import AgentConfig
from pursuit.agent.graph import build_graph, sqlite_checkpointer
from pursuit.agent.llm.contract import LLMClient
from pursuit.agent.nodes import Clarifier
from pursuit.agent.searcher import SearchTools
from pursuit.agent.session import AgentSession
from pursuit.indexes.collection import SearchIndex

__all__ = ["build_agent"]


def build_agent(index: SearchIndex, *, llm: LLMClient, config: AgentConfig | None = None,
                threads: str | Path | None = None,
                clarifier: Clarifier | None | str = "cip") -> AgentSession:
    """An :class:`AgentSession` over ``index``.

    Args:
        index: The open index searched by every sub-question.
        llm: The model that plans, rewrites, answers and synthesises.
        config: Caps and retrieval settings (defaults: :class:`AgentConfig`).
        threads: SQLite file for conversation threads (``None``: kept in memory only).
        clarifier: ``"cip"`` (calibrated C-IP with the committed thresholds), a
            :class:`~pursuit.agent.nodes.Clarifier`, or ``None`` to never ask.
    """
    config = config or AgentConfig()
    tools = SearchTools.over(index, config)
    chosen: Any = clarifier
    if clarifier == "cip":
        chosen = default_clarifier(index, llm, dtype=config.dtype) if config.clarify else None
    checkpointer = sqlite_checkpointer(threads) if threads is not None else None
    graph = build_graph(config, llm=llm, tools=tools, clarifier=chosen,
                        checkpointer=checkpointer)
    return AgentSession(graph)
