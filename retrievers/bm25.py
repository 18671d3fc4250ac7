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

from collections.abc import Sequence

import numpy as np

from pursuit.indexes.bm25 import BM25Index
from pursuit.indexes.docstore import DocStore
from pursuit.indexes.filters import DocFilter
from pursuit.indexes.records import Doc, Hit, Provenance, Query, Ranking
from pursuit.retrievers.stage import Retriever


def query_filter(query: Query) -> DocFilter | None:
    """The per-query filter in ``query.metadata["filter"]``, if it is a :class:`DocFilter`."""
    flt = query.metadata.get("filter")
    return flt if isinstance(flt, DocFilter) else None


class BM25Retriever(Retriever):
    """First-stage BM25 retrieval over a document store.

    Args:
        index: The BM25 index (its rows are rows of ``store``).
        store: The document store.
        k: Default depth.
        filter: Applied to every query; a query's own ``metadata["filter"]`` is ANDed with it.
        index_name: Recorded in each ranking's provenance.
        fetch_docs: Attach each hit's :class:`Doc` (one batched store read per batch).
    """

    label = "bm25"

    def __init__(self, index: BM25Index, store: DocStore, *, k: int = 1000,
                 filter: DocFilter | None = None, index_name: str | None = None,
                 fetch_docs: bool = False) -> None:
        self.index, self.store, self.k = index, store, k
        self.filter, self.index_name, self.fetch_docs = filter, index_name, fetch_docs
        self._ids = np.empty(0, dtype=object)
        self._id_rank = np.empty(0, dtype=np.int64)

    def _id_table(self, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Every row's id, and each row's place in id order (to break score ties by id)."""
        # Rows are never reused and tombstones keep their ids, so the table only grows;
        # re-read it when the store has grown.
        if len(self._ids) < n_rows:
            self._ids = np.array(self.store.all_ids(), dtype=object)
            self._id_rank = np.empty(len(self._ids), dtype=np.int64)
            self._id_rank[np.argsort(self._ids, kind="stable")] = np.arange(len(self._ids))
        return self._ids, self._id_rank

    def _mask(self, extra: DocFilter | None) -> np.ndarray:
        mask = self.store.mask(self.filter)
        if extra is not None and not extra.is_empty:
            mask &= self.store.mask(extra)
        return mask

    def retrieve(self, query: Query, k: int) -> Ranking:
        """The top ``k`` documents for ``query`` (fewer when fewer match)."""
        return self.retrieve_batch([query], k)[0]

    def retrieve_batch(self, queries: Sequence[Query], k: int) -> list[Ranking]:
        """The top ``k`` for each query, one index search per distinct per-query filter."""
        groups: list[tuple[DocFilter | None, list[int]]] = []
        for i, q in enumerate(queries):
            flt = query_filter(q)
            for g_flt, members in groups:
                if g_flt == flt:
                    members.append(i)
                    break
            else:
                groups.append((flt, [i]))
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.zeros((len(queries), k), dtype=np.float32)
        for flt, members in groups:
            mask = self._mask(flt)
            r, s = self.index.search([queries[i].text for i in members], k,
                                     None if mask.all() else mask)
            rows[members], scores[members] = r, s
        ids, id_rank = self._id_table(int(rows.max(initial=-1)) + 1)
        # The index breaks ties by row; Ranking's rule is doc id. Padding (-1, score 0) stays
        # last, since every returned score is positive.
        if bool((scores[:, 1:] == scores[:, :-1]).any()):
            order = np.lexsort((np.where(rows >= 0, id_rank[rows], 0), -scores), axis=1)
            rows = np.take_along_axis(rows, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
        docs = self._fetch(rows) if self.fetch_docs else None
        return [self._ranking(q, rows[i], scores[i], ids, docs) for i, q in enumerate(queries)]

    def _fetch(self, rows: np.ndarray) -> dict[int, Doc]:
        wanted = np.unique(rows[rows >= 0])
        return dict(zip(wanted.tolist(), self.store.get_rows(wanted), strict=True))

    def _ranking(self, query: Query, rows: np.ndarray, scores: np.ndarray, ids: np.ndarray,
                 docs: dict[int, Doc] | None) -> Ranking:
        n = int((rows >= 0).sum())
        hit_ids, hit_scores = ids[rows[:n]].tolist(), scores[:n].tolist()
        if docs is None:
            hits = tuple(map(Hit, hit_ids, hit_scores))
        else:
            hits = tuple(map(Hit, hit_ids, hit_scores, [docs[r] for r in rows[:n].tolist()]))
        return Ranking(query, hits, Provenance(self.name, self.index_name))

    def score(self, query: Query, doc_ids: Sequence[str]) -> np.ndarray:
        """BM25 scores (float64) of these documents for ``query``; filters do not apply."""
        if not doc_ids:
            return np.zeros(0)
        rows = self.store.rows_of(doc_ids)
        return self.index.score(query.text, rows).astype(np.float64)
