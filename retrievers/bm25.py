"""The BM25 retriever: a :class:`~pursuit.indexes.bm25.BM25Index` behind the Stage contract.

Filters are applied inside the index search (as a mask over store rows), never after
truncation, so a filtered search still returns its full depth when enough documents pass.
Deleted documents (store tombstones) are never returned.

Example:
    >>> bm25 = BM25Retriever(index.bm25, index.store, index_name=str(index.path))  # doctest: +SKIP
    >>> bm25.search("what causes tides?").doc_ids()[:3]                            # doctest: +SKIP
    ['d17', 'd3', 'd42']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pursuit.indexes.bm25 import BM25Index
from pursuit.indexes.docstore import DocStore
from pursuit.indexes.filters import DocFilter
from pursuit.indexes.records import Query
from pursuit.retrievers.rows import RowRetriever


class BM25Retriever(RowRetriever):
    """First-stage BM25 retrieval over a document store.

    Args:
        index: The BM25 index (its rows are rows of ``store``).
        store: The document store.
        k: Cutoff: search this deep and show ``%k`` in the name (``None``: search
            :data:`~pursuit.retrievers.stage.DEFAULT_DEPTH` deep, no cutoff in the name).
        filter: Applied to every query; a query's own ``metadata["filter"]`` is ANDed with it.
        index_name: Recorded in each ranking's provenance.
        fetch_docs: Attach each hit's :class:`Doc` (one batched store read per batch).
        options: The options the pipeline text named; the stage's name shows exactly these.
    """

    label = "bm25"

    def __init__(self, index: BM25Index, store: DocStore, *, k: int | None = None,
                 filter: DocFilter | None = None, index_name: str | None = None,
                 fetch_docs: bool = False, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(store, k=k, filter=filter, index_name=index_name,
                         fetch_docs=fetch_docs, options=options)
        self.index = index

    def _prepare(self, queries: Sequence[Query]) -> list[str]:
        return [q.text for q in queries]

    def _search_rows(self, prepared: list[str], members: list[int], k: int,
                     mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search([prepared[i] for i in members], k, mask)

    def score(self, query: Query, doc_ids: Sequence[str]) -> np.ndarray:
        """BM25 scores (float64) of these documents for ``query``; filters do not apply."""
        if not doc_ids:
            return np.zeros(0)
        rows = self.store.rows_of(doc_ids)
        return self.index.score(query.text, rows).astype(np.float64)
