"""The machinery every first stage over store rows shares: filters, ids, ranking assembly.

BM25 and dense indexes identify documents by document-store rows. A retriever over such
an index turns filters into a boolean mask over rows (applied inside the index search,
never after truncation), groups a batch by per-query filter so each group is one index
search, and turns rows and scores back into :class:`Ranking` records with ties ordered by
document id.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pursuit.indexes.docstore import DocStore
from pursuit.indexes.filters import DocFilter
from pursuit.indexes.records import Doc, Hit, Provenance, Query, Ranking
from pursuit.retrievers.stage import Retriever


def query_filter(query: Query) -> DocFilter | None:
    """The per-query filter in ``query.metadata["filter"]``, if it is a :class:`DocFilter`."""
    flt = query.metadata.get("filter")
    return flt if isinstance(flt, DocFilter) else None


def group_by_filter(queries: Sequence[Query]) -> list[tuple[DocFilter | None, list[int]]]:
    """Positions of the queries, grouped by their per-query filter, in first-seen order."""
    groups: list[tuple[DocFilter | None, list[int]]] = []
    for i, q in enumerate(queries):
        flt = query_filter(q)
        for g_flt, members in groups:
            if g_flt == flt:
                members.append(i)
                break
        else:
            groups.append((flt, [i]))
    return groups


class RowRetriever(Retriever):
    """A first stage over an index whose documents are rows of a :class:`DocStore`.

    Subclasses implement :meth:`_prepare` (e.g. encode the queries once) and
    :meth:`_search_rows` (one index search for some of them under a mask).

    Attributes:
        store: The document store.
        filter: Applied to every query; a query's own ``metadata["filter"]`` is ANDed.
        fetch_docs: Attach each hit's :class:`Doc` (one batched store read per batch).
        options: The options the pipeline text named (``dense(model='...')``); the stage's
            name shows exactly these.
    """

    def __init__(self, store: DocStore, *, k: int | None, filter: DocFilter | None,
                 index_name: str | None, fetch_docs: bool,
                 options: Mapping[str, Any] | None = None) -> None:
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a positive integer or None, got {k!r}")
        self.store, self.cutoff, self.filter = store, k, filter
        self.index_name, self.fetch_docs = index_name, fetch_docs
        self.options = dict(options or {})
        self._ids = np.empty(0, dtype=object)
        self._id_rank = np.empty(0, dtype=np.int64)

    @abstractmethod
    def _prepare(self, queries: Sequence[Query]) -> Any:
        """Whatever :meth:`_search_rows` needs for all queries of a batch."""

    @abstractmethod
    def _search_rows(self, prepared: Any, members: list[int], k: int,
                     mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Rows (padded with -1) and scores of the top ``k`` for the queries at ``members``."""

    def _mask(self, extra: DocFilter | None) -> np.ndarray | None:
        mask = self.store.mask(self.filter)
        if extra is not None and not extra.is_empty:
            mask &= self.store.mask(extra)
        return None if mask.all() else mask

    def retrieve(self, query: Query, k: int) -> Ranking:
        """The top ``k`` documents for ``query`` (fewer when fewer pass the filters)."""
        return self.retrieve_batch([query], k)[0]

    def retrieve_batch(self, queries: Sequence[Query], k: int) -> list[Ranking]:
        """The top ``k`` for each query: one index search per distinct per-query filter."""
        if not queries:
            return []
        # Never size an array by more rows than the store has: bm25%1000000000 on five
        # documents needs five places, not a billion.
        k = max(1, min(k, self.store.n_rows))
        prepared = self._prepare(queries)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for flt, members in group_by_filter(queries):
            rows[members], scores[members] = self._search_rows(prepared, members, k,
                                                               self._mask(flt))
        return self._rankings(queries, rows, scores)

    def _rankings(self, queries: Sequence[Query], rows: np.ndarray,
                  scores: np.ndarray) -> list[Ranking]:
        found = rows >= 0
        ids, id_rank = self._id_table(int(rows.max(initial=-1)) + 1)
        scores = np.where(found, scores, -np.inf)
        # Indexes break ties by row; every stage breaks them by doc id. Padding sorts last.
        if bool((scores[:, 1:] == scores[:, :-1])[found[:, 1:]].any()):
            order = np.lexsort((np.where(found, id_rank[np.maximum(rows, 0)], 0), -scores),
                               axis=1)
            rows = np.take_along_axis(rows, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
            found = rows >= 0
        docs = self._fetch(rows[found]) if self.fetch_docs else None
        out = []
        for i, q in enumerate(queries):
            r = rows[i][found[i]]
            hit_ids, hit_scores = ids[r].tolist(), scores[i][found[i]].tolist()
            if docs is None:
                hits = tuple(map(Hit, hit_ids, hit_scores))
            else:
                hits = tuple(map(Hit, hit_ids, hit_scores, [docs[x] for x in r.tolist()]))
            out.append(Ranking(q, hits, Provenance(self.name, self.index_name)))
        return out

    def _id_table(self, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Every row's id, and each row's place in id order (to break score ties by id)."""
        # Rows are never reused and tombstones keep their ids, so the table only grows;
        # re-read it when the store has grown.
        if len(self._ids) < n_rows:
            self._ids = np.array(self.store.all_ids(), dtype=object)
            self._id_rank = np.empty(len(self._ids), dtype=np.int64)
            self._id_rank[np.argsort(self._ids, kind="stable")] = np.arange(len(self._ids))
        return self._ids, self._id_rank

    def _fetch(self, rows: np.ndarray) -> dict[int, Doc]:
        wanted = np.unique(rows)
        return dict(zip(wanted.tolist(), self.store.get_rows(wanted), strict=True))
