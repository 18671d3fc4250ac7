"""Dense retrieval: an :class:`Encoder` and a :class:`VectorStore` behind the Stage contract.

Filters become a mask over document-store rows that the vector search applies itself, so a
filtered search still returns its full depth when enough documents pass, and deleted
documents (store tombstones) are never returned.

Example:
    >>> dense = DenseRetriever(index.vectors, SentenceTransformerEncoder(), index.store)  # doctest: +SKIP
    >>> dense.search("what causes tides?").doc_ids()[:3]  # doctest: +SKIP
    ['d17', 'd42', 'd3']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pursuit.indexes.docstore import DocStore
from pursuit.indexes.errors import IndexError_
from pursuit.indexes.filters import DocFilter
from pursuit.indexes.protocols import Encoder
from pursuit.indexes.records import Doc, Query, Ranking
from pursuit.indexes.vectors import VectorStore
from pursuit.retrievers.stage import Retriever


def _query_filter(query: Query) -> DocFilter | None:
    flt = query.metadata.get("filter")
    return flt if isinstance(flt, DocFilter) else None


class DenseRetriever(Retriever):
    """First-stage dense retrieval over a document store.

    Args:
        vectors: The vector index (its rows are rows of ``store``).
        encoder: The encoder the vectors were built with (it encodes the queries).
        store: The document store.
        k: Default depth.
        filter: Applied to every query; a query's own ``metadata["filter"]`` (a
            :class:`DocFilter`) is ANDed with it.
        index_name: Recorded in each ranking's provenance.
        fetch_docs: Attach each hit's :class:`Doc` (one batched store read per batch).

    Raises:
        IndexError_: the encoder's dimension differs from the vectors'.
    """

    label = "dense"

    def __init__(self, vectors: VectorStore, encoder: Encoder, store: DocStore, *,
                 k: int = 1000, filter: DocFilter | None = None, index_name: str | None = None,
                 fetch_docs: bool = False) -> None:
        if encoder.dim != vectors.dim:
            raise IndexError_(
                f"the encoder {encoder.model_id} makes {encoder.dim}-d vectors but the vector "
                f"index{' ' + index_name if index_name else ''} holds {vectors.dim}-d ones; use "
                f"the encoder the index was built with, or rebuild it: "
                f"pursuit index SOURCE --out {index_name or 'DIR'} --encoder {encoder.model_id}")
        self.vectors, self.encoder, self.store, self.k = vectors, encoder, store, k
        self.filter, self.index_name, self.fetch_docs = filter, index_name, fetch_docs

    def _mask(self, extra: DocFilter | None) -> np.ndarray | None:
        mask = self.store.mask(self.filter)
        if extra is not None and not extra.is_empty:
            mask &= self.store.mask(extra)
        return None if mask.all() else mask

    def retrieve(self, query: Query, k: int) -> Ranking:
        """The top ``k`` documents for ``query`` (fewer when fewer pass the filters)."""
        return self.retrieve_batch([query], k)[0]

    def retrieve_batch(self, queries: Sequence[Query], k: int) -> list[Ranking]:
        """The top ``k`` for each query: one encoder call for all queries, and one vector
        search per distinct per-query filter."""
        if not queries:
            return []
        encoded = self.encoder.encode_query([q.text for q in queries])
        groups: list[tuple[DocFilter | None, list[int]]] = []
        for i, q in enumerate(queries):
            flt = _query_filter(q)
            for g_flt, members in groups:
                if g_flt == flt:
                    members.append(i)
                    break
            else:
                groups.append((flt, [i]))
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for flt, members in groups:
            rows[members], scores[members] = self.vectors.search(encoded[members], k,
                                                                 self._mask(flt))
        wanted = np.unique(rows[rows >= 0])
        ids = dict(zip(wanted.tolist(), self.store.ids_of(wanted), strict=True))
        docs: dict[str, Doc] | None = None
        if self.fetch_docs:
            docs = {d.id: d for d in self.store.get_rows(wanted)}
        out = []
        for i, q in enumerate(queries):
            found = rows[i] >= 0
            pairs = zip([ids[r] for r in rows[i][found].tolist()], scores[i][found].tolist(),
                        strict=True)
            # from_scores breaks score ties by doc id, the rule every stage follows.
            out.append(Ranking.from_scores(q, pairs, pipeline=self.name, index=self.index_name,
                                           docs=docs))
        return out

    def score(self, query: Query, doc_ids: Sequence[str]) -> np.ndarray:
        """Scores (float64) of these documents for ``query`` from their stored vectors.

        Filters do not apply: the caller chose the documents.
        """
        if not doc_ids:
            return np.zeros(0)
        stored = self.vectors.vectors_of(self.store.rows_of(doc_ids)).astype(np.float64)
        q = self.encoder.encode_query([query.text])[0].astype(np.float64)
        if self.vectors.metric == "l2":
            return -((stored - q) ** 2).sum(axis=1)
        return stored @ q
