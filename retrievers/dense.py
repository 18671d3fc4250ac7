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

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pursuit.indexes.docstore import DocStore
from pursuit.indexes.errors import IndexError_
from pursuit.indexes.filters import DocFilter
from pursuit.indexes.protocols import Encoder
from pursuit.indexes.records import Query
from pursuit.indexes.vectors.store import VectorStore
from pursuit.retrievers.rows import RowRetriever


class DenseRetriever(RowRetriever):
    """First-stage dense retrieval over a document store.

    Args:
        vectors: The vector index (its rows are rows of ``store``).
        encoder: The encoder the vectors were built with (it encodes the queries).
        store: The document store.
        k: Cutoff: search this deep and show ``%k`` in the name (``None``: search
            :data:`~pursuit.retrievers.stage.DEFAULT_DEPTH` deep, no cutoff in the name).
        filter: Applied to every query; a query's own ``metadata["filter"]`` (a
            :class:`DocFilter`) is ANDed with it.
        index_name: Recorded in each ranking's provenance.
        fetch_docs: Attach each hit's :class:`Doc` (one batched store read per batch).
        options: The options the pipeline text named; the stage's name shows exactly these.

    Raises:
        IndexError_: the encoder's dimension differs from the vectors'.
    """

    label = "dense"

    def __init__(self, vectors: VectorStore, encoder: Encoder, store: DocStore, *,
                 k: int | None = None, filter: DocFilter | None = None, index_name: str | None = None,
                 fetch_docs: bool = False, options: Mapping[str, Any] | None = None) -> None:
        if encoder.dim != vectors.dim:
            raise IndexError_(
                f"the encoder {encoder.model_id} makes {encoder.dim}-d vectors but the vector "
                f"index{' ' + index_name if index_name else ''} holds {vectors.dim}-d ones; use "
                f"the encoder the index was built with, or rebuild it: "
                f"pursuit index SOURCE --out {index_name or 'DIR'} --encoder {encoder.model_id}")
        super().__init__(store, k=k, filter=filter, index_name=index_name,
                         fetch_docs=fetch_docs, options=options)
        self.vectors, self.encoder = vectors, encoder

    def _prepare(self, queries: Sequence[Query]) -> np.ndarray:
        return self.encoder.encode_query([q.text for q in queries])  # one call for the batch

    def _search_rows(self, prepared: np.ndarray, members: list[int], k: int,
                     mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self.vectors.search(prepared[members], k, mask)

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
