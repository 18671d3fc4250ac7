"""``pursuit ask``: the agent at the terminal, with the plan growing and questions asked back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.prompt import Prompt
from rich.text import Text

from pursuit.agent.clients import load_llm
from pursuit.agent.config import AgentConfig
from pursuit.agent.factory import build_agent
from pursuit.agent.llm import LLMClient
from pursuit.agent.session import AgentSession
from pursuit.indexes.collection import SearchIndex
from pursuit.ui.settings import Settings

__all__ = ["agent_llm", "answer_json", "run_ask"]

_MARK = {"searching": "…", "done": "✓"}


def agent_llm(settings: Settings) -> LLMClient:
    """The agent's model from settings: the HTTP server when ``llm_url`` is set, else
    ``settings.llm`` in this process, in ``settings.dtype``."""
    if settings.llm_url:
        return load_llm(settings.llm_served, base_url=settings.llm_url,
                        api_key=settings.llm_api_key or None)
    return load_llm(settings.llm, dtype=settings.dtype)


def answer_json(question: str, thread_id: str, final: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` document of one answered question.

    ``tokens`` are the counts the model reported; ``estimated_tokens`` are word counts
    standing in where it reported none (a streamed answer from a server without usage).
    """
    answer = final["answer"]
    return {"question": question, "thread_id": thread_id, "answer": answer.get("text", ""),
            "citations": [{"n": c["n"], "doc_id": c["doc_id"], "title": c["title"],
                           "passage": c["text"], "published_at": c.get("published_at")}
                          for c in answer.get("citations", [])],
            "sentences": answer.get("sentences", []),
            "unsupported_sentences": answer.get("unsupported", 0),
            "gaps": answer.get("gaps", []),
            "plan": list(final["plan"].values()), "clarifications": final["clarifications"],
            "timings": {k: round(v, 3) for k, v in final["timings"].items()},
            "tokens": final["tokens"], "estimated_tokens": final["estimated_tokens"]}


def _show(event: dict[str, Any], console: Console, plan: dict[str, Any]) -> None:
    kind = event["type"]
    if kind == "plan":
        for node_id, node in event["plan"].items():
            if node_id not in plan:
                deps = f" (after {', '.join(node['depends_on'])})" if node["depends_on"] else ""
                console.print(Text(f"  plan {node_id}: ", style="cyan") + Text(node["question"])
                              + Text(deps, style="dim"), highlight=False)
        plan.update(event["plan"])
    elif kind == "node":
        n = event.get("searches", 0)
        extra = f" ({n} searches)" if event["status"] == "done" else ""
        console.print(Text(f"  {_MARK.get(event['status'], '?')} {event['node_id']} "
                           f"{event['status']}{extra}", style="dim"), highlight=False)
    elif kind == "status":
        console.print(Text(f"{event['phase']}…", style="bold dim"), highlight=False)


def _drive(session: AgentSession, events: Iterator[dict[str, Any]], thread_id: str,
           console: Console, ask_user: Any) -> dict[str, Any]:
    plan: dict[str, Any] = {}
    while True:
        question: dict[str, Any] | None = None
        final: dict[str, Any] | None = None
        for event in events:
            _show(event, console, plan)
            if event["type"] == "clarify":
                question = event
            elif event["type"] == "answer":
                final = event
        if question is None:
            if final is None:
                raise RuntimeError("the agent stopped without an answer")
            return final
        events = session.resume(ask_user(question), thread_id=thread_id)


def _terminal_question(console: Console) -> Any:
    def ask(event: dict[str, Any]) -> str:
        options = list(event["options"])
        console.print(Text("? ", style="bold yellow") + Text(event["question"]), highlight=False)
        for i, option in enumerate(options, start=1):
            console.print(f"   {i}. {option}", highlight=False)
        reply = Prompt.ask("  your answer (number or text)", console=console)
        return options[int(reply) - 1] if reply.isdigit() and 0 < int(reply) <= len(options) \
            else reply
    return ask


def run_ask(question: str, *, index_dir: Path, settings: Settings, config: AgentConfig,
            thread_id: str | None = None, console: Console, ask_user: Any = None
            ) -> dict[str, Any]:
    """Answer ``question`` over ``index_dir``; returns the ``--json`` document."""
    thread_id = thread_id or uuid.uuid4().hex[:12]
    with SearchIndex.open(index_dir) as index:
        session = build_agent(index, llm=agent_llm(settings), config=config,
                              threads=settings.threads_path)
        events = session.ask(question, thread_id=thread_id, as_of=config.as_of)
        final = _drive(session, events, thread_id, console,
                       ask_user or _terminal_question(console))
    return answer_json(question, thread_id, final)


def print_answer(doc: dict[str, Any], out: Console) -> None:
    """The answer with its numbered sources, as text."""
    out.print(Text(doc["answer"] or "(no answer)"), highlight=False)
    if doc["citations"]:
        out.print(Text("\nSources", style="bold"))
    for c in doc["citations"]:
        out.print(Text(f"[{c['n']}] ", style="cyan") + Text(c["title"]) +
                  Text(f"  {c['doc_id']}", style="dim"), highlight=False)
    if doc["gaps"]:
        out.print(Text("\nNot found in the documents", style="bold yellow"))
        for gap in doc["gaps"]:
            out.print(Text(f"- {gap}"), highlight=False)
    if doc["unsupported_sentences"]:
        out.print(Text(f"\n{doc['unsupported_sentences']} sentence(s) above cite no source.",
                       style="yellow"), highlight=False)
