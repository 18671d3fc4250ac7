"""The agent's knobs: caps on rounds, nodes, parallel searches and tokens, and retrieval.

Everything the graph may spend is bounded here, so a question can never run away: at most
``max_rounds`` planning rounds, ``max_nodes`` sub-questions, ``max_parallel`` searches at
once, ``max_tokens`` model tokens in all (the run synthesises from what it has once the
budget is spent).

Example:
    >>> AgentConfig(max_nodes=4).max_nodes
    4
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from pursuit.indexes.errors import PursuitError
from pursuit.indexes.filters import as_utc
from pursuit.retrievers.lm.dtypes import DtypeError, dtype_name

__all__ = ["AgentConfig"]


@dataclass(frozen=True)
class AgentConfig:
    """How one agent run plans, searches and answers.

    Attributes:
        max_rounds: Planning rounds (the first plan plus extensions).
        max_nodes: Sub-questions in the whole plan; extra proposed nodes are dropped.
        plan_nodes: Sub-questions the first plan may hold (review rounds may add more, up
            to ``max_nodes``). Small planners fill whatever room they are given with
            restatements, each a search and a model answer, so the first plan is kept short.
        max_parallel: Search nodes dispatched at once.
        max_tokens: Model tokens (prompt + completion) for the whole run.
        max_clarifications: Clarifying questions asked before planning.
        clarify: Ask back when the question is ambiguous (``False`` for unattended runs).
        queries_per_node: Rewritten search queries per sub-question.
        retrieval: First-stage pipeline text over the index (``None``: the hybrid
            ``0.5*bm25%K + 0.5*events%K`` when the index has an event store,
            ``0.5*bm25%K + 0.5*dense%K`` when it has vectors, else ``bm25%K``; K = pool_k).
        rerank: Reranker pipeline text applied to the pooled candidates (``"icr"``), or
            ``None`` to keep the first-stage order.
        pool_k: Candidates pooled over a node's queries before reranking.
        read_k: Passages a searcher reads and cites.
        passage_chars: Characters of each passage shown to the model.
        answer_tokens: Completion tokens for a sub-answer or the final answer.
        as_of: ISO date or datetime; no document published at or after it is used.
        dtype: What the rerankers, the query encoder and the C-IP scorer compute in
            (``"auto"``: bfloat16 on CUDA GPUs and CPUs with native bf16, float32
            elsewhere), unless the ``rerank`` text names its own (``icr(dtype='float32')``).
            The chat model is loaded by the caller (:func:`~pursuit.agent.llm.local.load_llm`
            takes a dtype).
    """

    max_rounds: int = 2
    max_nodes: int = 6
    plan_nodes: int = 4
    max_parallel: int = 3
    max_tokens: int = 40_000
    max_clarifications: int = 1
    clarify: bool = True
    queries_per_node: int = 2
    retrieval: str | None = None
    rerank: str | None = "icr"
    pool_k: int = 20
    read_k: int = 4
    passage_chars: int = 700
    answer_tokens: int = 256
    as_of: str | None = None
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.as_of is not None:
            as_utc(self.as_of)  # a bad date fails here, before any model work
        try:
            object.__setattr__(self, "dtype", dtype_name(self.dtype))
        except DtypeError as exc:
            raise PursuitError(f"agent setting dtype: {exc}") from None
        for name in ("max_rounds", "max_nodes", "plan_nodes", "max_parallel", "max_tokens",
                     "queries_per_node", "pool_k", "read_k", "passage_chars", "answer_tokens"):
            if getattr(self, name) < 1:
                raise PursuitError(f"agent setting {name} must be at least 1, "
                                   f"got {getattr(self, name)}")
        if self.max_clarifications < 0:
            raise PursuitError("agent setting max_clarifications must be 0 or more")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data (recorded with every answer)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentConfig:
        """Settings from plain data; an unknown key is an error naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PursuitError(f"unknown agent setting {unknown[0]!r}; known: "
                               f"{', '.join(sorted(known))}")
        return cls(**data)
