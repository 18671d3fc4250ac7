"""The JSON documents of ``GET /api/threads/{id}`` and ``POST /api/search``.

A conversation's turns come from two places: the chat store (order, question, error) and
each turn's agent thread (clarifications, plan, sub-answers, answer, pending question), so
a history read after a restart shows exactly what the agent had saved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pursuit.agent.session import AgentSession
from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.filters import DocFilter, as_utc
from pursuit.indexes.records import Query
from pursuit.retrievers.pipeline_parser import parse_pipeline
from pursuit.ui.web.conversations import TurnRecord

__all__ = ["conversation_json", "default_pipeline", "search_json", "turn_json"]


def turn_json(turn: TurnRecord, session: AgentSession) -> dict[str, Any]:
    """One turn as the threads endpoint returns it."""
    saved = session.history(turn.turn_id)
    pending = saved.get("pending")
    return {"turn_id": turn.turn_id, "question": saved.get("question") or turn.question,
            "as_of": turn.as_of,
            "clarifications": list(saved.get("clarifications") or []),
            "plan": dict(saved.get("plan") or {}),
            "answers": dict(saved.get("answers") or {}),
            "answer": saved.get("answer") or None,
            "pending": ({"question": pending["question"], "options": list(pending["options"])}
                        if pending else None),
            "error": turn.error}


def conversation_json(conversation_id: str, turns: list[TurnRecord],
                      session: AgentSession) -> dict[str, Any]:
    """A conversation with its turns in the order they were asked."""
    return {"conversation_id": conversation_id,
            "turns": [turn_json(turn, session) for turn in turns]}


def default_pipeline(index: SearchIndex) -> str:
    """The search endpoint's pipeline when none is given: hybrid with vectors, else BM25."""
    return "0.5*bm25 + 0.5*dense" if index.vectors is not None else "bm25"


def search_json(index: SearchIndex, stages: Mapping[str, Callable[..., Any]], query: str, *,
                k: int, pipeline: str | None, published_before: str | None) -> dict[str, Any]:
    """Run ``pipeline`` (default :func:`default_pipeline`) and return its top ``k`` hits."""
    text = pipeline or default_pipeline(index)
    stage = parse_pipeline(text, stages)
    metadata: dict[str, Any] = {}
    if published_before:
        metadata["filter"] = DocFilter(published_before=as_utc(published_before))
    ranking = stage.search(Query("search", query, metadata)).top(k)
    fetched = index.store.get([h.doc_id for h in ranking if h.doc is None], missing="skip")
    hits = []
    for hit in ranking:
        doc = hit.doc if hit.doc is not None else fetched.get(hit.doc_id)
        hits.append({"doc_id": hit.doc_id, "score": float(hit.score),
                     "title": doc.title if doc else "", "text": doc.text if doc else "",
                     "published_at": doc.published_at.isoformat()
                     if doc and doc.published_at else None})
    return {"query": query, "pipeline": ranking.provenance.pipeline, "hits": hits}
