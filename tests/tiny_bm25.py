"""A document store and a BM25 retriever over a test's few documents."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pursuit.indexes.bm25 import BM25Index
from pursuit.indexes.docstore import DocStore
from pursuit.indexes.records import Doc
from pursuit.retrievers.bm25 import BM25Retriever


def store_with(docs: Sequence[Doc], folder: Path) -> DocStore:
    """A new store in ``folder`` holding ``docs``."""
    store = DocStore.create(folder / "docs.sqlite")
    store.add(list(docs))
    return store


def bm25_over(store: DocStore) -> BM25Retriever:
    """BM25 over the live documents of ``store``, index name ``tiny``."""
    rows = store.live_rows()
    index = BM25Index.build([d.contents() for d in store.get_rows(rows)], rows)
    return BM25Retriever(index, store, index_name="tiny")
