"""What every reranker shares: the first-stage check, document fetching, strict scores.

A reranker is a :class:`~pursuit.retrievers.stage.Stage` that reorders the candidates of an
earlier stage. :class:`Reranker` does the bookkeeping around one method,
:meth:`Reranker.score_docs`: it refuses to run as a first stage, returns an empty ranking
for no candidates, takes document text from ``Hit.doc`` or a document store, and turns the
scores into a ranking whose scores strictly decrease (ties keep the first-stage order).

Example:
    >>> class Shortest(Reranker):                      # doctest: +SKIP
    ...     label = "shortest"
    ...     def score_docs(self, query, docs):
    ...         return [-len(d.text) for d in docs]
    >>> (bm25 % 100 >> Shortest(store=index.store) % 10).search("tides")  # doctest: +SKIP
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pursuit.indexes.docstore import DocStore
from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Doc, Query, Ranking, strictly_decreasing
from pursuit.retrievers.stage import Stage

if TYPE_CHECKING:
    from pursuit.retrievers.lm.causal import CausalLM


class NeedsFirstStageError(PursuitError):
    """A reranker was asked to search the whole collection; it can only reorder candidates."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"'{name}' is a reranker and cannot search on its own; put a first stage "
            f"before it, e.g. bm25%100 >> {name} (or --pipeline \"bm25%100>>{name}\")")


class Reranker(Stage):
    """Base class of the rerankers: subclasses set :attr:`label` and implement :meth:`score_docs`.

    Attributes:
        label: The reranker's name in the textual pipeline form (``"ql"``).
        options: The options the pipeline text named; they appear in :attr:`name` as
            ``label(key=value, ...)``.
        store: Where document text comes from when candidates carry none.
    """

    label: str = "reranker"

    def __init__(self, *, store: DocStore | None = None,
                 options: Mapping[str, Any] | None = None) -> None:
        self.store = store
        self.options = dict(options or {})

    @property
    def name(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.options.items()))
        return f"{self.label}({args})" if args else self.label

    @abstractmethod
    def score_docs(self, query: Query, docs: Sequence[Doc]) -> Sequence[float] | np.ndarray:
        """Relevance of each document to ``query``, higher is better (same order as ``docs``)."""

    def transform(self, query: Query, candidates: Ranking | None) -> Ranking:
        if candidates is None:
            raise NeedsFirstStageError(self.name)
        if not len(candidates):
            return Ranking.from_scores(query, [], pipeline=self.name,
                                       index=candidates.provenance.index)
        docs = self.fetch_docs(candidates)
        ids = candidates.doc_ids()
        scores = self.score_docs(query, [docs[i] for i in ids])
        return strict_ranking(query, ids, scores, pipeline=self.name,
                              index=candidates.provenance.index, docs=docs)

    def fetch_docs(self, candidates: Ranking) -> dict[str, Doc]:
        """Every candidate's document: from ``Hit.doc`` where set, else from :attr:`store`.

        Raises:
            PursuitError: some candidates carry no document and the reranker has no store.
        """
        docs = {h.doc_id: h.doc for h in candidates if h.doc is not None}
        missing = [h.doc_id for h in candidates if h.doc is None]
        if missing:
            if self.store is None:
                raise PursuitError(
                    f"'{self.name}' needs document text, but {len(missing)} candidates (e.g. "
                    f"{missing[0]!r}) carry none and it was built without a store; pass "
                    "store=index.store, or let the first stage fetch documents (fetch_docs=True)")
            docs.update(self.store.get(missing))
        return docs


class UnknownOptionError(PursuitError, ValueError):
    """A reranker was given an option it does not have."""


def split_options(label: str, defaults: Mapping[str, Any],
                  options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a reranker's textual-form options against its defaults.

    Returns:
        Every option with the defaults filled in, and the options given (what the stage's
        name shows: every option the pipeline text named, even one equal to its default,
        and none it did not name).

    Raises:
        UnknownOptionError: an option ``defaults`` does not list.
    """
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise UnknownOptionError(f"{label} has no option {unknown[0]!r}; "
                                 f"options: {', '.join(defaults)}")
    return {**defaults, **options}, dict(options)


def strict_ranking(query: Query, ids: Sequence[str], scores: Sequence[float] | np.ndarray, *,
                   pipeline: str, index: str | None = None,
                   docs: Mapping[str, Doc] | None = None) -> Ranking:
    """A ranking of ``ids`` by ``scores`` with strictly decreasing scores.

    Equal scores keep the order of ``ids`` (the first-stage order): each later one is
    lowered to the next float32 below its predecessor, a step that survives single
    precision (pytrec_eval reads scores as float32). NaN counts as the lowest score.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (len(ids),):
        raise ValueError(f"got {values.size} scores for {len(ids)} documents")
    low = float(np.finfo(np.float32).min) / 2  # keeps every nudge finite
    values = np.clip(np.nan_to_num(values, nan=low, posinf=-low, neginf=low), low, -low)
    order = np.argsort(-values, kind="stable").tolist()
    stepped = strictly_decreasing(values[order])
    out = [(ids[i], v) for i, v in zip(order, stepped, strict=True)]
    return Ranking.from_scores(query, out, pipeline=pipeline, index=index, docs=docs)


# Loaded models, shared by every reranker in the process: loading costs seconds.


def cached_lm(model: str | None = None, *, dtype: str = "auto",
              device: str = "auto") -> CausalLM:
    """Load a causal LM once per ``(model, dtype, device)`` and reuse it afterwards.

    Args:
        model: A packaged name, hub id or path (``None``: the default reranker model).
        dtype: ``"auto"`` (default: bfloat16 where the hardware computes it natively, else
            float32), ``"bfloat16"``, ``"float32"`` or ``"float16"``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """
    from pursuit.retrievers.lm.causal import shared_causal_lm

    # One copy per model in the process: the agent's chat model and the rerankers share it.
    return shared_causal_lm(model, dtype=dtype, device=device)
