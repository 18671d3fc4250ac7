"""BM25 first-stage pools for the reranking benchmarks, from a throwaway index.

Shared by the scripts that rerank BM25's top ``k`` (``bench/icr_layers.py``,
``bench/blockrank_layers.py``, ``bench/random_order.py``, ``bench/rerank_cost.py``,
``bench/rerank_scaling.py``); ``bench/rerank.py`` builds its own index because it times the
first stage as well.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.records import Doc, Query, Ranking
from pursuit.retrievers.registry import index_stages


def bm25_pools(corpus: Sequence[Doc], queries: Sequence[Query], k: int, *, source: str,
               fetch_docs: bool = True) -> list[Ranking]:
    """BM25's top ``k`` for each of ``queries`` over ``corpus``, in query order.

    The index is built in a temporary folder and deleted before this returns; with
    ``fetch_docs`` every hit carries its document, so rerankers need no store afterwards.

    Args:
        corpus: The documents to index.
        queries: The queries to retrieve for.
        k: Hits per query.
        source: Where the corpus came from, recorded in the index manifest.
        fetch_docs: Attach each hit's document.
    """
    with tempfile.TemporaryDirectory() as tmp:
        index = SearchIndex.build(corpus, Path(tmp) / "index", source=source)
        try:
            return index_stages(index, fetch_docs=fetch_docs)["bm25"](k=k).batch(queries)
        finally:
            index.close()
