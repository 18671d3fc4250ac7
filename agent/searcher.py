"""A searcher: one sub-question in, a cited sub-answer out (MindSearch's WebSearcher).

rewrite into a few queries (plus the user's whole question) -> first-stage retrieval for
each (hybrid by default, with the "as of" filter) -> pool by reciprocal rank -> attention
rerank -> read the best window of the top passages -> answer with ``[n]`` citations that
point at those passages.

A node may run zero searches (a sub-question whose queries all fail to retrieve anything
answers "the documents do not say") or several (one per query). Everything returned is
plain data for the graph state.

Example:
    >>> tools = SearchTools.over(index, AgentConfig())          # doctest: +SKIP
    >>> search_subquestion(task, llm=llm, tools=tools, config=AgentConfig())  # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pursuit.agent.citations import attribute_uncited, keep_citations
from pursuit.agent.config import AgentConfig
from pursuit.agent.coverage import abstains, states_nothing
from pursuit.agent.extract import fill_bare_citation
from pursuit.agent.llm.contract import LLMClient
from pursuit.agent.llm.structured import StructuredOutputError, structured
from pursuit.agent.prompts import answer_prompt, rewrite_prompt
from pursuit.agent.state import SearchTask, normalise_question
from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.docstore import DocStore
from pursuit.indexes.filters import DocFilter, as_utc
from pursuit.indexes.records import Doc, Query, Ranking
from pursuit.rerankers.registry import reranker_stages
from pursuit.retrievers.pipeline_parser import parse_pipeline
from pursuit.retrievers.registry import index_stages
from pursuit.retrievers.stage import Stage, rrf_scores

__all__ = ["SearchTools", "as_of_filter", "best_window", "pool", "search_subquestion"]

_WORD = re.compile(r"\w+")
#: Share of a searcher's pool kept for hits of the user's whole question that the
#: sub-question's own queries missed.
CONTEXT_SHARE = 0.25


class Queries(BaseModel):
    """The rewriter's reply."""

    model_config = ConfigDict(extra="forbid")

    queries: list[str] = Field(max_length=8)


@dataclass
class SearchTools:
    """The retrieval side of a searcher.

    Attributes:
        first_stage: Retrieves candidates for one query (hits carry their documents).
        reranker: Reorders the pooled candidates for the sub-question, or ``None``.
        store: The document store every citation must exist in.
    """

    first_stage: Stage
    reranker: Stage | None
    store: DocStore

    @classmethod
    def over(cls, index: SearchIndex, config: AgentConfig) -> SearchTools:
        """Stages over ``index`` from the config's pipeline texts.

        Without ``config.retrieval`` the first stage is a hybrid of BM25 and the event-aware
        stage when the index has an event store (better evidence recall on MultiHop-RAG's
        temporal questions, BENCHMARKS.md), of BM25 and dense when it has vectors, else BM25.
        """
        stages = (index_stages(index, fetch_docs=True, dtype=config.dtype)
                  | reranker_stages(index.store, dtype=config.dtype))
        k = config.pool_k
        if config.retrieval:
            text = config.retrieval
        elif "events" in stages:  # an event store beside the index (pursuit events build)
            text = f"0.5*bm25%{k} + 0.5*events%{k}"
        else:
            text = f"0.5*bm25%{k} + 0.5*dense%{k}" if index.vectors is not None else f"bm25%{k}"
        first = parse_pipeline(text, stages)
        reranker = parse_pipeline(config.rerank, stages) if config.rerank else None
        return cls(first, reranker, index.store)


def as_of_filter(as_of: str | None) -> DocFilter | None:
    """The filter that keeps documents published before ``as_of`` (a date means its start)."""
    return DocFilter(published_before=as_utc(as_of)) if as_of else None


def pool(rankings: Sequence[Ranking], query: Query, k: int, context: Ranking | None = None,
         reserve: int = 0) -> Ranking:
    """The top ``k`` of several rankings by reciprocal rank fusion, with their documents.

    The fusion is :func:`~pursuit.retrievers.stage.rrf_scores`, the ``|`` operator's.

    With ``context``, the last ``reserve`` places go to the best of its hits that the fused
    top ``k - reserve`` lacks (in ``context``'s order), so a background search can add
    candidates without reordering the ones the rankings agree on.
    """
    docs: dict[str, Doc] = {}
    for ranking in [*rankings, *([context] if context is not None else [])]:
        for hit in ranking:
            if hit.doc is not None:
                docs[hit.doc_id] = hit.doc
    fused = Ranking.from_scores(query, rrf_scores(rankings).items(), pipeline="rrf(queries)",
                                docs=docs)
    if context is None or reserve <= 0:
        return fused.top(k)
    ranked = fused.doc_ids()
    head = ranked[:max(k - reserve, 0)]
    taken = set(head)
    extra = [d for d in context.doc_ids() if d not in taken][:reserve]
    taken.update(extra)
    order = [*head, *extra, *(d for d in ranked if d not in taken)][:k]
    return Ranking.from_scores(query, [(d, float(len(order) - i)) for i, d in enumerate(order)],
                               pipeline="rrf(queries)+context", docs=docs)


def best_window(text: str, question: str, chars: int) -> str:
    """The run of whole sentences of at most ``chars`` characters sharing most words with
    ``question`` (the start of the text on ties); cut at ``chars`` if one sentence is longer."""
    if len(text) <= chars:
        return text
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]
    terms = {w for w in _WORD.findall(question.casefold()) if len(w) > 2}
    best, best_score = text[:chars], -1
    for i in range(len(sentences)):
        window: list[str] = []
        for sentence in sentences[i:]:
            if len(" ".join([*window, sentence])) > chars:
                break
            window.append(sentence)
        if not window:
            continue
        score = len(terms & set(_WORD.findall(" ".join(window).casefold())))
        if score > best_score:
            best, best_score = " ".join(window), score
    return best


def _queries(llm: LLMClient, task: SearchTask, n: int) -> tuple[list[str], str | None, int]:
    """``(queries, context query, tokens)``: the sub-question itself plus up to ``n``
    rewritten queries, and the user's whole question unless it repeats one of them
    (duplicates merged by :func:`normalise_question`).

    The user's question is searched too because a sub-question often drops the context
    that makes it findable ("Which executive was promoted?" without "Apple"); its best hits
    take the last quarter of the pool (:data:`CONTEXT_SHARE`), and the reranker orders the
    pool for the sub-question, so only passages that serve the sub-question are read.
    """
    out, seen, tokens = [task["question"]], {normalise_question(task["question"])}, 0
    try:
        got = structured(llm, rewrite_prompt(task["question"], task["parents"], n), Queries,
                         retries=1, max_tokens=128)
        tokens = got.prompt_tokens + got.completion_tokens
        rewritten = got.value.queries
    except StructuredOutputError:
        rewritten = []  # the sub-question alone still searches
    for q in rewritten[:n]:
        key = normalise_question(q)
        if key and key not in seen and len(q) <= 300:
            out.append(q.strip())
            seen.add(key)
    root = (task.get("root") or "").strip()
    return out, (root if root and normalise_question(root) not in seen else None), tokens


def search_subquestion(task: SearchTask, *, llm: LLMClient, tools: SearchTools,
                       config: AgentConfig, as_of: str | None = None) -> dict[str, Any]:
    """Answer one sub-question with citations to passages it read.

    Returns:
        ``{"node_id", "question", "answer", "passages": [{"n", "doc_id", "title", "text",
        "published_at"}], "queries", "searches", "tokens", "bare_citation", "seconds"}``;
        ``answer`` cites ``[n]`` of ``passages`` only; ``bare_citation`` says the first
        reply cited a passage in the answer's place (:func:`_answer` then asks for the
        passage's words).
    """
    started = time.perf_counter()
    queries, root, tokens = _queries(llm, task, config.queries_per_node)
    flt = as_of_filter(as_of)
    meta: Mapping[str, Any] = {"filter": flt} if flt else {}
    searched = [*queries, *([root] if root else [])]
    rankings = [tools.first_stage.search(Query(f"{task['node_id']}-{i}", q, meta))
                for i, q in enumerate(searched)]
    question = Query(task["node_id"], task["question"], meta)
    context = rankings[len(queries)] if root else None
    candidates = pool(rankings[:len(queries)], question, config.pool_k, context,
                      reserve=math.ceil(config.pool_k * CONTEXT_SHARE))
    if tools.reranker is not None and len(candidates) > 1:
        candidates = tools.reranker.transform(question, candidates)
    hits = candidates.top(config.read_k)
    docs = tools.store.get([h.doc_id for h in hits if h.doc is None], missing="skip")
    passages: list[dict[str, Any]] = []
    for n, hit in enumerate(hits, start=1):
        doc = hit.doc or docs.get(hit.doc_id)
        if doc is None:
            continue
        published = doc.published_at.isoformat() if doc.published_at else None
        passages.append({"n": n, "doc_id": doc.id, "title": doc.title or doc.id,
                         "text": best_window(doc.text, task["question"], config.passage_chars),
                         "published_at": published})
    answer, bare = "The documents do not say.", False
    if passages:
        answer, tokens_used, bare = _answer(llm, task, passages, config.answer_tokens)
        tokens += tokens_used
    return {"node_id": task["node_id"], "question": task["question"], "answer": answer,
            "passages": passages, "queries": searched, "searches": len(rankings),
            "tokens": tokens, "bare_citation": bare,
            "seconds": round(time.perf_counter() - started, 3)}


def _answer(llm: LLMClient, task: SearchTask, passages: Sequence[Mapping[str, Any]],
            max_tokens: int) -> tuple[str, int, bool]:
    """``(answer, tokens, bare)``: the sub-answer with checked citations.

    A first sentence that points at a passage instead of saying the answer ("The city is
    [1].", :func:`~pursuit.agent.coverage.states_nothing`) is ``bare``; the passage's own
    words are then asked for and filled in where they occur in it
    (:func:`~pursuit.agent.extract.fill_bare_citation`), else the sentence stays bare and
    the sub-answer is a gap downstream.
    """
    cited = {int(p["n"]) for p in passages}
    reply = llm.complete(answer_prompt(task["question"], passages, task["parents"]),
                         max_tokens=max_tokens)
    tokens = reply.prompt_tokens + reply.completion_tokens
    text = keep_citations(reply.text.strip(), cited)
    bare = states_nothing(text) and not abstains(text)
    if bare:
        text, used = fill_bare_citation(llm, task["question"], text, passages)
        tokens += used
    return attribute_uncited(text, passages), tokens, bare
