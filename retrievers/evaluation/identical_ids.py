"""BEIR's identical-id convention: a query's own document is not an answer to it.

In test collections whose queries are themselves corpus documents (ArguAna, Quora,
SciDocs, CQADupStack), a query's own document carries the query's id and is retrieved at
rank 1, which pushes every relevant document down one place. BEIR's evaluation drops a
retrieved document whose id equals the query id (``ignore_identical_ids=True``, its
default), and its searchers fetch ``top_k + 1`` so that a ranking still holds ``top_k``
afterwards; Anserini does the same with ``-removeQuery``. Published figures on these sets
assume it.

Two tools apply the convention:

* :func:`excluding_identical_ids` rewrites a pipeline so that every first-stage retriever
  searches one document deeper and drops the query's own document before any cutoff,
  fusion or reranker sees it. ``bm25%100`` then still ranks 100 documents, and a reranker
  never spends a candidate slot on the query itself. The rewritten pipeline keeps its name.
* :func:`drop_identical_ids` removes the query's own document from finished rankings:
  saved runs, and first stages the rewrite does not know (those then hold one fewer).

:func:`stage_to_run` skips the rewrite where it cannot matter (no query id among the
corpus ids), so runs on such sets stay exactly as they were.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

from pursuit.indexes.datasets.beir import Dataset
from pursuit.indexes.records import Doc, Query, Ranking
from pursuit.retrievers.stage import RRF, Cutoff, Retriever, ScoreFusion, Stage, Then, Weighted


def without_query_doc(ranking: Ranking) -> Ranking:
    """``ranking`` without the hit whose document id equals its query's id (if any)."""
    qid = ranking.query.id
    if all(h.doc_id != qid for h in ranking.hits):
        return ranking
    return replace(ranking, hits=tuple(h for h in ranking.hits if h.doc_id != qid))


def drop_identical_ids(rankings: Sequence[Ranking]) -> list[Ranking]:
    """Each ranking without the document whose id equals its query's id.

    Example:
        >>> r = Ranking.from_scores(Query("a1", "..."), [("a1", 9.0), ("a2", 5.0)],
        ...                         pipeline="bm25")
        >>> drop_identical_ids([r])[0].doc_ids()
        ['a2']
    """
    return [without_query_doc(r) for r in rankings]


def keeps_identical_ids(keep_identical_ids: bool | None, dataset: Dataset) -> bool:
    """Whether a query's own document stays in its ranking: ``keep_identical_ids`` when
    given, else the dataset's convention (dropped for BEIR folders, kept otherwise)."""
    return not dataset.drop_identical_ids if keep_identical_ids is None else keep_identical_ids


def queries_in_corpus(queries: Sequence[Query], corpus: Sequence[Doc]) -> int:
    """How many of ``queries`` share their id with a document of ``corpus``: the queries
    the convention can change."""
    doc_ids = {d.id for d in corpus}
    return sum(q.id in doc_ids for q in queries)


class _OneDeeper(Stage):
    """A first-stage retriever that searches one deeper, drops the query's own document
    and keeps its own depth; it reads and prints as the retriever it wraps."""

    def __init__(self, retriever: Retriever) -> None:
        self.retriever = retriever
        self.deeper = copy.copy(retriever)
        self.deeper.cutoff = retriever.k + 1
        self.precedence = retriever.precedence  # so enclosing names print unchanged

    @property
    def name(self) -> str:
        return self.retriever.name

    def _clean(self, ranking: Ranking) -> Ranking:
        return without_query_doc(ranking).top(self.retriever.k).with_pipeline(self.name)

    def transform(self, query: Query, candidates: Ranking | None) -> Ranking:
        return self._clean(self.deeper.transform(query, candidates))

    def batch(self, queries, candidates=None):  # type: ignore[no-untyped-def]
        return [self._clean(r) for r in self.deeper.batch(queries, candidates)]

    def limited(self, k: int) -> Stage:
        limited = self.retriever.limited(k)
        return _OneDeeper(limited) if isinstance(limited, Retriever) else Cutoff(self, k)


def stage_to_run(stage: Stage, *, keep: bool, queries: Sequence[Query],
                 corpus: Sequence[Doc]) -> Stage:
    """``stage`` as an evaluation runs it: rewritten by :func:`excluding_identical_ids`
    unless the query's own document is kept, or the corpus is known and holds no query's
    id (SciFact, NFCorpus): then the pipeline runs unchanged and its run is byte-identical
    to one without the convention, ties at the last rank included."""
    if keep or (corpus and not queries_in_corpus(queries, corpus)):
        return stage
    return excluding_identical_ids(stage)


def excluding_identical_ids(stage: Stage) -> Stage:
    """The same pipeline, with the query's own document dropped at the first stage.

    Every :class:`~pursuit.retrievers.stage.Retriever` that searches the collection is
    asked for one more document than its depth, loses the one whose id equals the query
    id, and is cut back to its depth, so cutoffs, fusions and rerankers downstream see the
    same number of candidates as without the convention. Stages that only re-score given
    candidates (the right side of ``>>``) are left as they are: their candidates are
    already clean. The result's ``name`` equals ``stage.name``.

    Args:
        stage: A pipeline, e.g. ``parse_pipeline("bm25%100 >> icr%10", stages)``.

    Returns:
        The rewritten pipeline (``stage`` itself when it holds no retriever it knows).

    Example:
        >>> clean = excluding_identical_ids(bm25 % 100)  # doctest: +SKIP
        >>> len(clean.search(Query("a1", text_of_a1)))   # doctest: +SKIP
        100
    """
    if isinstance(stage, Retriever):
        return _OneDeeper(stage)
    if isinstance(stage, Cutoff):
        return Cutoff(excluding_identical_ids(stage.stage), stage.k)
    if isinstance(stage, Weighted):
        return Weighted(excluding_identical_ids(stage.stage), stage.weight)
    if isinstance(stage, Then):
        return Then(excluding_identical_ids(stage.left), stage.right)
    if isinstance(stage, ScoreFusion):
        return ScoreFusion([(w, excluding_identical_ids(s)) for w, s in stage.members],
                           stage.normalisation)
    if isinstance(stage, RRF):
        return RRF([(w, excluding_identical_ids(s)) for w, s in stage.members], stage.k)
    return stage
